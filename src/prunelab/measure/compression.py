"""The ``compression`` metric: what Deep Compression's file (``prunelab.compress``) costs on disk.

Counted from the file written, never estimated: its bytes and their ratio to the dense
model's fp32 export. Its accuracy is the ``test`` metric with prefix ``compressed_``,
measured on the file as loaded back (``export.load_export``), never on the model in memory.
"""

from __future__ import annotations

from prunelab.measure.metric import METRICS, Column, Metric, Subject


def compression(subject: Subject) -> dict[str, float]:
    out: dict[str, float] = {}
    if subject.export is not None:
        out["compressed_bytes"] = int(subject.export.bytes)
        if subject.dense_bytes:
            out["compressed_size_ratio"] = out["compressed_bytes"] / subject.dense_bytes
            out["compression_factor"] = subject.dense_bytes / out["compressed_bytes"]
    return out


METRICS.add(
    Metric(
        "compression",
        "the compressed file (quantized, encoded, entropy coded): bytes on disk, counted",
        (
            Column("compressed_bytes", "size of the compressed .sparse file on disk, bytes"),
            Column("compressed_size_ratio", "compressed_bytes / bytes of the dense baseline's fp32 export (.pt2)"),
            Column("compression_factor", "bytes of the dense fp32 export / compressed_bytes: 50 means 50× smaller"),
        ),
        compression,
    )
)
