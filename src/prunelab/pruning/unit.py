"""unit: per Linear layer, zero the k fraction of neurons with the smallest L2 norm.

A neuron (unit) is a row of the (out, in) weight matrix: the weights feeding one output.
round(k * out) rows are zeroed whole (torch.nn.utils.prune.ln_structured, n=2, dim=0).
Conv layers are left alone (filter pruning is the structured method for them).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from prunelab.pruning import METHODS
from prunelab.pruning.masks import Masks, effective_weight


@METHODS.register("unit")
def unit(layers: Mapping[str, nn.Module], sparsity: float, masks: Mapping[str, torch.Tensor]) -> Masks:
    out: Masks = {}
    for name, module in layers.items():
        w = effective_weight(module, masks.get(name))
        current = masks.get(name, torch.ones_like(w))
        if not isinstance(module, nn.Linear):
            out[name] = current.clone()
            continue
        out[name] = prune.LnStructured(amount=float(sparsity), n=2, dim=0).compute_mask(w, current).clone()
    return out
