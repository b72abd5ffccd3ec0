"""Rewinding, for iterative magnitude pruning: where the surviving weights restart each level.

``prune.rewind`` is one of
- ``init``: the weights at initialisation (Frankle & Carbin 2019, the lottery ticket);
- ``epoch:N``: the weights after N epochs of the baseline's training (Frankle et al. 2020);
- ``none``: no rewinding; training goes on from the current weights (Han et al. 2015).

Parsing is config's (``config.parse_rewind``). ``rewind`` copies a
saved state into a model and re-applies the masks: every surviving weight is exactly
its saved value and every pruned one stays zero.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from prunelab.config import Rewind, parse_rewind
from prunelab.errors import ConfigError

__all__ = ["Rewind", "check_reachable", "parse_rewind", "rewind", "state_digest"]

if TYPE_CHECKING:
    import torch
    from torch import nn


def check_reachable(key: str, rewind: Rewind, baseline_epochs: int) -> None:
    """``epoch:N`` must leave the baseline's training something to redo: N < its epochs."""
    if rewind.epoch is not None and rewind.epoch >= baseline_epochs:
        raise ConfigError(
            key,
            rewind.label,
            f"epoch:N with N < {baseline_epochs}, the epochs the baseline trained (train.epochs); or 'init' or 'none'",
        )


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, shapes, dtypes and bytes, in key order."""
    import torch

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def rewind(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    state: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
) -> None:
    """Load ``state`` into ``model`` (masks folded away first), then attach ``masks`` to ``layers``."""
    from prunelab.pruning.masks import apply_masks, make_permanent

    make_permanent(model)
    model.load_state_dict(state)
    apply_masks(layers, masks)
