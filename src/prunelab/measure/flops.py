"""FLOPs: what a model, or an export with its chosen kernels, computes per image.

FLOPs are ``torch.utils.flop_counter``'s count of matrix products and convolutions, a
multiply-add being 2 FLOPs, per image (counted at batch 1). Elementwise ops, pooling and
normalisation are not counted. ``flops_dense`` is what the model computes as it is, zeros
multiplied; a structurally pruned model is smaller, so it counts less. ``flops_ideal``
counts only multiply-adds whose weight is nonzero: an ideal that no kernel reaches for
free. What an export executes counts each layer at the weights its kernel multiplies: the
nonzeros (CSR), the non-empty rows (rows kernel), or all.

Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prunelab.measure.forward import eval_mode

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class LayerWork:
    """One weighted layer in one forward pass: its weight's size and nonzeros, how often it is
    applied, and the FLOPs flop_counter counted inside it."""

    numel: int
    nnz: int
    uses: int  # output positions computed with the whole weight (rows for a Linear, N*H*W for a conv)
    counted: int
    module: Any

    @property
    def zero_flops(self) -> int:
        """FLOPs spent on zero weights (2 per multiply-add)."""
        return 2 * (self.numel - self.nnz) * self.uses


def count_flops(module: nn.Module, input_shape: Sequence[int], batch: int = 1) -> tuple[int, dict[str, LayerWork]]:
    """FLOPs of one forward pass at ``batch`` (flop_counter), and the work of every weighted layer."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from prunelab.export.sparse import SparseLinear
    from prunelab.pruning.layers import prunable_types

    counter = FlopCounterMode(display=False)
    work: dict[str, LayerWork] = {}
    entered: dict[str, int] = {}

    def enter(name: str) -> Callable[..., None]:
        return lambda layer, args: entered.__setitem__(name, counter.get_total_flops())

    def leave(name: str) -> Callable[..., None]:
        def hook(layer: nn.Module, args: Any, out: torch.Tensor) -> None:
            if isinstance(layer, SparseLinear):
                numel, nnz, rows = layer.numel, layer.nnz, layer.out_features
            else:
                numel, nnz, rows = layer.weight.numel(), int(layer.weight.count_nonzero()), layer.weight.shape[0]
            before = work.get(name, LayerWork(numel, nnz, 0, 0, layer))  # a shared layer adds up
            work[name] = LayerWork(
                numel,
                nnz,
                before.uses + out.numel() // rows,
                before.counted + counter.get_total_flops() - entered[name],
                layer,
            )

        return hook

    weighted = (*prunable_types(), SparseLinear)
    hooks = [
        hook
        for name, m in module.named_modules()
        if isinstance(m, weighted)
        for hook in (m.register_forward_pre_hook(enter(name)), m.register_forward_hook(leave(name)))
    ]
    device = next((t.device for t in (*module.parameters(), *module.buffers())), torch.device("cpu"))
    try:
        with torch.inference_mode(), eval_mode([module]), counter:
            module(torch.zeros(batch, *input_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return int(counter.get_total_flops()), work


def flops_per_image(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """``flops_dense`` (as the model computes, zeros multiplied) and ``flops_ideal`` (nonzero weights only)."""
    total, work = count_flops(model, input_shape)
    return {"flops_dense": total, "flops_ideal": total - sum(w.zero_flops for w in work.values())}


def export_flops_per_image(module: nn.Module, batch: int) -> int:
    """FLOPs per image an export (``export.ExportModule``) executes at ``batch`` with its chosen kernels.

    flop_counter counts a sparse product as if it were dense: each layer the export runs
    through a SparseLinear is counted instead at the weights its kernel at ``batch``
    multiplies (all, the nonzeros, or the rows that are not empty), 2 FLOPs each per use.
    """
    from prunelab.export.sparse import SparseLinear

    total, work = count_flops(module, module.input_shape)
    for w in work.values():
        if isinstance(w.module, SparseLinear):
            kernel = w.module.kernel_for(batch * w.module.rows_per_image)
            total += 2 * w.module.weights_multiplied(kernel) * w.uses - w.counted
    return total
