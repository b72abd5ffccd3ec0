"""weight_global: one magnitude threshold across all prunable layers (prune.global_unstructured).

The k fraction of smallest |w| over every prunable weight together is zeroed, so layers
with many small weights lose more than k and others less; the overall achieved sparsity
over the prunable weights is round(k * n). Already-pruned weights rank first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from prunelab.pruning.method import METHODS, MaskMethod

if TYPE_CHECKING:
    import torch
    from torch import nn


class WeightGlobal(MaskMethod):
    name = "weight_global"

    def masks(
        self, layers: Mapping[str, nn.Module], sparsity: float, current: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        import torch
        from torch.nn.utils import prune

        from prunelab.pruning.masks import effective_weight

        weights = {name: effective_weight(m, current.get(name)) for name, m in layers.items()}
        flat = torch.cat([w.flatten() for w in weights.values()])
        alive = torch.cat([current.get(n, torch.ones_like(w)).flatten() for n, w in weights.items()])
        mask = prune.L1Unstructured(amount=float(sparsity)).compute_mask(flat, alive)
        out, start = {}, 0
        for name, w in weights.items():
            out[name] = mask[start : start + w.numel()].view_as(w)
            start += w.numel()
        return out


METHODS.add(WeightGlobal())
