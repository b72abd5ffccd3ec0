"""The ``cost`` metric: FLOPs per image and bytes on disk. Counted, so equal on every run and
every machine: they may go in files DVC hashes (the sweep table, each sweep point).

FLOPs as ``flops.py`` counts them. The columns declared here are CSV headers DVC hashes:
their names and order do not change.
"""

from __future__ import annotations

from pathlib import Path

from prunelab.measure.flops import flops_per_image
from prunelab.measure.metric import METRICS, Column, Metric, Subject


def cost(subject: Subject) -> dict[str, int]:
    out: dict[str, int] = {}
    shape = subject.image_shape()
    if shape is not None:
        out.update(flops_per_image(subject.model, shape))
    if subject.checkpoint is not None:
        out["checkpoint_bytes"] = Path(subject.checkpoint).stat().st_size
    if subject.export is not None:
        out["export_bytes"] = int(subject.export.bytes)
        if subject.dense_bytes:
            out["export_size_ratio"] = out["export_bytes"] / subject.dense_bytes
    return out


METRICS.add(
    Metric(
        "cost",
        "FLOPs per image and bytes on disk: counted, the same on every run",
        (
            Column(
                "flops_dense",
                "FLOPs per image as the model computes them, zeros multiplied (multiply-add = 2; "
                "matmuls and convolutions, torch.utils.flop_counter); structurally pruned: its smaller layers",
            ),
            Column(
                "flops_ideal",
                "ideal FLOPs per image: only multiply-adds with a nonzero weight (no kernel skips zeros for free)",
            ),
            Column("checkpoint_bytes", "size of the model's checkpoint file on disk, bytes"),
            Column("export_bytes", "size of its export file on disk (.pt2 or .sparse, prunelab.export), bytes"),
            Column(
                "export_size_ratio", "export_bytes / bytes of the dense baseline's export (.pt2): below 1 is smaller"
            ),
        ),
        cost,
    )
)
