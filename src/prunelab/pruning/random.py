"""random: the control. Per layer, zero round(k * n) weights chosen uniformly at random.

The same per-layer k as ``weight``, so any gap between the two curves is what ranking by
magnitude is worth (Blalock et al. 2020 ask every study for such a control). The draw
depends only on the seed and the layer's position: the same seed gives the same masks,
and since already-pruned weights rank first, masks only shrink as k grows (a gradual
schedule or iterative pruning draws the same scores at every step).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from prunelab.pruning.method import METHODS, MaskMethod

if TYPE_CHECKING:
    import torch
    from torch import nn

# one stream per layer, far apart: layer i of seed s never shares draws with layer i+1 of s-1
LAYER_STRIDE = 1_000_003


def scores(shape: tuple[int, ...], seed: int, index: int) -> torch.Tensor:
    """Uniform scores in (0, 1] for a layer: pruned ones are set to 0 so they rank first."""
    import torch

    g = torch.Generator().manual_seed(seed * LAYER_STRIDE + index)
    return 1.0 - torch.rand(shape, generator=g)


class Random(MaskMethod):
    name = "random"
    seeded = True

    def masks(
        self, layers: Mapping[str, nn.Module], sparsity: float, current: Mapping[str, torch.Tensor], seed: int = 0
    ) -> dict[str, torch.Tensor]:
        import torch
        from torch.nn.utils import prune

        out = {}
        for index, (name, module) in enumerate(layers.items()):
            mask = current.get(name, torch.ones_like(module.weight))
            s = scores(tuple(module.weight.shape), seed, index).to(module.weight.device) * mask
            out[name] = prune.L1Unstructured(amount=float(sparsity)).compute_mask(s, mask)
        return out


METHODS.add(Random())
