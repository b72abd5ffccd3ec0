"""Pruning methods. A method is a pure function of (layers, sparsity, current masks) → masks.

``layers`` maps a layer name to its module (see ``prunable_layers``); the function reads
their effective weights and returns new masks without touching the model. Applying masks
is a separate step (``masks.apply_masks``). Register a method with one import line below;
the tests are parametrized over every registered name.
"""

from prunelab.pruning.layers import prunable_layers
from prunelab.registry import Registry

METHODS: Registry = Registry("pruning method")
# Structural methods change the architecture instead of returning masks: they are called
# as ``fn(model, input_shape, sparsity=..., threshold=..., norm=...) -> StructuredResult``.
STRUCTURAL = frozenset({"filter"})

from prunelab.pruning import magnitude as _magnitude  # noqa: E402,F401  (registers weight)
from prunelab.pruning import unit as _unit  # noqa: E402,F401  (registers unit)
from prunelab.pruning import global_magnitude as _global  # noqa: E402,F401  (registers weight_global)
from prunelab.pruning import structured as _structured  # noqa: E402,F401  (registers filter)

__all__ = ["METHODS", "STRUCTURAL", "prunable_layers"]
