"""A pickle reader that can build numpy arrays and plain containers, and nothing else.

Some datasets (CIFAR-10) are distributed as Python pickles, and unpickling runs whatever
callable the file names: a tampered download could run ``os.system``. This unpickler
resolves only the globals a numpy array needs (``_reconstruct``, ``ndarray``, ``dtype``
and ``_codecs.encode``, which protocol-2 pickles use for bytes); any other global is
refused with a PrunelabError naming the file and the global, before anything runs.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import BinaryIO

import numpy as np

from prunelab.errors import PrunelabError

try:  # numpy >= 2 moved the module; pickles name either (the CIFAR files name the old one)
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct


def _encode_latin1(text: str, encoding: str = "utf-8") -> bytes:
    if encoding not in ("latin1", "latin-1"):  # the only codec protocol 2 uses for bytes
        raise pickle.UnpicklingError(f"refused _codecs.encode with codec {encoding!r}")
    return codecs.encode(text, encoding)


ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _encode_latin1,
}
ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    OverflowError,
    MemoryError,
)


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh: BinaryIO, name: str):
        super().__init__(fh, encoding="latin1")  # the CIFAR files are Python 2 pickles
        self.name = name

    def find_class(self, module: str, name: str) -> object:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise PrunelabError(
                f"{self.name}: refused to load {module} {name} from a pickle "
                "(only numpy arrays and plain containers are allowed)"
            ) from None


def load(source: str | Path | BinaryIO | bytes, name_for_errors: str) -> object:
    """Unpickle ``source`` (a path, an open binary file or the bytes) allowing only numpy arrays."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        if isinstance(source, str | Path):
            with open(source, "rb") as fh:
                return _Unpickler(fh, name_for_errors).load()
        return _Unpickler(source, name_for_errors).load()
    except ERRORS as exc:
        raise PrunelabError(
            f"{name_for_errors}: not a readable pickle (truncated or wrong format?): {type(exc).__name__}: {exc}"
        ) from exc
