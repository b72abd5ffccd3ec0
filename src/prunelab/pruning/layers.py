"""Which layers are prunable.

Prunable weights are the weights of Linear and Conv layers. Biases and norm layers are
never pruned; the final classifier (the last Linear layer in module order) is left dense
unless ``include_classifier`` is true.
"""

from __future__ import annotations

from torch import nn

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def classifier_name(model: nn.Module) -> str | None:
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


def prunable_layers(model: nn.Module, include_classifier: bool = False) -> dict[str, nn.Module]:
    skip = None if include_classifier else classifier_name(model)
    return {name: m for name, m in model.named_modules()
            if isinstance(m, PRUNABLE_TYPES) and name != skip}
