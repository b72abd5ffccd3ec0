"""Reader for the IDX format that MNIST and Fashion-MNIST are distributed in.

Layout (big-endian): two zero bytes, a dtype code, the number of dimensions, one uint32
per dimension, then the data. Files may be gzip-compressed (recognised by their first
bytes, whatever the name). Every mismatch names the file.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from prunelab.errors import PrunelabError

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        raw = path.read_bytes()
        raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise PrunelabError(f"{path}: cannot read IDX file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise PrunelabError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise PrunelabError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise PrunelabError(
            f"{path}: IDX data is {len(raw) - header} bytes, expected {expected} for shape {shape} (truncated?)"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as IDX (gzip if the name ends in .gz). Used by tests and tools."""
    code = {np.dtype(v).newbyteorder("=").str: k for k, v in _DTYPES.items()}
    arr = np.asarray(array)
    key = arr.dtype.newbyteorder("=").str
    if key not in code:
        raise ValueError(f"dtype {arr.dtype} has no IDX code")
    header = bytes([0, 0, code[key], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
