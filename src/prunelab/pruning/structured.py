"""Structural pruning mechanics: remove whole conv filters or Linear units, physically, with Torch-Pruning.

The methods that use them are ``filter`` (filter.py) and ``unit`` with ``prune.physical``
(unit.py); they check first that the model has something to remove.

filter — per Conv layer, output filters are ranked by their L1 or L2 norm (``prune.norm``)
and either the fraction k with the smallest norms is removed (``prune.sparsity``:
round(k * n) filters of a layer with n) or every filter whose norm is under
``prune.threshold`` (R2). The dependency graph also shrinks the next layer's input
channels, the BatchNorm channels in between and, in ResNets, every layer coupled to the
same channels by a residual addition. A coupled channel's norm is the largest norm among
its coupled filters, so it goes only when every one of them would go. A layer keeps at
least one filter; where the threshold would remove them all, the strongest is kept and
the layer is named in the result.

unit (with ``prune.physical``) — per hidden Linear layer, the round(k * out) neurons with
the smallest L2 row norm are removed with the next layer's matching input columns: the
same neurons the ``unit`` mask zeroes, so without biases the smaller network computes
exactly what the masked one does (a masked neuron with a bias still outputs relu(bias)).

The classifier (last Linear) always keeps its outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from prunelab.pruning.layers import classifier_name, count_params

NORMS = {"l1": 1, "l2": 2}


@dataclass
class StructuredResult:
    kind: str  # what was counted and removed: "filters" or "units"
    params_before: int
    params_after: int
    channels_before: int
    channels_after: int
    kept_one: list[str] = field(default_factory=list)  # layers where the threshold would have removed every filter

    def report(self) -> dict[str, float]:
        return {
            "params_before": self.params_before,
            "params_after": self.params_after,
            "param_reduction": 1 - self.params_after / self.params_before,
            f"{self.kind}_before": self.channels_before,
            f"{self.kind}_after": self.channels_after,
            f"{self.kind}_removed_fraction": 1 - self.channels_after / max(self.channels_before, 1),
        }


def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def hidden_linear_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """Linear layers other than the classifier: the ones whose units can go."""
    skip = classifier_name(model)
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear) and name != skip}


def channel_norms(group, graph, root_type: type[nn.Module], p: int) -> torch.Tensor:
    """Per channel of the group's root: the largest output-row norm among its coupled layers of ``root_type``."""
    norms = torch.zeros(len(group.items[0].idxs), dtype=torch.float64)
    for item in group.items:
        module = item.dep.target.module
        if isinstance(module, root_type) and graph.is_out_channel_pruning_fn(item.dep.handler):
            w = module.weight.detach()[item.idxs].flatten(1).norm(p=p, dim=1).double().cpu()
            norms[item.root_idxs] = torch.maximum(norms[item.root_idxs], w)
    return norms


def remove_channels(
    model: nn.Module,
    input_shape: tuple[int, ...],
    root_type: type[nn.Module],
    kind: str,
    p: int,
    choose: Callable[[torch.Tensor], torch.Tensor],
) -> StructuredResult:
    """Remove, in place, the output channels ``choose(norms)`` picks in every group rooted at ``root_type``."""
    import torch_pruning as tp  # slow to import; only structural pruning needs it

    ignored = [model.get_submodule(classifier_name(model))] if classifier_name(model) else []

    def channels() -> int:  # the classifier's outputs are classes, not prunable channels
        return sum(m.weight.shape[0] for m in model.modules() if isinstance(m, root_type) and m not in ignored)

    result = StructuredResult(kind, count_params(model), 0, channels(), 0)
    was_training = model.training
    model.eval()
    example = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    names = {m: n for n, m in model.named_modules()}
    plans = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=(root_type,)):
        norms = channel_norms(group, graph, root_type, p)
        drop = choose(norms)
        if len(drop) >= len(norms):  # keep the strongest channel: a layer cannot vanish
            drop = drop[drop != torch.argmax(norms)]
            result.kept_one.append(names[group.items[0].dep.target.module])
        if len(drop):
            plans.append((group.items[0].dep.target.module, group.items[0].dep.handler, sorted(drop.tolist())))
    for module, handler, idxs in plans:
        graph.get_pruning_group(module, handler, idxs).prune()
    model.train(was_training)
    result.params_after, result.channels_after = count_params(model), channels()
    return result


def smallest(sparsity: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda norms: torch.argsort(norms, stable=True)[: round(sparsity * len(norms))]


def remove_filters(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    sparsity: float | None = None,
    threshold: float | None = None,
    norm: str = "l2",
) -> StructuredResult:
    """Physically remove filters from ``model`` in place (eval mode); see the module docstring."""
    if (sparsity is None) == (threshold is None):
        raise ValueError("give exactly one of sparsity and threshold")
    choose = smallest(sparsity) if sparsity is not None else (lambda norms: torch.nonzero(norms < threshold).flatten())
    return remove_channels(model, input_shape, nn.Conv2d, "filters", NORMS[norm], choose)


def remove_units(model: nn.Module, input_shape: tuple[int, ...], *, sparsity: float) -> StructuredResult:
    """Physically remove the ``unit`` method's neurons from every hidden Linear layer, in place."""
    return remove_channels(model, input_shape, nn.Linear, "units", 2, smallest(sparsity))
