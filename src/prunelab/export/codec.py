"""Deep Compression's encoding of a layer (Han et al. 2016, section 2): shared weights, compact
indices, entropy coding. The ``shared`` storage of the .sparse format, version 2.

A layer stored ``shared`` is three streams and a table:

- **positions** of its nonzero weights in the flattened weight, stored whichever way is
  smaller: ``all`` (no zeros: nothing stored), ``bitmask`` (one bit per weight: dense
  enough), or ``relative`` indices of ``index_bits`` bits each: entry v ≥ 1 puts the next
  weight v places after the previous one (the first after place -1); entry 0 is a filler
  that moves 2**index_bits - 1 places on with no weight there, so a gap of any length costs
  a few entries (Han's filler zeros, except that a filler carries no code);
- **codes**: one per nonzero, in the same order, of ``bits`` bits: ``kmeans`` codes index a
  per-layer ``table`` of 2**bits shared values (the codebook); ``linear`` codes are signed
  integers q with |q| ≤ 2**(bits-1) - 1, stored as q + 2**(bits-1) - 1, and the ``table``
  holds one scale per output channel (value = q × scale of its row);
- each stream is then entropy coded by the standard library: LZMA2 (a range coder over
  its LZ model), bzip2 (Burrows-Wheeler, then Huffman) or zlib (Huffman) over one byte per
  symbol, or left packed to its bits, whichever is smallest (``coding``). No coder is
  written here.

Decoding checks every count and bound before it builds a tensor, and inflates no stream
past the length its header announces (no decompression bomb).
"""

from __future__ import annotations

import bz2
import lzma
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from prunelab.config.sections import COMPRESS_BITS as BITS  # codes of 2 to 8 bits: 4 to 256 shared values, int2 to int8
from prunelab.config.sections import COMPRESS_SCHEMES as SCHEMES

POSITIONS = ("all", "bitmask", "relative")
CODINGS = ("packed", "zlib", "bz2", "lzma")
LZMA_UP_TO = 2**18
# raw LZMA2 (no 60-byte .xz framing); preset 6: within 0.2 % of preset 9's size on R1's layers
# (measured at k = 0.5 and 0.95), and its 8 MiB dictionary is set up five times faster
_LZMA = [{"id": lzma.FILTER_LZMA2, "preset": 6}]
_MAX_INDEX_BITS = 8


@dataclass(frozen=True)
class Shared:
    """A layer's weight as shared values: what quantization decided, before any encoding.

    ``codes`` holds one code per nonzero weight of ``mask`` in row-major order (uint8);
    ``table`` the codebook (kmeans, 2**bits values) or the per-row scales (linear)."""

    scheme: str
    bits: int
    table: torch.Tensor  # float32
    codes: torch.Tensor  # uint8, one per True of mask, row-major
    mask: torch.Tensor  # bool, the weight's shape

    def values(self) -> torch.Tensor:
        """The nonzero weights' values, in row-major order."""
        return values_of(self.scheme, self.bits, self.table, self.codes.long(), self.mask.reshape(len(self.mask), -1))

    def dense(self) -> torch.Tensor:
        """The weight these stand for (zeros where the mask is False)."""
        out = torch.zeros(self.mask.shape, dtype=torch.float32)
        out[self.mask] = self.values()
        return out


def offset(bits: int) -> int:
    """What a linear code adds to q so that it is stored unsigned."""
    return 2 ** (bits - 1) - 1


def values_of(scheme: str, bits: int, table: torch.Tensor, codes: torch.Tensor, matrix_mask: torch.Tensor):
    if scheme == "kmeans":
        return table[codes]
    rows = matrix_mask.nonzero()[:, 0]  # the row of each nonzero, row-major like the codes
    return (codes - offset(bits)).to(table.dtype) * table[rows]


# -- bits and streams ----------------------------------------------------------------------


def pack_bits(symbols: torch.Tensor, bits: int) -> bytes:
    """Symbols (each < 2**bits) as a little-endian bit stream: bit j of symbol i is bit i*bits + j."""
    if symbols.numel() == 0:
        return b""
    shifts = torch.arange(bits, dtype=torch.int64)
    stream = ((symbols.long().unsqueeze(1) >> shifts) & 1).flatten().to(torch.uint8)
    stream = torch.cat([stream, stream.new_zeros(-stream.numel() % 8)]).view(-1, 8)
    return (stream << torch.arange(8, dtype=torch.uint8)).sum(dim=1, dtype=torch.uint8).numpy().tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> torch.Tensor:
    if len(data) != -(-count * bits // 8):
        raise ValueError(f"a packed stream of {len(data)} bytes cannot hold {count} symbols of {bits} bits")
    if count == 0:
        return torch.zeros(0, dtype=torch.long)
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    stream = ((raw.unsqueeze(1) >> torch.arange(8, dtype=torch.uint8)) & 1).flatten()
    if bool(stream[count * bits :].any()):  # the writer pads with zeros: set bits there mean a wrong count
        raise ValueError(f"a packed stream holds more than {count} symbols of {bits} bits")
    stream = stream[: count * bits]
    return (stream.view(count, bits).long() << torch.arange(bits, dtype=torch.int64)).sum(dim=1)


def entropy_code(symbols: torch.Tensor, bits: int) -> tuple[str, bytes]:
    """The smallest of the symbols packed to ``bits`` and one byte per symbol through zlib, bzip2 or LZMA2.

    One-bit symbols (a bitmask) stay packed: one byte per bit gives the coders eight times the
    input for at most what packing saves (measured: never smaller, and zlib took seconds).
    LZMA2 is tried on streams up to ``LZMA_UP_TO`` symbols: it is the smallest by 5-10 % but
    takes about 0.3 s per MB, which the sweep's low-k points (a million codes a layer) would
    pay 26 times; zlib and bzip2 take a tenth of that."""
    packed = pack_bits(symbols, bits)
    options = {"packed": packed}
    if bits > 1:
        one_per_byte = symbols.to(torch.uint8).numpy().tobytes()
        options["zlib"] = zlib.compress(one_per_byte, 6)  # level 9 is no smaller here, and slow on repetitive input
        options["bz2"] = bz2.compress(one_per_byte, 9)
        if 64 <= len(one_per_byte) <= LZMA_UP_TO:  # below 64, LZMA2's own framing outweighs what it saves
            options["lzma"] = lzma.compress(one_per_byte, format=lzma.FORMAT_RAW, filters=_LZMA)
    coding = min(CODINGS, key=lambda c: len(options[c]) if c in options else math.inf)  # packed on a tie
    return coding, options[coding]


def entropy_decode(coding: str, data: bytes, bits: int, count: int) -> torch.Tensor:
    if coding == "packed":
        return unpack_bits(data, bits, count)
    if coding == "zlib":
        inflate = zlib.decompressobj()
    elif coding == "bz2":
        inflate = bz2.BZ2Decompressor()
    elif coding == "lzma":
        inflate = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA)
    else:
        raise ValueError(f"unknown coding {coding!r} (known: {', '.join(CODINGS)})")
    raw = inflate.decompress(data, count)
    if not inflate.eof:  # stopped at the count: the stream must end right there
        rest = inflate.unconsumed_tail if coding == "zlib" else b""
        raw += inflate.decompress(rest, 1)
    if len(raw) != count or not inflate.eof or inflate.unused_data:
        raise ValueError(f"a {coding} stream does not decode to the {count} symbols announced")
    symbols = torch.frombuffer(bytearray(raw), dtype=torch.uint8).long() if count else torch.zeros(0, dtype=torch.long)
    if count and int(symbols.max()) >= 2**bits:
        raise ValueError(f"a {coding} stream holds symbols of more than {bits} bits")
    return symbols


# -- positions -----------------------------------------------------------------------------


def relative_entries(flat_positions: torch.Tensor, index_bits: int) -> torch.Tensor:
    """The relative-index entries for ascending positions (fillers 0 where a gap is too long)."""
    step = 2**index_bits - 1
    gaps = torch.diff(flat_positions, prepend=flat_positions.new_tensor([-1]))
    fillers = (gaps - 1) // step  # whole steps before the entry that lands on the weight
    last = gaps - fillers * step
    count = fillers + 1
    entries = torch.zeros(int(count.sum()), dtype=torch.int64)
    entries[torch.cumsum(count, 0) - 1] = last
    return entries


def relative_positions(entries: torch.Tensor, index_bits: int, numel: int) -> torch.Tensor:
    step = 2**index_bits - 1
    moves = torch.where(entries == 0, torch.full_like(entries, step), entries)
    places = torch.cumsum(moves, 0) - 1
    positions = places[entries != 0]
    if positions.numel() and int(positions[-1]) >= numel:
        raise ValueError(f"relative indices run past the weight's {numel} places")
    return positions


def _relative_cost(gaps: torch.Tensor, index_bits: int) -> int:
    return int((((gaps - 1) // (2**index_bits - 1)) + 1).sum()) * index_bits


def choose_positions(mask: torch.Tensor) -> tuple[str, int]:
    """(way, index_bits) that stores ``mask``'s positions in the fewest packed bits."""
    flat = mask.flatten()
    nnz, numel = int(flat.sum()), flat.numel()
    if nnz == numel:
        return "all", 0
    positions = flat.nonzero().flatten()
    gaps = torch.diff(positions, prepend=positions.new_tensor([-1]))
    # from 2 bits: 1-bit relative indices are a bitmask that stops at the last nonzero
    costs = {b: _relative_cost(gaps, b) for b in range(2, _MAX_INDEX_BITS + 1)} if nnz else {2: 0}
    best = min(costs, key=lambda b: (costs[b], b))
    return ("relative", best) if costs[best] < numel else ("bitmask", 1)


# -- a layer -------------------------------------------------------------------------------


def encode(shared: Shared) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(header fields, streams) of a layer stored ``shared``."""
    mask = shared.mask.cpu()
    way, index_bits = choose_positions(mask)
    streams: dict[str, bytes] = {"table": shared.table.detach().cpu().float().contiguous().numpy().tobytes()}
    meta: dict[str, Any] = {
        "scheme": shared.scheme,
        "bits": shared.bits,
        "positions": way,
        "index_bits": index_bits,
        "table_size": shared.table.numel(),
        "counts": {},
        "coding": {},
    }
    symbols = {"codes": (shared.codes.long(), shared.bits)}
    if way == "bitmask":
        symbols["positions"] = (mask.flatten().long(), 1)
    elif way == "relative":
        symbols["positions"] = (relative_entries(mask.flatten().nonzero().flatten(), index_bits), index_bits)
    for name, (values, bits) in symbols.items():
        meta["coding"][name], streams[name] = entropy_code(values, bits)
        meta["counts"][name] = values.numel()
    return meta, streams


def decode(meta: Mapping[str, Any], streams: Mapping[str, bytes], shape: tuple[int, ...]) -> torch.Tensor:
    """The dense float32 weight of a ``shared`` layer; ValueError where anything does not add up."""
    scheme, bits, way = meta["scheme"], int(meta["bits"]), meta["positions"]
    if scheme not in SCHEMES or not BITS[0] <= bits <= BITS[1] or way not in POSITIONS:
        raise ValueError(f"scheme {scheme!r}, bits {bits}, positions {way!r}: not an encoding this prunelab reads")
    numel = math.prod(shape)
    rows = shape[0]
    counts, coding = meta["counts"], meta["coding"]
    nnz = int(counts["codes"])
    if not 0 <= nnz <= numel:
        raise ValueError(f"{nnz} codes for a weight of {numel} values")
    codes = entropy_decode(coding["codes"], streams["codes"], bits, nnz)
    if way == "all":
        positions = torch.arange(numel) if nnz == numel else None
    elif way == "bitmask":
        flags = entropy_decode(coding["positions"], streams["positions"], 1, int(counts["positions"]))
        positions = flags.nonzero().flatten() if flags.numel() == numel else None
    else:
        index_bits = int(meta["index_bits"])
        if not 1 <= index_bits <= _MAX_INDEX_BITS:
            raise ValueError(f"index_bits {index_bits} is outside 1..{_MAX_INDEX_BITS}")
        entries = entropy_decode(coding["positions"], streams["positions"], index_bits, int(counts["positions"]))
        positions = relative_positions(entries, index_bits, numel)
    if positions is None or positions.numel() != nnz:
        raise ValueError(f"the positions do not give the {nnz} nonzeros the codes are for")
    expected_table = 2**bits if scheme == "kmeans" else rows
    raw_table = streams["table"]
    if len(raw_table) != 4 * expected_table or int(meta["table_size"]) != expected_table:
        raise ValueError(f"a {scheme} table of {len(raw_table)} bytes, expected {expected_table} float32 values")
    table = torch.frombuffer(bytearray(raw_table), dtype=torch.float32) if expected_table else torch.zeros(0)
    if scheme == "linear" and nnz and int(codes.max()) > 2 * offset(bits):
        raise ValueError(f"linear codes above {2 * offset(bits)} for {bits} bits")
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[positions] = True
    dense = torch.zeros(numel, dtype=torch.float32)
    dense[positions] = values_of(scheme, bits, table, codes, mask.view(rows, -1))
    return dense.view(shape)
