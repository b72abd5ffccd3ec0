"""Gradual pruning: recompute a mask method's masks at scheduled steps while the model trains.

The schedule (``schedule.Polynomial.events``) says after which optimiser step which
sparsity applies; the method (``METHODS``) computes masks from the current effective
weights and the current masks, so already-pruned weights rank first and masks only
shrink. Masks are updated in place in torch's pruning buffers, which keeps the
optimiser's parameters and state valid.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from prunelab.pruning import METHODS, STRUCTURAL
from prunelab.pruning.masks import Masks, update_masks


class GradualPruner:
    """Call ``after_step()`` after every optimiser step; ``done`` once the last event applied."""

    def __init__(self, method: str, layers: Mapping[str, nn.Module], masks: Mapping[str, torch.Tensor],
                 events: list[tuple[int, float]], start: float = 0.0) -> None:
        if method in STRUCTURAL:
            raise ValueError(f"{method!r} removes filters physically and cannot be applied gradually")
        self.method, self.layers, self.masks = METHODS.get(method), layers, dict(masks)
        self.pending = list(events)
        self.step = 0
        self.sparsity = start  # the target in force: the prune stage's until the first event

    @property
    def done(self) -> bool:
        return not self.pending

    def after_step(self) -> None:
        self.step += 1
        while self.pending and self.pending[0][0] <= self.step:
            self.apply(self.pending.pop(0)[1])

    def finish(self) -> None:
        """Apply any events a shortened run never reached, so the target sparsity holds."""
        while self.pending:
            self.apply(self.pending.pop(0)[1])

    def apply(self, sparsity: float) -> None:
        self.masks = self.method(self.layers, sparsity, self.masks)
        update_masks(self.layers, self.masks)
        self.sparsity = sparsity


def current_masks(layers: Mapping[str, nn.Module]) -> Masks:
    """The masks attached to ``layers`` (dense where none is)."""
    return {name: m.weight_mask.detach().clone() if hasattr(m, "weight_mask") else torch.ones_like(m.weight)
            for name, m in layers.items()}


def pruner_for_fit(method: str, layers: Mapping[str, nn.Module], plan, *, epochs: int, n_train: int,
                   batch_size: int) -> GradualPruner:
    """A pruner for ``fit`` over ``epochs`` of ``n_train`` examples: the plan's events in optimiser steps.

    ``layers`` must carry masks at ``plan.initial`` already (the prune stage's output).
    """
    total_steps = epochs * -(-n_train // batch_size)
    return GradualPruner(method, layers, current_masks(layers), plan.events(total_steps), start=plan.initial)
