"""Which layers are prunable.

Prunable weights are the weights of Linear and Conv layers. Biases and norm layers are
never pruned; the final classifier (the last Linear layer in module order) is left dense
unless ``include_classifier`` is true. (torch is imported inside: see ``method.py``.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def count_params(model: nn.Module) -> int:
    """Every parameter, pruned or not (a masked weight counts once, as its ``weight_orig``)."""
    return sum(p.numel() for p in model.parameters())


def prunable_types() -> tuple[type, ...]:
    from torch import nn

    return (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def classifier_name(model: nn.Module) -> str | None:
    from torch import nn

    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


def prunable_layers(model: nn.Module, include_classifier: bool = False) -> dict[str, nn.Module]:
    skip = None if include_classifier else classifier_name(model)
    types = prunable_types()
    return {name: m for name, m in model.named_modules() if isinstance(m, types) and name != skip}


def weighted_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Linear and Conv layer with a weight, by name, the classifier included: what an export
    stores per layer and what quantization shares (masks, if attached, must be made permanent)."""
    import torch

    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, prunable_types()) and isinstance(getattr(m, "weight", None), torch.Tensor)
    }


def linear_layers(layers: dict[str, nn.Module]) -> dict[str, nn.Linear]:
    from torch import nn

    return {name: m for name, m in layers.items() if isinstance(m, nn.Linear)}
