"""Datasets. One module per family; each registered loader returns a DataSpec.

A loader is ``load(cfg: DataConfig, seed: int) -> DataSpec``, registered in
``catalog.DATASETS``. Register a new one with one import line below.
"""

from prunelab.data import cifar10 as _cifar10  # noqa: F401  (registers cifar10)
from prunelab.data import idx_datasets as _idx  # noqa: F401  (registers mnist, fashion-mnist)
from prunelab.data import imagefolder as _imagefolder  # noqa: F401  (registers imagefolder)
from prunelab.data import mnist5k as _mnist5k  # noqa: F401  (registers mnist-5k)
from prunelab.data import realwaste as _realwaste  # noqa: F401  (registers realwaste)
from prunelab.data.catalog import DATASETS, EMBEDDED, NEEDS_ROOT, data_config, origin
from prunelab.data.spec import DataSpec, load_prepared, save_prepared

__all__ = ["DATASETS", "EMBEDDED", "NEEDS_ROOT", "DataSpec", "data_config", "load_prepared", "origin", "save_prepared"]
