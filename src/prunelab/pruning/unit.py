"""unit: per Linear layer, zero the k fraction of neurons with the smallest L2 norm.

A neuron (unit) is a row of the (out, in) weight matrix: the weights feeding one output.
round(k * out) rows are zeroed whole (torch.nn.utils.prune.ln_structured, n=2, dim=0).
Conv layers are left alone (filter pruning is the structured method for them).

With ``prune.physical: true`` the same neurons are removed instead, with the next
layer's matching inputs (``structured.remove_units``): a structural variant of the same
method, so it cannot follow a gradual schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prunelab.config import MethodOptions, check_bool
from prunelab.pruning.method import METHODS, STRUCTURAL, MaskMethod, Pruned, structural

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class UnitOptions(MethodOptions):
    physical: bool = False  # remove the pruned neurons (a smaller network) instead of zeroing them

    def __post_init__(self) -> None:
        check_bool(self.key("physical"), self.physical)


class Unit(MaskMethod):
    name = "unit"
    options = UnitOptions
    exclusive = ("physical",)

    def kind(self, cfg) -> str:
        return STRUCTURAL if cfg.options.physical else super().kind(cfg)

    def describe(self, cfg) -> str:
        return "prune.physical: true" if cfg.options.physical else super().describe(cfg)

    def why_not(self, model: nn.Module, cfg) -> str | None:
        from prunelab.pruning.layers import linear_layers, prunable_layers
        from prunelab.pruning.structured import hidden_linear_layers

        # physical removal never touches the classifier's outputs: they are the classes
        layers = (
            hidden_linear_layers(model)
            if cfg.options.physical
            else linear_layers(prunable_layers(model, cfg.include_classifier))
        )
        if layers:
            return None
        return "has no fully connected layer besides the classifier, so unit pruning would remove nothing"

    def masks(
        self, layers: Mapping[str, nn.Module], sparsity: float, current: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        import torch
        from torch import nn
        from torch.nn.utils import prune

        from prunelab.pruning.masks import effective_weight

        out = {}
        for name, module in layers.items():
            w = effective_weight(module, current.get(name))
            alive = current.get(name, torch.ones_like(w))
            if not isinstance(module, nn.Linear):
                out[name] = alive.clone()
                continue
            out[name] = prune.LnStructured(amount=float(sparsity), n=2, dim=0).compute_mask(w, alive).clone()
        return out

    def prune(self, model: nn.Module, cfg, input_shape: tuple[int, ...]) -> Pruned:
        if not cfg.options.physical:
            return super().prune(model, cfg, input_shape)
        from prunelab.pruning.structured import remove_units

        self.require(model, cfg)
        return structural(model, cfg, remove_units(model, input_shape, sparsity=cfg.sparsity))


METHODS.add(Unit())
