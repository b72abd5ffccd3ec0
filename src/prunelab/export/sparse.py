"""Sparse weights: how each is stored on disk, and the layer that runs it with a sparse kernel.

Storage, chosen per layer as the smallest of three (each exact: values keep their dtype):

- ``dense``: the weight stays in the program as it is;
- ``csr``: the nonzero values in row-major order, their column indices and the row
  pointers, each index array in the narrowest unsigned type that holds its largest value
  (uint8, uint16, uint32, else int64); a conv weight (out, in, kh, kw) is a matrix of
  ``out`` rows;
- ``bitmask``: one bit per weight (1 = nonzero; bit i of the flattened weight is bit
  i % 8 of byte i // 8) and the nonzero values in row-major order.

With float32 values, CSR with int32 indices would cost more than bitmask + values above
1/32 (3.1 %) density, with uint16 indices above 1/16: R1's layers are bitmasks at k = 0.9
and CSR at 0.95 and 0.99, each the smaller.

Inference: a Linear layer whose weight was stored sparse becomes a ``SparseLinear``, which
runs, per batch size, whichever kernel was measured fastest (``kernels``): the dense
``F.linear``; ``torch.mm(csr, x.T).T`` (MKL's sparse times dense on the CPU, cuSPARSE on
CUDA), whose output is the transposed view of a contiguous (out, batch) product, so the
next sparse layer's ``x.T`` is contiguous again and a chain of sparse layers copies
nothing; or, for a weight with whole rows of zeros (unit masks), the dense product of its
other rows, scattered into the output. Conv layers are decompressed at load and run
PyTorch's dense convolution: it has no sparse one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

DENSE, CSR, BITMASK = "dense", "csr", "bitmask"
SPARSE, DENSE_KERNEL, ROWS = "sparse", "dense", "rows"  # the kernels a SparseLinear can run
KERNELS = (DENSE_KERNEL, SPARSE, ROWS)

# dtypes a container may name: anything else is refused before any tensor is built
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")  # of weights and their values
DTYPES = (*FLOAT_DTYPES, "uint8", "uint16", "uint32", "int64")  # and of index arrays (index_dtype)


def torch_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not one prunelab writes")
    return getattr(torch, name)


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def index_dtype(largest: int) -> str:
    """The narrowest unsigned integer type that holds ``largest``."""
    for name, bits in (("uint8", 8), ("uint16", 16), ("uint32", 32)):
        if largest < 2 ** bits:
            return name
    return "int64"


def _itemsize(name: str) -> int:
    return {"uint8": 1, "uint16": 2, "uint32": 4, "int64": 8}[name]


def storage_sizes(shape: tuple[int, ...], nnz: int, value_bytes: int) -> dict[str, int]:
    """Bytes each storage takes for a weight of ``shape`` with ``nnz`` nonzeros."""
    numel = math.prod(shape)
    rows, cols = shape[0], numel // max(shape[0], 1)
    return {
        DENSE: numel * value_bytes,
        CSR: nnz * value_bytes + nnz * _itemsize(index_dtype(max(cols - 1, 0)))
        + (rows + 1) * _itemsize(index_dtype(nnz)),
        BITMASK: -(-numel // 8) + nnz * value_bytes,
    }


def choose_storage(weight: torch.Tensor) -> str:
    """The smallest storage for ``weight`` (dense on a tie: it needs no decoding)."""
    sizes = storage_sizes(tuple(weight.shape), int(weight.count_nonzero()), weight.element_size())
    return min((DENSE, CSR, BITMASK), key=lambda s: sizes[s])


def encode(weight: torch.Tensor, storage: str) -> dict[str, torch.Tensor]:
    """The arrays that store ``weight`` (on the CPU, contiguous)."""
    w = weight.detach().cpu().contiguous()
    matrix = w.reshape(w.shape[0], -1)
    nonzero = matrix != 0
    values = matrix[nonzero]  # row-major order, for both storages
    if storage == CSR:
        counts = nonzero.sum(dim=1)
        crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        cols = nonzero.nonzero()[:, 1]
        return {"values": values,
                "crow_indices": crow.to(torch_dtype(index_dtype(int(crow[-1])))),
                "col_indices": cols.to(torch_dtype(index_dtype(max(matrix.shape[1] - 1, 0))))}
    if storage == BITMASK:
        bits = nonzero.flatten()
        bits = torch.cat([bits, bits.new_zeros(-bits.numel() % 8)]).view(-1, 8).to(torch.uint8)
        packed = (bits << torch.arange(8, dtype=torch.uint8)).sum(dim=1, dtype=torch.uint8)
        return {"values": values, "bitmask": packed}
    raise ValueError(f"unknown storage {storage!r}")


def decode(storage: str, arrays: Mapping[str, torch.Tensor], shape: tuple[int, ...], dtype) -> torch.Tensor:
    """The dense weight back from its arrays; ValueError if they do not describe one of ``shape``."""
    rows, cols = shape[0], math.prod(shape) // max(shape[0], 1)
    values = arrays["values"]
    if values.dtype != dtype or values.dim() != 1:
        raise ValueError(f"values are {dtype_name(values.dtype)} {tuple(values.shape)}, "
                         f"expected 1-D {dtype_name(dtype)}")
    if storage == CSR:
        crow, col = arrays["crow_indices"].long(), arrays["col_indices"].long()
        if (crow.shape != (rows + 1,) or int(crow[0]) != 0 or int(crow[-1]) != values.numel()
                or bool((crow[1:] < crow[:-1]).any()) or col.shape != values.shape
                or (col.numel() and (int(col.min()) < 0 or int(col.max()) >= cols))):
            raise ValueError("CSR arrays are inconsistent with the weight's shape")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            dense = torch.sparse_csr_tensor(crow, col, values, (rows, cols), check_invariants=True).to_dense()
    elif storage == BITMASK:
        packed = arrays["bitmask"]
        if packed.dtype != torch.uint8 or packed.numel() != -(-rows * cols // 8):
            raise ValueError("bitmask has the wrong length")
        bits = ((packed.unsqueeze(1) >> torch.arange(8, dtype=torch.uint8)) & 1).flatten()[:rows * cols].bool()
        if int(bits.sum()) != values.numel():
            raise ValueError("bitmask and values disagree on the number of nonzeros")
        dense = torch.zeros(rows * cols, dtype=dtype)
        dense[bits] = values
    else:
        raise ValueError(f"unknown storage {storage!r}")
    return dense.reshape(shape)


class SparseLinear(nn.Module):
    """A Linear layer stored sparse, run by whichever kernel was measured fastest per batch size.

    Kernels: ``dense`` (``F.linear``), ``sparse`` (CSR times dense, see the module's doc)
    and, for a weight with whole rows of zeros (unit masks), ``rows``: the dense product
    of the rows that are not zero, written into their columns of the output. ``kernels``
    maps a number of input rows (batch size × rows per image) to the kernel chosen there;
    other sizes take the nearest measured one (in log scale); with nothing measured it runs
    dense. Only the forms its kernels need are kept in memory.
    """

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.nnz = int(weight.count_nonzero())
        self.numel = weight.numel()
        live = (weight != 0).any(dim=1).nonzero().flatten()
        self.available = KERNELS if live.numel() < self.out_features else KERNELS[:2]  # rows: only with empty rows
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
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"density={self.nnz / max(self.numel, 1):.4f}, kernels={self.kernels}")

    def weights_multiplied(self, kernel: str) -> int:
        """Weights a kernel multiplies per input row: all, the nonzeros, or the live rows'."""
        return {DENSE_KERNEL: self.numel, SPARSE: self.nnz, ROWS: self.live.numel() * self.in_features}[kernel]

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
                chosen = next(k for k, form in ((DENSE_KERNEL, self.weight), (SPARSE, self.csr), (ROWS, self.compact))
                              if form is not None)
            else:
                nearest = min(self._kernels, key=lambda r: (abs(math.log(r) - math.log(max(rows, 1))), r))
                chosen = self._kernels[nearest]
            self._chosen[rows] = chosen
        return chosen

    def run(self, kernel: str, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        if kernel == DENSE_KERNEL:
            return F.linear(x, self.weight, bias)
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


def _csr(weight: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = weight.to_sparse_csr()
        # int32 indices: MKL's and cuSPARSE's index type, no conversion per call
        return torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(),
                                       csr.shape, check_invariants=False)


def route_through(program: nn.Module, weights: Mapping[str, torch.Tensor]) -> dict[str, SparseLinear]:
    """Put the decoded ``weights`` (layer name → dense weight) into ``program``, a GraphModule.

    Each weight whose every use is ``aten.linear`` gets a ``SparseLinear`` (a submodule of
    the program) that those calls go through, its bias an argument of the call; any other
    weight (a conv's) replaces its placeholder densely. Returns the SparseLinear modules
    by layer name.
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
        if node is not None and node.users and weight.dim() == 2 and all(
                user.target is linear and user.args[1] is node and node not in user.args[2:]
                for user in node.users):
            module = SparseLinear(weight)
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
                    new = graph.call_function(call, (graph.get_attr(module.slot), node.args[0], *node.args[2:3]),
                                              {"relu": True} if fused is not None else {})
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
