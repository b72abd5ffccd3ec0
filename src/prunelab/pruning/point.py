"""Pruning one model at one point: the prune stage's work, and each sweep point's.

A point is a ``config.PruneConfig``: the prune stage's own, or the sweep's config for
one method at one k (``options.point_config``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prunelab.config import PruneConfig
from prunelab.pruning.method import METHODS, Pruned

if TYPE_CHECKING:
    from torch import nn


def prune(model: nn.Module, cfg: PruneConfig, input_shape: tuple[int, ...]) -> Pruned:
    """Prune ``model`` in place, from dense, with ``cfg.method`` at ``cfg.sparsity`` (or its threshold).

    A gradual config is pruned here to where its schedule starts (``cfg.start``).
    """
    cfg = cfg.start
    return METHODS.get(cfg.method).prune(model, cfg, input_shape)
