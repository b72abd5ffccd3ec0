"""Pruning methods. A method is a pure function of (layers, sparsity, current masks) → masks.

``layers`` maps a layer name to its module (see ``prunable_layers``); the function reads
their effective weights and returns new masks without touching the model. Applying masks
is a separate step (``masks.apply_masks``). Register a method with one import line below;
the tests are parametrized over every registered name.
"""

from prunelab.pruning.layers import prunable_layers
from prunelab.registry import Registry

METHODS: Registry = Registry("pruning method")

from prunelab.pruning import magnitude as _magnitude  # noqa: E402,F401  (registers weight)
from prunelab.pruning import unit as _unit  # noqa: E402,F401  (registers unit)

__all__ = ["METHODS", "prunable_layers"]
