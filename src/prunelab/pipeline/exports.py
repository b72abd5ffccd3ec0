"""What the stages do about exports and efficiency: write each model's export beside its
checkpoint, measure what pruning buys, and keep counts and timings in separate files.

- ``write_export``: the model's export (``prunelab.export``) as ``<folder>/model.pt2`` or
  ``model.sparse``; the folder is the DVC output, since the format follows the pruning.
- ``measure``: the ``cost`` metric (counted: FLOPs, bytes; the same on every run) and the
  ``speed`` metric (timed: latency, throughput, memory, epoch time) of one model, beside
  the dense model it is compared with.
- ``write_measurements``: a timings file, with the machine and the load it ran under.
  Counts go in the files dvc.lock pins; timings only in these (``paths.SPEED_DIR``,
  ``paths.SWEEP_SPEED_DIR``), whose hashes change from run to run.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prunelab import atomic, paths
from prunelab.errors import PrunelabError
from prunelab.measure.timing import QUICK_KERNELS, SWEEP_POINT, TimingPolicy, active_policy, device_of

TIMINGS = ("full", "quick", "none")  # write_export's choices of how the export's kernels are chosen


def kernel_timer(device: Any = "cpu", policy: TimingPolicy | None = None) -> Any:
    """The export's kernel timer (``export.kernels.default_timer``) with ``policy``'s numbers: by
    default the stages' preset for kernels under PRUNELAB_TIMING (``timing.active_policy``)."""
    from prunelab.export.kernels import default_timer

    policy = policy or active_policy("kernels")
    return default_timer(device_of(device), policy)


def write_export(
    model: Any,
    input_shape: tuple[int, ...],
    stem: Path,
    *,
    device: Any = "cpu",
    timing: str = "full",
    dense: bool = False,
    shared: Any = None,
) -> Any:
    """Export ``model`` as ``stem`` + .pt2 or .sparse (its folder created; the other format's file removed).

    The format is chosen from the weights: a .sparse where any layer is smaller stored
    sparse (mask pruning), else a .pt2 (dense, or structurally smaller); ``dense``: a .pt2
    whatever the weights (the dense baseline's file has a fixed name). The export is loaded
    back and checked against the model either way; ``timing`` says how its kernels are
    chosen for the returned info: measured ("full": ``timing.KERNELS``), from fewer, shorter
    timings ("quick": ``timing.QUICK_KERNELS``; the sweep exports every point), or not at all
    ("none": dense, for a stage that only writes the file; kernels are measured where the
    export is loaded to run). ``shared``: layers quantized by ``prunelab.compress``, stored as
    shared weights (a .sparse of version 2).
    """
    from prunelab.export import export_model

    if timing not in TIMINGS:
        raise ValueError(f"timing={timing!r}: expected one of {TIMINGS}")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    return export_model(
        model,
        input_shape,
        stem,
        structural=dense,
        device=device,
        timer=kernel_timer(device, QUICK_KERNELS) if timing == "quick" else None,
        force="dense" if timing == "none" else None,
        shared=shared,
    )


def find_export(folder: Path) -> Path:
    """The one export file in ``folder``; a clear error naming the stage to rerun otherwise."""
    from prunelab.export import SUFFIXES

    folder = Path(folder)
    found = [
        folder / f"{paths.EXPORT_STEM}{suffix}"
        for suffix in SUFFIXES.values()
        if (folder / f"{paths.EXPORT_STEM}{suffix}").exists()
    ]
    if len(found) != 1:
        what = "no export" if not found else f"{len(found)} exports"
        raise PrunelabError(
            f"{folder} holds {what} (expected {paths.EXPORT_STEM}.pt2 or "
            f"{paths.EXPORT_STEM}.sparse); {atomic.rerun_hint(folder / paths.EXPORT_STEM)}"
        )
    return found[0]


def open_export(path: Path, *, device: Any = "cpu") -> Any:
    """An ``ExportInfo`` of the export file at ``path``, verified whole and its kernels measured here
    (with the stages' preset for kernels under PRUNELAB_TIMING)."""
    from prunelab.export import ExportInfo, load_export

    return ExportInfo.of(load_export(path, device=device, timer=kernel_timer(device)))


def measure(
    model: Any, input_shape: tuple[int, ...], *, device: Any = "cpu", prefix: str = "", **known: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(cost, speed) of ``model`` (moved to ``device``): exact counts and timings, each key with ``prefix``.

    ``known``: what else the measurement uses (``measure.Subject``'s fields: checkpoint,
    export, reference, dense_bytes, train, optim, fit, timing); ``timing`` defaults to the
    stages' preset for comparisons under PRUNELAB_TIMING (``timing.active_policy``).
    """
    from prunelab.measure import METRICS, Subject

    device = device_of(device)  # the train.device error where it is not there
    model.to(device)  # models are moved in place, as training moves them
    if known.get("reference") is not None:
        known["reference"].to(device)
    known.setdefault("timing", active_policy("compare"))
    subject = Subject(model, device=device, input_shape=input_shape, **known)
    return METRICS.get("cost")(subject, prefix), METRICS.get("speed")(subject, prefix)


def machine(device: Any = "cpu") -> dict[str, Any]:
    """What timings depend on: the processor, threads, device and the load when they were taken."""
    import torch

    info: dict[str, Any] = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "processor": _processor(),
        "torch": torch.__version__,
    }
    try:
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    if str(device).startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _processor() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_measurements(path: Path, values: Mapping[str, Any], *, device: Any = "cpu", **extra: Any) -> Path:
    """A timings file: the values, the machine they were taken on, anything else to record."""
    return atomic.write_json(path, {**values, **extra, "machine": machine(device)})


class SweepMeasure:
    """Each sweep point's cost, kept in the point, and its timings, kept apart (``timings``).

    A point's model is written as the pipeline would write it (its checkpoint, with its
    masks, and its export) into a temporary folder, measured against the dense baseline
    in the same rounds (``timing.SWEEP_POINT``), and deleted: sizes are of real files, nothing stays behind.
    Called with the point's final model: fine-tuned where the sweep fine-tunes; the
    one-shot model has the same mask, so the same export size and kernels. ``compress``
    (model, stem) -> values: the point's model compressed into ``stem`` and measured
    (``pipeline.compress.compress_model``), the values joining the point's cost.
    """

    def __init__(
        self,
        base: Any,
        seed: int,
        device: Any,
        test: Any = None,
        timing: TimingPolicy = SWEEP_POINT,
        compress: Any = None,
    ):
        self.base, self.device, self.test, self.timing, self.compress = base, device, test, timing, compress
        self.dense_bytes = paths.baseline_export(seed).stat().st_size
        self.timings: list[dict[str, Any]] = []

    def __call__(self, model: Any, masks: Mapping[str, Any], result: Any, point: Mapping[str, Any]) -> dict[str, Any]:
        import tempfile

        from prunelab.train import checkpoint

        base = self.base
        with tempfile.TemporaryDirectory(prefix="prunelab-point-") as tmp:
            saved = checkpoint.save(
                Path(tmp) / "point.pt",
                checkpoint.Checkpoint(model, base.model_cfg, base.input_shape, base.num_classes, dict(masks)),
            )
            export = write_export(
                model, base.input_shape, Path(tmp) / paths.EXPORT_STEM, device=self.device, timing="quick"
            )
            cost, speed = measure(
                model,
                base.input_shape,
                device=self.device,
                checkpoint=saved,
                export=export,
                reference=base.model,
                dense_bytes=self.dense_bytes,
                fit=result,
                timing=self.timing,
                split=self.test,
            )
            if self.compress is not None:
                cost |= self.compress(model, Path(tmp) / "compressed")
        self.timings.append({k: point[k] for k in ("method", "seed", "sparsity")} | speed)
        return cost

    def write(self, path: Path, data: Any, optim: Any, **identity: Any) -> dict[str, Any]:
        """Write the points' timings to ``path``, with one training epoch of the dense baseline
        (to set against the points' fine-tuning epochs) where ``optim`` is given; return that epoch's."""
        from prunelab.measure.epoch import train_epoch_cost

        dense = {}
        if optim is not None:
            epoch = train_epoch_cost(self.base.model, data.train, optim, device=self.device)
            dense = {"dense_train_epoch_s": epoch["train_epoch_s"], "dense_peak_train_bytes": epoch["peak_train_bytes"]}
        write_measurements(path, {**identity, "points": self.timings, **dense}, device=self.device)
        return dense
