"""weight_global: one magnitude threshold across all prunable layers (prune.global_unstructured).

The k fraction of smallest |w| over every prunable weight together is zeroed, so layers
with many small weights lose more than k and others less; the overall achieved sparsity
over the prunable weights is round(k * n). Already-pruned weights rank first.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from prunelab.pruning import METHODS
from prunelab.pruning.masks import Masks, effective_weight


@METHODS.register("weight_global")
def weight_global(layers: Mapping[str, nn.Module], sparsity: float, masks: Mapping[str, torch.Tensor]) -> Masks:
    weights = {name: effective_weight(m, masks.get(name)) for name, m in layers.items()}
    flat = torch.cat([w.flatten() for w in weights.values()])
    current = torch.cat([masks.get(n, torch.ones_like(w)).flatten() for n, w in weights.items()])
    mask = prune.L1Unstructured(amount=float(sparsity)).compute_mask(flat, current)
    out: Masks = {}
    start = 0
    for name, w in weights.items():
        out[name] = mask[start:start + w.numel()].view_as(w)
        start += w.numel()
    return out
