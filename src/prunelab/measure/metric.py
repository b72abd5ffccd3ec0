"""A metric: one registered measurement that declares the columns it writes.

Every number a stage writes about a model comes from a metric here: the sweep table's
columns (``prunelab.report.columns.POINT_COLUMNS``), each sweep point and the prune and evaluate
stages' metrics are derived from these declarations, and a metric that returns a column
it did not declare is an error. Importing this package imports no torch (the plot stage
reads the columns); computing a metric does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prunelab.measure.timing import STAGE, TimingPolicy
from prunelab.registry import Registry


@dataclass(frozen=True)
class Column:
    name: str
    doc: str  # what the number is, with its unit
    table: bool = True  # a column of the sweep table (results/sweep.csv)
    point: bool = True  # kept in each sweep point (results/sweep/<method>.json)


@dataclass
class Subject:
    """What a measurement looks at: a model, and what is known about how it was made."""

    model: Any  # nn.Module: masks attached or made permanent, structures removed or not
    layers: Mapping[str, Any] = field(default_factory=dict)  # its prunable layers
    structure: Mapping[str, float] = field(default_factory=dict)  # what structural pruning reported
    split: Any = None  # the split accuracy is measured on (always test: no decision looks at it)
    device: Any = "cpu"
    fit: Any = None  # training.FitResult of the fine-tuning that made it
    # for cost and speed (measure/cost.py, measure/speed.py); each left None is not measured
    input_shape: Any = None  # one image's (C, H, W); None: the split's
    checkpoint: Any = None  # path of the checkpoint file written for this model
    export: Any = None  # export.ExportInfo of its export
    train: Any = None  # a training Split to time one epoch on (speed's train_epoch_s, peak_train_bytes)
    optim: Any = None  # the OptimConfig that epoch trains with (batch size, optimiser)
    reference: Any = None  # the dense model it is compared with: timed in the same rounds (speed's dense_*)
    dense_bytes: Any = None  # size of the dense model's export file (cost's export_size_ratio)
    timing: TimingPolicy = STAGE  # how carefully speed times it (measure.timing's presets); the sweep: SWEEP_POINT

    def image_shape(self) -> tuple[int, ...] | None:
        """One image's shape: ``input_shape``, else the split's; None where neither is known."""
        if self.input_shape is not None:
            return tuple(self.input_shape)
        if self.split is not None:
            return tuple(self.split.images.shape[1:])
        return None


@dataclass(frozen=True)
class Metric:
    name: str
    doc: str
    columns: tuple[Column, ...]
    compute: Callable[[Subject], Mapping[str, Any]]  # → {column: value}, a subset of ``columns``

    def __call__(self, subject: Subject, prefix: str = "") -> dict[str, Any]:
        values = dict(self.compute(subject))
        undeclared = sorted(set(values) - {c.name for c in self.columns})
        if undeclared:
            raise ValueError(f"metric {self.name!r} returned undeclared columns {undeclared}: declare them")
        return {prefix + k: v for k, v in values.items()}


METRICS: Registry[Metric] = Registry("metric")
