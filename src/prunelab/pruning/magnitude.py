"""weight: per layer, zero the k smallest |w| (torch.nn.utils.prune.L1Unstructured).

Sparsity k is a fraction in [0, 1) of each layer's weights: round(k * n) entries of a
layer with n weights are zero afterwards. Already-pruned weights are zero, so they rank
first and masks only shrink as k grows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from prunelab.pruning.method import METHODS, MaskMethod

if TYPE_CHECKING:
    import torch
    from torch import nn


class Weight(MaskMethod):
    name = "weight"

    def masks(
        self, layers: Mapping[str, nn.Module], sparsity: float, current: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        import torch
        from torch.nn.utils import prune

        from prunelab.pruning.masks import effective_weight

        out = {}
        for name, module in layers.items():
            w = effective_weight(module, current.get(name))
            out[name] = prune.L1Unstructured(amount=float(sparsity)).compute_mask(
                w, current.get(name, torch.ones_like(w))
            )
        return out


METHODS.add(Weight())
