"""Pruning methods: one registered object per method (see ``method.py``).

Register a method with one import line below; the tests are parametrized over every
registered name. Importing this package imports no torch.
"""

from prunelab.pruning import filter as _filter  # noqa: F401  (registers filter)
from prunelab.pruning import global_magnitude as _global  # noqa: F401  (registers weight_global)
from prunelab.pruning import magnitude as _magnitude  # noqa: F401  (registers weight)
from prunelab.pruning import random as _random  # noqa: F401  (registers random, the control)
from prunelab.pruning import unit as _unit  # noqa: F401  (registers unit, and its physical variant)
from prunelab.pruning.layers import prunable_layers
from prunelab.pruning.method import MASKS, METHODS, STRUCTURAL, MaskMethod, Method, Pruned
from prunelab.pruning.options import configure, point_config, prune_config, sweep_config

__all__ = [
    "MASKS",
    "METHODS",
    "STRUCTURAL",
    "MaskMethod",
    "Method",
    "Pruned",
    "configure",
    "point_config",
    "prunable_layers",
    "prune_config",
    "sweep_config",
]
