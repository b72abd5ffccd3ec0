"""Pruning one model at one point: the prune stage's work, and each sweep point's.

A point is a ``config.PruneConfig`` (``cfg`` below, duck-typed: pruning never imports
config, which imports pruning to validate): the prune stage's own, or the sweep's config for one
method at one k (``point_config``), derived with ``dataclasses.replace`` so that every
check of the config runs again for it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from prunelab.errors import ConfigError
from prunelab.pruning.method import METHODS, Pruned

if TYPE_CHECKING:
    from torch import nn



def prune(model: nn.Module, cfg, input_shape: tuple[int, ...]) -> Pruned:
    """Prune ``model`` in place, from dense, with ``cfg.method`` at ``cfg.sparsity`` (or its threshold).

    A gradual config is pruned here to where its schedule starts (``cfg.start``).
    """
    cfg = cfg.start
    return METHODS.get(cfg.method).prune(model, cfg, input_shape)


def point_config(cfg, method: str, sparsity: float):
    """The sweep's config for ``method`` at ``sparsity``: the study's options, by ratio.

    Options that only other methods read, and that would be an error with this one
    (``Method.exclusive``), go back to their defaults; the threshold gives way to k; a
    schedule starts no higher than k. An invalid combination (a structural method on a
    gradual schedule) is reported as in the prune stage, with the sweep named.
    """
    target = METHODS.get(method)
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    foreign = {option: defaults[option] for m in METHODS.values() for option in m.exclusive
               if option not in target.options}
    changes = {**foreign, "method": method, "sparsity": sparsity, "threshold": None,
               "initial_sparsity": min(cfg.initial_sparsity, sparsity)}
    try:
        return dataclasses.replace(cfg, **changes)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.value, f"{exc.allowed} (sweep.methods includes {method!r})") from None
