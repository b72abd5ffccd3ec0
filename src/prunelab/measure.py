"""Measurements of a model (definitions from ShrinkBench, Blalock et al. 2020).

params, nonzero params, compression ratio = params / nonzero, and achieved sparsity,
always counted from the weights, never assumed from the requested k. Size on disk, FLOPs,
latency and memory belong here too as they are added.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import nn


def effective_parameters(model: nn.Module) -> Iterator[torch.Tensor]:
    """Every parameter as the forward pass sees it (a masked weight counts as weight * mask)."""
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            base = name[: -len("_orig")] if name.endswith("_orig") else None
            if base is not None and hasattr(module, base + "_mask"):
                yield getattr(module, base).detach()
            else:
                yield p.detach()


def sparsity_report(model: nn.Module, layers: Mapping[str, nn.Module]) -> dict[str, float | int]:
    """Achieved sparsity: zeros / size.

    ``sparsity_prunable`` counts over the prunable weights (``layers``) only,
    ``sparsity_all`` over every parameter (biases, norm layers, classifier included).
    """
    prunable_total = sum(m.weight.numel() for m in layers.values())
    prunable_zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    tensors = list(effective_parameters(model))
    total = sum(t.numel() for t in tensors)
    nonzero = sum(int(t.count_nonzero()) for t in tensors)
    return {
        "params": total,
        "nonzero_params": nonzero,
        "compression_ratio": total / nonzero if nonzero else float("inf"),
        "prunable_params": prunable_total,
        "prunable_zeros": prunable_zeros,
        "sparsity_prunable": prunable_zeros / prunable_total if prunable_total else 0.0,
        "sparsity_all": (total - nonzero) / total if total else 0.0,
    }
