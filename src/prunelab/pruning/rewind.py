"""Rewinding, for iterative magnitude pruning: where the surviving weights restart each level.

``prune.rewind`` is one of
- ``init``: the weights at initialisation (Frankle & Carbin 2019, the lottery ticket);
- ``epoch:N``: the weights after N epochs of the baseline's training (Frankle et al. 2020);
- ``none``: no rewinding; training goes on from the current weights (Han et al. 2015).

Parsing is pure and imports no torch (config validation uses it). ``rewind`` copies a
saved state into a model and re-applies the masks: every surviving weight is exactly
its saved value and every pruned one stays zero.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prunelab.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMS = "'init', 'epoch:N' (N >= 0 epochs of the baseline's training) or 'none'"
_EPOCH = re.compile(r"epoch:(\d+)")


@dataclass(frozen=True)
class Rewind:
    epoch: int | None  # epochs of baseline training to rewind to (0 = init); None: do not rewind

    @property
    def label(self) -> str:
        return "none" if self.epoch is None else "init" if self.epoch == 0 else f"epoch:{self.epoch}"


def parse_rewind(key: str, value: object) -> Rewind:
    if value == "init":
        return Rewind(0)
    if value == "none":
        return Rewind(None)
    match = _EPOCH.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(key, value, FORMS)
    return Rewind(int(match.group(1)))


def check_reachable(key: str, rewind: Rewind, baseline_epochs: int) -> None:
    """``epoch:N`` must leave the baseline's training something to redo: N < its epochs."""
    if rewind.epoch is not None and rewind.epoch >= baseline_epochs:
        raise ConfigError(key, rewind.label, f"epoch:N with N < {baseline_epochs}, the epochs the baseline "
                          f"trained (train.epochs); or 'init' or 'none'")


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, shapes, dtypes and bytes, in key order."""
    import torch

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def rewind(model: nn.Module, layers: Mapping[str, nn.Module], state: Mapping[str, torch.Tensor],
           masks: Mapping[str, torch.Tensor]) -> None:
    """Load ``state`` into ``model`` (masks folded away first), then attach ``masks`` to ``layers``."""
    from prunelab.pruning.masks import apply_masks, make_permanent

    make_permanent(model)
    model.load_state_dict(state)
    apply_masks(layers, masks)
