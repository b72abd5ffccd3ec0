"""Masks: creating, applying, updating, making permanent.

A mask is a float tensor of 0s and 1s shaped like the layer's weight. Applied masks use
torch.nn.utils.prune's reparametrisation (weight = weight_orig * weight_mask), so a pruned
weight is exactly zero in every forward pass and receives no gradient: masks persist
through fine-tuning. ``make_permanent`` folds them in before a checkpoint is saved.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune

Masks = dict[str, torch.Tensor]


def dense_masks(layers: Mapping[str, nn.Module]) -> Masks:
    return {name: torch.ones_like(m.weight) for name, m in layers.items()}


def masks_from_zeros(layers: Mapping[str, nn.Module]) -> Masks:
    """Recover masks from a permanently pruned model: a zero weight is a pruned weight."""
    return {name: (m.weight != 0).to(m.weight.dtype) for name, m in layers.items()}


def effective_weight(module: nn.Module, mask: torch.Tensor | None) -> torch.Tensor:
    # With a mask attached, ``module.weight`` is recomputed only in the forward pass, so
    # after an optimiser step it is stale: read the live ``weight_orig`` instead.
    w = getattr(module, "weight_orig", module.weight).detach()
    return w if mask is None else w * mask


def apply_masks(layers: Mapping[str, nn.Module], masks: Mapping[str, torch.Tensor]) -> None:
    """Attach ``masks`` to the layers (replacing any mask they had)."""
    for name, module in layers.items():
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            prune.remove(module, "weight")
        prune.custom_from_mask(module, "weight", masks[name].to(module.weight.dtype))


def update_masks(layers: Mapping[str, nn.Module], masks: Mapping[str, torch.Tensor]) -> None:
    """Overwrite attached masks in place (the parameters, and so the optimiser, stay the same)."""
    for name, module in layers.items():
        module.weight_mask.copy_(masks[name])


def make_permanent(model: nn.Module) -> None:
    """Fold every attached mask into its weight and drop the reparametrisation."""
    for module in model.modules():
        if hasattr(module, "weight_mask"):
            prune.remove(module, "weight")
