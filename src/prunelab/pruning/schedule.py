"""Sparsity schedules: pure functions of the training step (no model, no state).

``polynomial`` is the gradual-pruning schedule of Zhu & Gupta (2017), also TensorFlow
Model Optimization's ``PolynomialDecay``: over a ramp of T optimiser steps the sparsity
rises from s_i to s_f as

    s(t) = s_f + (s_i - s_f) * (1 - t / T) ** power      for 0 <= t <= T,  s_f after,

fast at first, while the network has redundant weights to lose, slowly near the end.
Masks are recomputed at ``steps`` evenly spaced steps of the ramp, the last one at T, so
the target is reached exactly; between them the network trains with its masks fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prunelab.config import PruneConfig


def polynomial_sparsity(step: int, ramp_steps: int, initial: float, final: float, power: float = 3.0) -> float:
    """s(t) above; ``ramp_steps`` = T (T = 0 jumps straight to ``final``)."""
    if ramp_steps <= 0 or step >= ramp_steps:
        return final
    return final + (initial - final) * (1.0 - max(step, 0) / ramp_steps) ** power


def event_steps(ramp_steps: int, events: int) -> list[int]:
    """The optimiser steps (1-based, increasing, distinct) after which masks are recomputed.

    ``events`` evenly spaced steps ending at ``ramp_steps``; fewer when the ramp is shorter
    than that. Step 0 (before training) is the prune stage's initial sparsity.
    """
    ramp_steps = max(ramp_steps, 1)
    return sorted({math.ceil(j * ramp_steps / events) for j in range(1, events + 1)})


def gradual(cfg: PruneConfig) -> Polynomial | None:
    """The polynomial schedule of a prune config towards its sparsity (None unless prune.schedule is polynomial)."""
    if cfg.schedule != "polynomial":
        return None
    return Polynomial(cfg.initial_sparsity, cfg.sparsity, cfg.ramp, cfg.steps, cfg.power)


@dataclass(frozen=True)
class Polynomial:
    """Where a gradual-pruning run goes: from ``initial`` to ``final`` sparsity over ``ramp`` of training."""

    initial: float
    final: float
    ramp: float = 0.5  # fraction of the fine-tuning steps over which sparsity rises
    steps: int = 10  # how many times masks are recomputed during the ramp
    power: float = 3.0  # Zhu & Gupta's cubic

    def ramp_steps(self, total_steps: int) -> int:
        return max(1, round(self.ramp * total_steps))

    def events(self, total_steps: int) -> list[tuple[int, float]]:
        """(step, sparsity) for each mask update of a run of ``total_steps`` optimiser steps."""
        ramp = self.ramp_steps(total_steps)
        return [
            (t, polynomial_sparsity(t, ramp, self.initial, self.final, self.power))
            for t in event_steps(ramp, self.steps)
        ]
