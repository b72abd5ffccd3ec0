"""Exports in which what pruning buys is real: a smaller file and a faster forward pass.

``export_model(model, input_shape, path_without_suffix, structural=...)`` writes one file,
``<path>.pt2`` (a torch.export archive: structurally pruned or dense models) or
``<path>.sparse`` (mask-pruned models: each weight stored the smallest of dense, CSR or
bitmask); ``load_export(path)`` verifies it whole, never unpickling it, and runs each
Linear layer stored sparse with the kernel measured fastest on the machine that loads it.

A .sparse file may also hold layers quantized by ``prunelab.compress`` (Deep Compression:
shared weights, compact indices, entropy coding: format version 2, ``codec.py``); and
``interop.py`` writes the files other tools load: ONNX (ONNX Runtime) and safetensors.

Where each part lives:

- ``write.py``: ``export_model``, choosing the format and checking the export against the model;
- ``load.py``: ``load_export`` and ``ExportModule``, the loaded export;
- ``kernels.py``: choosing each sparse layer's kernel per batch size by measurement;
- ``sparse.py``: ``SparseLinear``, the layer that runs those kernels;
- ``container.py``: the .sparse file's contents (each weight's storage, the header);
- ``codec.py``: the ``shared`` storage: quantized weights encoded and entropy coded (version 2);
- ``interop.py``: ONNX and safetensors, each checked against the model;
- ``pt2.py``: tracing the model and loading a program safely;
- ``integrity.py``: each file's digest, checked before anything in it is used;
- ``formats.py``: the formats' suffixes, names and version.
"""

from prunelab.export.formats import SUFFIXES
from prunelab.export.integrity import ExportError
from prunelab.export.kernels import SPARSE_WINS, WHOLE, quick_timer  # noqa: F401  (SPARSE_WINS, WHOLE: re-exported)
from prunelab.export.load import ExportModule, load_export
from prunelab.export.write import ExportInfo, export_model

__all__ = ["SUFFIXES", "ExportError", "ExportInfo", "ExportModule", "export_model", "load_export", "quick_timer"]
