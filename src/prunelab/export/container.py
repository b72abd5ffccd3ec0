"""The .sparse file's contents: each weight stored the smallest way, and the header that lays them out.

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

The container (``pack``): the torch.export program (zlib), then each compressed layer's
arrays, at the offsets its JSON header gives, inside ``integrity.py``'s preamble and
digest. Those layers' weights in the program are placeholders (``pt2.trace``): the file
holds each weight once.
"""

from __future__ import annotations

import lzma
import math
import warnings
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from prunelab import atomic
from prunelab.export import codec, integrity
from prunelab.export.formats import SHARED_VERSION, SPARSE_FORMAT, SPARSE_READS, VERSION
from prunelab.export.integrity import refuse

DENSE, CSR, BITMASK, SHARED = "dense", "csr", "bitmask", "shared"
READS = SPARSE_READS

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
        if largest < 2**bits:
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
        CSR: nnz * value_bytes
        + nnz * _itemsize(index_dtype(max(cols - 1, 0)))
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
        return {
            "values": values,
            "crow_indices": crow.to(torch_dtype(index_dtype(int(crow[-1])))),
            "col_indices": cols.to(torch_dtype(index_dtype(max(matrix.shape[1] - 1, 0)))),
        }
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
        raise ValueError(
            f"values are {dtype_name(values.dtype)} {tuple(values.shape)}, expected 1-D {dtype_name(dtype)}"
        )
    if storage == CSR:
        crow, col = arrays["crow_indices"].long(), arrays["col_indices"].long()
        if (
            crow.shape != (rows + 1,)
            or int(crow[0]) != 0
            or int(crow[-1]) != values.numel()
            or bool((crow[1:] < crow[:-1]).any())
            or col.shape != values.shape
            or (col.numel() and (int(col.min()) < 0 or int(col.max()) >= cols))
        ):
            raise ValueError("CSR arrays are inconsistent with the weight's shape")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            dense = torch.sparse_csr_tensor(crow, col, values, (rows, cols), check_invariants=True).to_dense()
    elif storage == BITMASK:
        packed = arrays["bitmask"]
        if packed.dtype != torch.uint8 or packed.numel() != -(-rows * cols // 8):
            raise ValueError("bitmask has the wrong length")
        bits = ((packed.unsqueeze(1) >> torch.arange(8, dtype=torch.uint8)) & 1).flatten()[: rows * cols].bool()
        if int(bits.sum()) != values.numel():
            raise ValueError("bitmask and values disagree on the number of nonzeros")
        dense = torch.zeros(rows * cols, dtype=dtype)
        dense[bits] = values
    else:
        raise ValueError(f"unknown storage {storage!r}")
    return dense.reshape(shape)


# -- the container -----------------------------------------------------------------------


def pack(
    program: bytes,
    arrays: Mapping[str, tuple[str, torch.Tensor, dict[str, torch.Tensor]]],
    input_shape: tuple[int, ...],
    shared: Mapping[str, codec.Shared] | None = None,
) -> bytes:
    """The .sparse file's bytes: the program (zlib), then each layer's arrays, described by the header.

    ``shared``: layers stored as shared weights (``codec.py``); a file with any is version 2,
    one without is byte for byte what version 1 wrote."""
    program_raw = len(program)
    program = zlib.compress(program, 9)  # the graph is JSON: a tenth of its size, a fifth of a small file
    chunks: list[bytes] = [program]
    offset = len(program)

    def put(tensor: torch.Tensor) -> dict[str, Any]:
        nonlocal offset
        raw = tensor.contiguous().view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        entry = {"dtype": dtype_name(tensor.dtype), "shape": list(tensor.shape), "offset": offset, "bytes": len(raw)}
        chunks.append(raw)
        offset += len(raw)
        return entry

    layers = {
        name: {
            "storage": storage,
            "shape": list(weight.shape),
            "dtype": dtype_name(weight.dtype),
            "nnz": int(weight.count_nonzero()),
            "arrays": {k: put(v) for k, v in parts.items()},
        }
        for name, (storage, weight, parts) in arrays.items()
    }
    for name, layer in (shared or {}).items():
        meta, streams = codec.encode(layer)
        entry = {"storage": SHARED, "shape": list(layer.mask.shape), "dtype": "float32", "nnz": int(layer.mask.sum())}
        streams_at = {}
        for key, raw in streams.items():
            chunks.append(raw)
            streams_at[key] = {"offset": offset, "bytes": len(raw)}
            offset += len(raw)
        layers[name] = entry | {"shared": meta, "streams": streams_at}
    header = {
        "format": SPARSE_FORMAT,
        "version": SHARED_VERSION if shared else VERSION,
        "input_shape": list(input_shape),
        "program": {"offset": 0, "bytes": len(program), "zlib_of": program_raw},
        "layers": layers,
    }
    return integrity.pack_container(header, b"".join(chunks))


def _tensor(payload: memoryview, entry: Mapping[str, Any]) -> torch.Tensor:
    dtype = torch_dtype(entry["dtype"])
    shape = [int(d) for d in entry["shape"]]
    offset, size = int(entry["offset"]), int(entry["bytes"])
    itemsize = torch.empty((), dtype=dtype).element_size()
    if offset < 0 or offset + size > len(payload) or size != math.prod(shape) * itemsize:
        raise ValueError(f"an array at {offset}+{size} does not fit the payload or its shape {shape}")
    if size == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(payload[offset : offset + size]), dtype=dtype).reshape(shape)


def _stream(payload: memoryview, entry: Mapping[str, Any]) -> bytes:
    offset, size = int(entry["offset"]), int(entry["bytes"])
    if offset < 0 or size < 0 or offset + size > len(payload):
        raise ValueError(f"a stream at {offset}+{size} does not fit the payload")
    return bytes(payload[offset : offset + size])


def unpack(
    path: Path, data: bytes
) -> tuple[bytes, tuple[int, ...], dict[str, torch.Tensor], dict[str, str], dict[str, torch.Tensor]]:
    """(program bytes, input shape, dense weights, storage, int8 scales) of a .sparse file, its header
    checked; ``ExportError`` naming it where the header does not describe valid contents. int8
    scales: the per-channel scales of each layer stored as 8-bit linear codes (int8 exactly)."""
    header, payload = integrity.unpack_container(path, data)
    integrity.check_format(path, header, SPARSE_FORMAT, READS)
    try:
        shape = tuple(int(d) for d in header["input_shape"])
        span = header["program"]
        size = int(span["zlib_of"])  # decompressed no further than announced: no zlib bomb
        inflate = zlib.decompressobj()
        program_bytes = inflate.decompress(
            payload[int(span["offset"]) : int(span["offset"]) + int(span["bytes"])], size
        )
        if len(program_bytes) != size or not inflate.eof:
            raise ValueError(f"its program does not inflate to the {size} bytes announced")
        weights, storage, int8 = {}, {}, {}
        for name, layer in header["layers"].items():
            if layer["storage"] == SHARED:
                streams = {k: _stream(payload, v) for k, v in layer["streams"].items()}
                weights[name] = codec.decode(layer["shared"], streams, tuple(int(d) for d in layer["shape"]))
                storage[name] = SHARED
                if layer["shared"]["scheme"] == "linear" and int(layer["shared"]["bits"]) == 8:
                    int8[name] = torch.frombuffer(bytearray(streams["table"]), dtype=torch.float32)
                continue
            arrays = {k: _tensor(payload, v) for k, v in layer["arrays"].items()}
            if layer["dtype"] not in FLOAT_DTYPES:
                raise ValueError(f"layer {name} has dtype {layer['dtype']!r}, not a float type")
            weights[name] = decode(
                layer["storage"], arrays, tuple(int(d) for d in layer["shape"]), torch_dtype(layer["dtype"])
            )
            storage[name] = layer["storage"]
    except (KeyError, TypeError, ValueError, RuntimeError, zlib.error, lzma.LZMAError) as exc:
        raise refuse(path, f"its header does not describe valid contents ({atomic.reason(exc)})") from None
    return program_bytes, shape, weights, storage, int8
