"""Datasets. One module per family; each registered loader returns a DataSpec.

A loader is ``load(cfg: DataConfig, seed: int) -> DataSpec``. Register a new one with one
import line below.
"""

from prunelab.data.spec import DataSpec, load_prepared, save_prepared
from prunelab.registry import Registry

DATASETS: Registry = Registry("dataset")

from prunelab.data import mnist5k as _mnist5k  # noqa: E402,F401  (registers mnist-5k)
from prunelab.data import mnist as _mnist  # noqa: E402,F401  (registers mnist)

__all__ = ["DATASETS", "DataSpec", "load_prepared", "save_prepared"]
