"""Gradual pruning: recompute a mask method's masks at scheduled steps while the model trains.

The schedule (``schedule.Polynomial.events``) says after which optimiser step which
sparsity applies; the method (a ``MaskMethod``) computes masks from the current effective
weights and the current masks, so already-pruned weights rank first and masks only
shrink. Masks are updated in place in torch's pruning buffers, which keeps the
optimiser's parameters and state valid.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from prunelab.pruning.masks import Masks, update_masks
from prunelab.pruning.method import MaskMethod
from prunelab.pruning.schedule import Polynomial


class GradualPruner:
    """Pruning along ``plan`` for ``fit``, which calls ``begin(total_steps)`` once and
    ``after_step()`` after every optimiser step; ``done`` once the last event applied.

    ``layers`` must carry masks at ``plan.initial`` already (the prune stage's output).
    """

    def __init__(self, method: MaskMethod, layers: Mapping[str, nn.Module], plan: Polynomial, seed: int = 0) -> None:
        # the config refuses a structural method on a schedule (Method.check_config); this
        # guards the library's callers, who could hand over any method object
        if not isinstance(method, MaskMethod):
            raise TypeError(f"{method.name!r} removes structures physically: only mask methods prune gradually")
        self.method, self.layers, self.plan, self.seed = method, layers, plan, seed
        self.masks = current_masks(layers)
        self.pending: list[tuple[int, float]] | None = None  # set by begin(): fit knows the step count
        self.step = 0
        self.sparsity = plan.initial  # the target in force: the prune stage's until the first event

    def begin(self, total_steps: int) -> None:
        self.pending, self.step = self.plan.events(total_steps), 0

    @property
    def done(self) -> bool:
        return self.pending == []

    def after_step(self) -> None:
        self.step += 1
        while self.pending and self.pending[0][0] <= self.step:
            self.apply(self.pending.pop(0)[1])

    def finish(self) -> None:
        """Apply any events a shortened run never reached, so the target sparsity holds."""
        while self.pending:
            self.apply(self.pending.pop(0)[1])

    def apply(self, sparsity: float) -> None:
        self.masks = self.method.masks_at(self.layers, sparsity, self.masks, self.seed)
        update_masks(self.layers, self.masks)
        self.sparsity = sparsity


def current_masks(layers: Mapping[str, nn.Module]) -> Masks:
    """The masks attached to ``layers`` (dense where none is)."""
    return {
        name: m.weight_mask.detach().clone() if hasattr(m, "weight_mask") else torch.ones_like(m.weight)
        for name, m in layers.items()
    }
