"""parameters: how many there are, how many are nonzero, and the achieved sparsity.

params, nonzero params, compression ratio = params / nonzero, and achieved sparsity
(zeros / size) over the prunable weights and over all parameters: always counted from
the weights, never assumed from the requested k. Parameters are counted in one place
(``count_params``, in ``pruning.layers`` so that structural pruning, below this package,
uses it too): the baseline, structural pruning and these metrics use the same function.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prunelab.measure.metric import METRICS, Column, Metric
from prunelab.pruning.layers import count_params  # also re-exported: prunelab.measure.parameters.count_params

if TYPE_CHECKING:
    import torch
    from torch import nn


def effective_parameters(model: nn.Module) -> Iterator[torch.Tensor]:
    """Every parameter as the forward pass sees it (a masked weight counts as weight * mask)."""
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            base = name[: -len("_orig")] if name.endswith("_orig") else None
            if base is not None and hasattr(module, base + "_mask"):
                yield getattr(module, base).detach()
            else:
                yield p.detach()


def sparsity_report(model: nn.Module, layers: Mapping[str, nn.Module]) -> dict[str, float | int]:
    """Achieved sparsity: zeros / size.

    ``sparsity_prunable`` counts over the prunable weights (``layers``) only,
    ``sparsity_all`` over every parameter (biases, norm layers, classifier included).
    """
    prunable_total = sum(m.weight.numel() for m in layers.values())
    prunable_zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    total = count_params(model)
    nonzero = sum(int(t.count_nonzero()) for t in effective_parameters(model))
    return {
        "params": total,
        "nonzero_params": nonzero,
        "compression_ratio": total / nonzero if nonzero else float("inf"),
        "prunable_params": prunable_total,
        "prunable_zeros": prunable_zeros,
        "sparsity_prunable": prunable_zeros / prunable_total if prunable_total else 0.0,
        "sparsity_all": (total - nonzero) / total if total else 0.0,
    }


METRICS.add(
    Metric(
        "parameters",
        "parameter counts and achieved sparsity, counted from the weights",
        (
            Column("sparsity_prunable", "zeros / size over the prunable weights (achieved, not requested)"),
            Column("sparsity_all", "zeros / size over every parameter"),
            Column("params", "parameters (a filter- or physically unit-pruned model has fewer)"),
            Column("nonzero_params", "parameters that are not zero"),
            Column("compression_ratio", "params / nonzero_params"),
            Column("prunable_params", "weights of the prunable layers", table=False),
            Column("prunable_zeros", "zero weights of the prunable layers", table=False),
        ),
        lambda s: sparsity_report(s.model, s.layers),
    )
)
