"""filter: remove whole convolution filters, physically, with Torch-Pruning's dependency graph.

Per Conv layer, output filters are ranked by their L1 or L2 norm (``prune.norm``) and
either the fraction k with the smallest norms is removed (``prune.sparsity``: round(k * n)
filters of a layer with n) or every filter whose norm is under ``prune.threshold``
(R2). Removal is physical: the dependency graph also shrinks the next layer's input
channels, the BatchNorm channels in between and, in ResNets, every layer coupled to the
same channels by a residual addition. A coupled channel's norm is the largest norm among
its coupled filters, so it goes only when every one of them would go. A layer keeps at
least one filter; where the threshold would remove them all, the strongest is kept and
the layer is named in the result. The classifier (last Linear) keeps its outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from prunelab.errors import PrunelabError
from prunelab.pruning import METHODS
from prunelab.pruning.layers import classifier_name

NORMS = {"l1": 1, "l2": 2}


@dataclass
class StructuredResult:
    params_before: int
    params_after: int
    filters_before: int
    filters_after: int
    kept_one: list[str] = field(default_factory=list)  # layers where the threshold would have removed every filter

    def report(self) -> dict[str, float]:
        return {"params_before": self.params_before, "params_after": self.params_after,
                "param_reduction": 1 - self.params_after / self.params_before,
                "filters_before": self.filters_before, "filters_after": self.filters_after,
                "filters_removed_fraction": 1 - self.filters_after / max(self.filters_before, 1)}


def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def channel_norms(group, graph, p: int) -> torch.Tensor:
    """Per channel of the group's root: the largest filter norm among its coupled conv layers."""
    norms = torch.zeros(len(group.items[0].idxs), dtype=torch.float64)
    for item in group.items:
        module = item.dep.target.module
        if isinstance(module, nn.Conv2d) and graph.is_out_channel_pruning_fn(item.dep.handler):
            w = module.weight.detach()[item.idxs].flatten(1).norm(p=p, dim=1).double().cpu()
            norms[item.root_idxs] = torch.maximum(norms[item.root_idxs], w)
    return norms


@METHODS.register("filter")
def remove_filters(model: nn.Module, input_shape: tuple[int, ...], *, sparsity: float | None = None,
                   threshold: float | None = None, norm: str = "l2") -> StructuredResult:
    """Physically remove filters from ``model`` in place (eval mode); see the module docstring."""
    import torch_pruning as tp  # slow to import; only structural pruning needs it

    if (sparsity is None) == (threshold is None):
        raise ValueError("give exactly one of sparsity and threshold")
    convs = conv_layers(model)
    if not convs:
        raise PrunelabError("prune.method 'filter' needs convolution layers; this model has none "
                            "(use 'unit' for fully connected networks)")
    before = StructuredResult(count_params(model), 0, sum(c.out_channels for c in convs.values()), 0)
    was_training = model.training
    model.eval()
    example = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    names = {m: n for n, m in model.named_modules()}
    ignored = [dict(model.named_modules())[classifier_name(model)]] if classifier_name(model) else []
    plans = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=(nn.Conv2d,)):
        norms = channel_norms(group, graph, NORMS[norm])
        if sparsity is not None:
            drop = torch.argsort(norms, stable=True)[:int(round(sparsity * len(norms)))]
        else:
            drop = torch.nonzero(norms < threshold).flatten()
        if len(drop) >= len(norms):  # keep the strongest filter: a layer cannot vanish
            drop = drop[drop != torch.argmax(norms)]
            before.kept_one.append(names[group.items[0].dep.target.module])
        if len(drop):
            plans.append((group.items[0].dep.target.module, group.items[0].dep.handler, sorted(drop.tolist())))
    for module, handler, idxs in plans:
        graph.get_pruning_group(module, handler, idxs).prune()
    model.train(was_training)
    convs = conv_layers(model)
    before.params_after = count_params(model)
    before.filters_after = sum(c.out_channels for c in convs.values())
    return before
