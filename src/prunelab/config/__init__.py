"""Typed params.yaml sections, validated on load (this package only re-exports).

Each section is a frozen dataclass; the comment beside a default says why it is the
default. A bad value raises ConfigError naming the key, the value and what is allowed,
before a stage does any work. A stage loads only the sections it declares in dvc.yaml.

This module sits at the bottom of the import graph: it imports no plug-in. Names that
plug-ins register (data.name, model.name, prune.method, sweep.methods) are checked by the
plug-in packages' own loaders (``data.data_config``, ``models.model_config``,
``pruning.prune_config``, ``pruning.sweep_config``), and each pruning method owns its
options as a ``MethodOptions`` subclass beside it, as open_lth's strategies own theirs.
"""

from prunelab.config.load import load_params, section, seed
from prunelab.config.prune import SCHEDULES, MethodOptions, PruneConfig, Rewind, parse_rewind
from prunelab.config.section import Section
from prunelab.config.sections import (
    COMPRESS_BITS,
    COMPRESS_SCHEMES,
    R1_SPARSITIES,
    CompressConfig,
    DataConfig,
    FinetuneConfig,
    ModelConfig,
    OptimConfig,
    SweepConfig,
    TrainConfig,
)
from prunelab.errors import ConfigError
from prunelab.validate import (
    check_bool,
    check_choice,
    check_float,
    check_fraction_open,
    check_int,
    check_name,
    check_sparsity,
    check_unique_list,
)

__all__ = [
    "COMPRESS_BITS",
    "COMPRESS_SCHEMES",
    "R1_SPARSITIES",
    "SCHEDULES",
    "CompressConfig",
    "ConfigError",
    "DataConfig",
    "FinetuneConfig",
    "MethodOptions",
    "ModelConfig",
    "OptimConfig",
    "PruneConfig",
    "Rewind",
    "Section",
    "SweepConfig",
    "TrainConfig",
    "check_bool",
    "check_choice",
    "check_float",
    "check_fraction_open",
    "check_int",
    "check_name",
    "check_sparsity",
    "check_unique_list",
    "load_params",
    "parse_rewind",
    "section",
    "seed",
]
