"""filter: per Conv layer, remove whole output filters by L1 or L2 norm, physically.

By fraction (``prune.sparsity``: round(k * n) of a layer's n filters) or under a norm
threshold (``prune.threshold``, R2). The mechanics, and what shrinks with a filter, are
in ``structured.py``. Structures are removed once, so no gradual schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prunelab.config import MethodOptions, check_choice
from prunelab.pruning.method import METHODS, STRUCTURAL, Method, Pruned, structural

if TYPE_CHECKING:
    from torch import nn


NORMS = ("l1", "l2")


@dataclass(frozen=True)
class FilterOptions(MethodOptions):
    norm: str = "l2"  # rank filters by L1 or L2 norm (R2: l2)

    def __post_init__(self) -> None:
        check_choice(self.key("norm"), self.norm, NORMS)


class Filter(Method):
    name = "filter"
    options = FilterOptions  # norm may stay set whatever prune.method is: the sweep's filter points read it
    by_threshold = True  # R2 removes the filters under a norm threshold

    def kind(self, cfg) -> str:
        return STRUCTURAL

    def why_not(self, model: nn.Module, cfg) -> str | None:
        from prunelab.pruning.structured import conv_layers

        return None if conv_layers(model) else "has no convolution layers to remove filters from"

    def prune(self, model: nn.Module, cfg, input_shape: tuple[int, ...]) -> Pruned:
        from prunelab.pruning.structured import remove_filters

        self.require(model, cfg)
        return structural(
            model,
            cfg,
            remove_filters(model, input_shape, sparsity=cfg.sparsity, threshold=cfg.threshold, norm=cfg.options.norm),
        )


METHODS.add(Filter())
