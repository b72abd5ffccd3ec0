"""SparseLinear: a Linear layer whose weight was stored sparse (``container.py``), run by a sparse kernel.

At load each such layer becomes a ``SparseLinear``, which runs, per batch size, whichever
kernel was measured fastest there (``kernels.py``): the dense ``F.linear``;
``torch.mm(csr, x.T).T`` (MKL's sparse times dense on the CPU, cuSPARSE on CUDA), whose
output is the transposed view of a contiguous (out, batch) product, so the next sparse
layer's ``x.T`` is contiguous again and a chain of sparse layers copies nothing; or, for
a weight with whole rows of zeros (unit masks), the dense product of its other rows,
scattered into the output. Conv layers are decompressed at load and run PyTorch's dense
convolution: it has no sparse one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

SPARSE, DENSE_KERNEL, ROWS, INT8 = "sparse", "dense", "rows", "int8"  # the kernels a SparseLinear can run
KERNELS = (DENSE_KERNEL, SPARSE, ROWS, INT8)


class SparseLinear(nn.Module):
    """A Linear layer stored sparse, run by whichever kernel was measured fastest per batch size.

    Kernels: ``dense`` (``F.linear``), ``sparse`` (CSR times dense, see the module's doc)
    and, for a weight with whole rows of zeros (unit masks), ``rows``: the dense product
    of the rows that are not zero, written into their columns of the output. ``kernels``
    maps a number of input rows (batch size × rows per image) to the kernel chosen there;
    other sizes take the nearest measured one (in log scale); with nothing measured it runs
    dense. Only the forms its kernels need are kept in memory.
    """

    def __init__(self, weight: torch.Tensor, int8_scales: torch.Tensor | None = None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.nnz = int(weight.count_nonzero())
        self.numel = weight.numel()
        live = (weight != 0).any(dim=1).nonzero().flatten()
        self.available = KERNELS[:3] if live.numel() < self.out_features else KERNELS[:2]  # rows: only with empty rows
        # int8: PyTorch's dynamic int8 linear (fbgemm/x86), for a weight stored as int8 per channel
        # (compress.scheme linear, 8 bits), which it holds exactly; only the activations are rounded
        self.int8_scales = int8_scales
        if int8_scales is not None and weight.device.type == "cpu":
            self.available = (*self.available, INT8)
        self.packed: object | None = None
        self.kernels = {}
        self.rows_per_image = 1  # rows of its input per input image (set by a probe at load)
        self.slot = ""  # its name inside the program (route_through)
        self.weight: torch.Tensor | None
        self.csr: torch.Tensor | None
        self.compact: torch.Tensor | None
        self.register_buffer("weight", weight)
        self.register_buffer("csr", None)
        self.register_buffer("live", live)  # indices of the rows that are not all zero
        self.register_buffer("compact", None)  # those rows, dense

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"density={self.nnz / max(self.numel, 1):.4f}, kernels={self.kernels}"
        )

    def weights_multiplied(self, kernel: str) -> int:
        """Weights a kernel multiplies per input row: all, the nonzeros, or the live rows'."""
        return {
            DENSE_KERNEL: self.numel,
            SPARSE: self.nnz,
            ROWS: self.live.numel() * self.in_features,
            INT8: self.numel,
        }[kernel]

    def dense_weight(self) -> torch.Tensor:
        if self.weight is not None:
            return self.weight
        if self.csr is not None:
            return self.csr.to_dense()
        dense = self.compact.new_zeros(self.out_features, self.in_features)
        return dense.index_copy_(0, self.live, self.compact)

    def keep(self, kernels: set[str]) -> None:
        """Hold only the forms ``kernels`` need (all of them while measuring)."""
        weight = self.dense_weight()
        self.csr = (self.csr if self.csr is not None else _csr(weight)) if SPARSE in kernels else None
        self.compact = weight.index_select(0, self.live) if ROWS in kernels else None
        keep_int8 = INT8 in kernels and INT8 in self.available
        self.packed = (_int8(weight, self.int8_scales) if self.packed is None else self.packed) if keep_int8 else None
        self.weight = weight if DENSE_KERNEL in kernels else None

    @property
    def kernels(self) -> dict[int, str]:
        return self._kernels

    @kernels.setter
    def kernels(self, value: dict[int, str]) -> None:
        self._kernels, self._chosen = dict(value), {}

    def kernel_for(self, rows: int) -> str:
        chosen = self._chosen.get(rows)  # a dict lookup per call: the forward pass stays cheap
        if chosen is None:
            if not self._kernels:
                chosen = next(
                    k
                    for k, form in (
                        (DENSE_KERNEL, self.weight),
                        (SPARSE, self.csr),
                        (ROWS, self.compact),
                        (INT8, self.packed),
                    )
                    if form is not None
                )
            else:
                nearest = min(self._kernels, key=lambda r: (abs(math.log(r) - math.log(max(rows, 1))), r))
                chosen = self._kernels[nearest]
            self._chosen[rows] = chosen
        return chosen

    def run(self, kernel: str, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        if kernel == DENSE_KERNEL:
            return F.linear(x, self.weight, bias)
        if kernel == INT8:
            y = torch.ops.quantized.linear_dynamic(x.contiguous(), self.packed)
            return y if bias is None else y.add_(bias)
        if kernel == ROWS:
            if bias is None:
                return x.new_zeros(x.shape[0], self.out_features).index_copy_(1, self.live, F.linear(x, self.compact))
            out = bias.expand(x.shape[0], -1).clone()  # an empty row's output is its bias
            return out.index_copy_(1, self.live, F.linear(x, self.compact, bias.index_select(0, self.live)))
        # MKL's sparse product is fastest on a row-major (in, batch) operand: after a sparse
        # layer x.T already is one; the first sparse layer makes it with one small copy
        xt = x.t().contiguous()
        if bias is None:
            return torch.mm(self.csr, xt).t()
        return torch.addmm(bias.unsqueeze(1), self.csr, xt).t()

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False) -> torch.Tensor:
        flat = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
        y = self.run(self.kernel_for(flat.shape[0]), flat, bias)
        if relu:  # the ReLU that followed the layer in the program, in place on the fresh output
            y = y.relu_()
        return y if x.dim() == 2 else y.reshape(*x.shape[:-1], self.out_features)


def _int8(weight: torch.Tensor, scales: torch.Tensor) -> object:
    """The weight packed for ``quantized.linear_dynamic``: int8 per output channel, exact for a weight
    that is already int8 × its channel's scale (the linear scheme's)."""
    zeros = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.quantize_per_tensor, torch.quantize_per_channel")
        q = torch.quantize_per_channel(weight.detach().cpu().float(), scales.double(), zeros, 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(q, None)


def _csr(weight: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = weight.to_sparse_csr()
        # int32 indices: MKL's and cuSPARSE's index type, no conversion per call
        return torch.sparse_csr_tensor(
            csr.crow_indices().int(), csr.col_indices().int(), csr.values(), csr.shape, check_invariants=False
        )


def route_through(
    program: nn.Module, weights: Mapping[str, torch.Tensor], int8_scales: Mapping[str, torch.Tensor] | None = None
) -> dict[str, SparseLinear]:
    """Put the decoded ``weights`` (layer name → dense weight) into ``program``, a GraphModule.

    Each weight whose every use is ``aten.linear`` gets a ``SparseLinear`` (a submodule of
    the program) that those calls go through, its bias an argument of the call; any other
    weight (a conv's) replaces its placeholder densely. Returns the SparseLinear modules
    by layer name. ``int8_scales``: the layers that may run the int8 kernel (stored int8 per
    channel), with their scales.
    """
    graph = program.graph
    getters = {node.target: node for node in graph.nodes if node.op == "get_attr"}
    linear = torch.ops.aten.linear.default
    routed: dict[str, SparseLinear] = {}
    for name, weight in weights.items():
        target = f"{name}.weight"
        node = getters.get(target)
        owner_name, _, attr = target.rpartition(".")
        owner = program.get_submodule(owner_name)
        if (
            node is not None
            and node.users
            and weight.dim() == 2
            and all(user.target is linear and user.args[1] is node and node not in user.args[2:] for user in node.users)
        ):
            module = SparseLinear(weight, (int8_scales or {}).get(name))
            module.slot = "sparse_" + name.replace(".", "_")
            program.add_submodule(module.slot, module)
            node.target = f"{module.slot}.weight"  # the linear calls now read the SparseLinear's weight
            delattr(owner, attr)
            routed[name] = module
        else:
            setattr(owner, attr, nn.Parameter(weight, requires_grad=False))
    set_routes(program, routed.values(), sparse_everywhere=True)
    return routed


def call(layer: SparseLinear, x: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False) -> torch.Tensor:
    """How the program calls a SparseLinear: its ``forward`` directly, through the module only
    when a hook watches it (a module call costs a tenth of a small network's forward at batch 1)."""
    if layer._forward_hooks or layer._forward_pre_hooks:
        return layer(x, bias, relu=relu)
    return layer.forward(x, bias, relu)


def set_routes(program: nn.Module, layers, sparse_everywhere: bool = False) -> None:
    """Point each layer's calls at its SparseLinear where it runs a sparse kernel at some batch size.

    There a ReLU that alone follows the layer is folded into the call (applied in place).
    A layer that runs dense at every measured batch size is called as the plain
    ``aten.linear`` (and ReLU) the program was traced with, on the SparseLinear's dense
    weight: the fallback then costs nothing over the dense program.
    """
    graph = program.graph
    linear, relu = torch.ops.aten.linear.default, torch.ops.aten.relu.default

    def reads(node, target: str) -> bool:
        return isinstance(node, torch.fx.Node) and node.op == "get_attr" and node.target == target

    for module in layers:
        via_module = sparse_everywhere or set(module.kernels.values()) - {DENSE_KERNEL} or module.weight is None
        weight_target = f"{module.slot}.weight"
        for node in list(graph.nodes):
            if via_module and node.target is linear and reads(node.args[1], weight_target):
                getter, users = node.args[1], list(node.users)
                fused = users[0] if len(users) == 1 and users[0].target is relu else None
                with graph.inserting_before(node):
                    new = graph.call_function(
                        call,
                        (graph.get_attr(module.slot), node.args[0], *node.args[2:3]),
                        {"relu": True} if fused is not None else {},
                    )
                (fused or node).replace_all_uses_with(new)
                for old in (fused, node):
                    if old is not None:
                        graph.erase_node(old)
            elif not via_module and node.target is call and reads(node.args[0], module.slot):
                getter = node.args[0]
                with graph.inserting_before(node):
                    new = graph.call_function(linear, (node.args[1], graph.get_attr(weight_target), *node.args[2:3]))
                    if node.kwargs.get("relu"):
                        new = graph.call_function(relu, (new,))
                node.replace_all_uses_with(new)
                graph.erase_node(node)
            else:
                continue
            if not getter.users:
                graph.erase_node(getter)
    graph.lint()
    program.recompile()
