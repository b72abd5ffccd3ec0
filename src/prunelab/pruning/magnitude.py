"""weight: per layer, zero the k smallest |w| (torch.nn.utils.prune.L1Unstructured).

Sparsity k is a fraction in [0, 1) of each layer's weights: round(k * n) entries of a
layer with n weights are zero afterwards. Already-pruned weights are zero, so they rank
first and masks only shrink as k grows.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from prunelab.pruning import METHODS
from prunelab.pruning.masks import Masks, effective_weight


@METHODS.register("weight")
def weight(layers: Mapping[str, nn.Module], sparsity: float, masks: Mapping[str, torch.Tensor]) -> Masks:
    out: Masks = {}
    for name, module in layers.items():
        w = effective_weight(module, masks.get(name))
        current = masks.get(name, torch.ones_like(w))
        out[name] = prune.L1Unstructured(amount=float(sparsity)).compute_mask(w, current)
    return out
