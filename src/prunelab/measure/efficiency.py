"""cost and speed: what a model costs to store and to compute, and how fast it runs.

Two metrics, kept apart because one is counted and the other timed:

- ``cost``: FLOPs per image and bytes on disk. Counted, so equal on every run and every
  machine: they may go in files DVC hashes.
- ``speed``: latency, throughput, peak memory, training time per epoch, and what the
  export executes with the kernels it measured. Timed, so they differ from run to run:
  MLflow only (every column ``table=False, point=False``).

Conventions:

- FLOPs are ``torch.utils.flop_counter``'s count of matrix products and convolutions,
  a multiply-add being 2 FLOPs, per image (counted at batch 1). Elementwise ops,
  pooling and normalisation are not counted. ``flops_dense`` is what the model computes
  as it is, zeros multiplied; a structurally pruned model is smaller, so it counts less.
  ``flops_ideal`` counts only multiply-adds whose weight is nonzero: an ideal that no
  kernel reaches for free. What an export executes counts each layer at the weights its
  kernel multiplies: the nonzeros (CSR), the non-empty rows (rows kernel), or all.
- Time: each side gets warm-up calls, then rounds in which the sides run in turn (the
  order alternating, so drift hits every side alike). Each sample is one untimed call
  (the caches hold the other side's weights: a cold call is not a model's speed) and
  then enough calls for at least ``MIN_SAMPLE_S``; the median is reported and the spread
  as the interquartile range. PyTorch's thread count is left as it is and recorded
  (``threads``); CUDA is synchronised around each sample.
- Peak memory (``PeakMemory``): on CUDA, ``torch.cuda.max_memory_allocated`` after a
  reset, minus what was allocated at the start; on the CPU, the process's peak resident
  set size minus its resident size at the start, read from /proc (see the class).

Importing this module imports no torch (the plot stage imports ``prunelab.measure``).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunelab.measure.metric import METRICS, Column, Metric, Subject
from prunelab.measure.timing import MIN_SAMPLE_S, Timing, _sync, device_of, interleaved  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    import torch
    from torch import nn

TRAIN_PROBE_STEPS = 3  # steps whose peak memory stands for a whole epoch's (every later step repeats them)


@contextlib.contextmanager
def _eval(modules: Sequence[nn.Module]) -> Iterator[None]:
    # a module torch.export loaded refuses .eval(): it was traced in eval mode, so it needs none
    switched = []
    for m in modules:
        with contextlib.suppress(NotImplementedError):
            if m.training:
                m.eval()
                switched.append(m)
    try:
        yield
    finally:
        for m in switched:
            m.train()


def _input(input_shape: Sequence[int], batch: int, device: torch.device) -> torch.Tensor:
    import torch

    return torch.rand(batch, *input_shape, generator=torch.Generator().manual_seed(batch)).to(device)


def compare_latency(modules: Mapping[str, nn.Module], input_shape: Sequence[int], batch: int, *,
                    device: Any = "cpu", rounds: int = 7, max_s: float | None = None) -> dict[str, Timing]:
    """Forward-pass time of each module (already on ``device``) on the same input, interleaved."""
    import torch

    dev = device_of(device)
    x = _input(input_shape, batch, dev)
    with torch.inference_mode(), _eval(list(modules.values())):
        return interleaved({name: (lambda m=m: m(x)) for name, m in modules.items()}, device=dev,
                           rounds=rounds, batch=batch, max_s=max_s)


# -- memory ----------------------------------------------------------------------------------

def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _release_freed_memory() -> None:
    """Hand freed heap memory back to the system (glibc), so memory reused later counts as new.

    A full collection walks every object the process holds; with torch, torch.export and
    MLflow imported that is about 0.3 s, paid before each measurement (ten in one sweep
    stage). So the first call moves what survives it to gc's permanent generation
    (``gc.freeze``): modules, classes and the caller's long-lived objects, which later
    collections skip. Whatever becomes garbage afterwards is still collected here, and
    frozen objects are still freed by reference counting; only a reference cycle among them
    would outlive its use.
    """
    gc.collect()
    if not gc.get_freeze_count():
        gc.freeze()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")  # Linux >= 4.0: reset the peak RSS (VmHWM) to the current RSS
        return True
    except OSError:
        return False


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.bytes``: the peak memory the block added.

    - CUDA: ``torch.cuda.max_memory_allocated`` (reset at the start) minus
      ``memory_allocated`` at the start: the peak of PyTorch's tensors beyond those already
      alive (the caching allocator's unused reserve is not counted).
    - CPU (Linux): the process's peak resident set size (VmHWM in /proc/self/status, reset
      at the start by writing 5 to /proc/self/clear_refs) minus its resident size (VmRSS)
      at the start, after freed heap memory was handed back to the system (glibc's
      malloc_trim). It counts every page the process touched anew: tensors, allocator
      slack, libraries' workspaces, other threads. Where the peak cannot be reset, a
      thread samples VmRSS every millisecond instead (a peak shorter than that can be
      missed); ``what`` says which. Elsewhere ``bytes`` is None.
    """

    def __init__(self, device: Any = "cpu"):
        self.device = device_of(device)
        self.bytes: int | None = None
        self.what = ""
        self._base = 0
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()
        self._sampled = 0

    def __enter__(self) -> PeakMemory:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.what = "CUDA: torch.cuda.max_memory_allocated minus memory_allocated at the start"
            return self
        _release_freed_memory()
        base = _status_kib("VmRSS")
        if base is None:
            self.what = "unavailable: no /proc/self/status on this system"
            return self
        self._base = base
        if _reset_peak_rss():
            self.what = "CPU: peak RSS increase (VmHWM after, reset at the start, minus VmRSS at the start)"
        else:
            self.what = "CPU: peak RSS increase (VmRSS sampled every 1 ms, minus VmRSS at the start)"
            self._sampled = base
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self._sampled = max(self._sampled, _status_kib("VmRSS") or 0)

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = max(torch.cuda.max_memory_allocated(self.device) - self._base, 0)
            return
        if not self.what.startswith("CPU"):
            return
        if self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            peak = max(self._sampled, _status_kib("VmRSS") or 0)
        else:
            peak = _status_kib("VmHWM") or 0
        self.bytes = max(peak - self._base, 0) * 1024


def peak_inference(module: nn.Module, input_shape: Sequence[int], batch: int, *, device: Any = "cpu") -> PeakMemory:
    """Peak memory one warm forward pass at ``batch`` adds (the module already on ``device``)."""
    import torch

    dev = device_of(device)
    x = _input(input_shape, batch, dev)
    with torch.inference_mode(), _eval([module]):
        module(x)  # warm: lazy initialisation is not what inference costs
        _sync(dev)()
        with PeakMemory(dev) as peak:
            module(x)
    return peak


def train_epoch_cost(model: nn.Module, split: Any, cfg: Any, *, device: Any = "cpu", seed: int = 0) -> dict[str, Any]:
    """Time of one training epoch and its peak memory, on a copy of ``model``.

    The copy trains on ``split`` with ``cfg``'s batch size and optimiser
    (``training.train_epoch``, as ``fit`` does, without validation). Memory: the first
    ``TRAIN_PROBE_STEPS`` steps with a fresh optimiser (activations, gradients and the
    optimiser's state all exist by the second step; later steps repeat them). Time: the
    whole epoch that follows them, warm.
    """
    import torch

    from prunelab.seeding import generator
    from prunelab.train.fit import make_optimizer, train_epoch, training_tensors

    dev = device_of(device)
    trained = copy.deepcopy(model).to(dev)
    images, labels = training_tensors(split, dev)
    order = torch.randperm(labels.shape[0], generator=generator(seed)).to(dev)
    probe = order[:TRAIN_PROBE_STEPS * cfg.batch_size]
    probe_images, probe_labels = images[probe], labels[probe]
    optimizer = make_optimizer([p for p in trained.parameters() if p.requires_grad], cfg)
    sync = _sync(dev)
    with PeakMemory(dev) as peak:
        train_epoch(trained, optimizer, probe_images, probe_labels, cfg.batch_size,
                    torch.arange(probe.shape[0], device=dev))
        sync()
    start = time.perf_counter()
    train_epoch(trained, optimizer, images, labels, cfg.batch_size, order)
    sync()
    return {"train_epoch_s": time.perf_counter() - start, "peak_train_bytes": peak.bytes, "memory": peak.what}


# -- FLOPs -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerWork:
    """One weighted layer in one forward pass: its weight's size and nonzeros, how often it is
    applied, and the FLOPs flop_counter counted inside it."""

    numel: int
    nnz: int
    uses: int  # output positions computed with the whole weight (rows for a Linear, N*H*W for a conv)
    counted: int
    module: Any

    @property
    def zero_flops(self) -> int:
        """FLOPs spent on zero weights (2 per multiply-add)."""
        return 2 * (self.numel - self.nnz) * self.uses


def count_flops(module: nn.Module, input_shape: Sequence[int], batch: int = 1) -> tuple[int, dict[str, LayerWork]]:
    """FLOPs of one forward pass at ``batch`` (flop_counter), and the work of every weighted layer."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from prunelab.export.sparse import SparseLinear
    from prunelab.pruning.layers import prunable_types

    counter = FlopCounterMode(display=False)
    work: dict[str, LayerWork] = {}
    entered: dict[str, int] = {}

    def enter(name: str) -> Callable[..., None]:
        return lambda layer, args: entered.__setitem__(name, counter.get_total_flops())

    def leave(name: str) -> Callable[..., None]:
        def hook(layer: nn.Module, args: Any, out: torch.Tensor) -> None:
            if isinstance(layer, SparseLinear):
                numel, nnz, rows = layer.numel, layer.nnz, layer.out_features
            else:
                numel, nnz, rows = layer.weight.numel(), int(layer.weight.count_nonzero()), layer.weight.shape[0]
            before = work.get(name, LayerWork(numel, nnz, 0, 0, layer))  # a shared layer adds up
            work[name] = LayerWork(numel, nnz, before.uses + out.numel() // rows,
                                   before.counted + counter.get_total_flops() - entered[name], layer)
        return hook

    weighted = (*prunable_types(), SparseLinear)
    hooks = [hook for name, m in module.named_modules() if isinstance(m, weighted)
             for hook in (m.register_forward_pre_hook(enter(name)), m.register_forward_hook(leave(name)))]
    device = next((t.device for t in (*module.parameters(), *module.buffers())), torch.device("cpu"))
    try:
        with torch.inference_mode(), _eval([module]), counter:
            module(torch.zeros(batch, *input_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return int(counter.get_total_flops()), work


def flops_per_image(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """``flops_dense`` (as the model computes, zeros multiplied) and ``flops_ideal`` (nonzero weights only)."""
    total, work = count_flops(model, input_shape)
    return {"flops_dense": total, "flops_ideal": total - sum(w.zero_flops for w in work.values())}


def export_flops_per_image(module: nn.Module, batch: int) -> int:
    """FLOPs per image an export (``export.ExportModule``) executes at ``batch`` with its chosen kernels.

    flop_counter counts a sparse product as if it were dense: each layer the export runs
    through a SparseLinear is counted instead at the weights its kernel at ``batch``
    multiplies (all, the nonzeros, or the rows that are not empty), 2 FLOPs each per use.
    """
    from prunelab.export.sparse import SparseLinear

    total, work = count_flops(module, module.input_shape)
    for w in work.values():
        if isinstance(w.module, SparseLinear):
            kernel = w.module.kernel_for(batch * w.module.rows_per_image)
            total += 2 * w.module.weights_multiplied(kernel) * w.uses - w.counted
    return total


# -- the metrics -----------------------------------------------------------------------------

def _input_shape(subject: Subject) -> tuple[int, ...] | None:
    if subject.input_shape is not None:
        return tuple(subject.input_shape)
    if subject.split is not None:
        return tuple(subject.split.images.shape[1:])
    return None


def cost(subject: Subject) -> dict[str, int]:
    out: dict[str, int] = {}
    shape = _input_shape(subject)
    if shape is not None:
        out.update(flops_per_image(subject.model, shape))
    if subject.checkpoint is not None:
        out["checkpoint_bytes"] = Path(subject.checkpoint).stat().st_size
    if subject.export is not None:
        out["export_bytes"] = int(subject.export.bytes)
        if subject.dense_bytes:
            out["export_size_ratio"] = out["export_bytes"] / subject.dense_bytes
    return out


def _fit_epoch_s(fit: Any) -> float | None:
    """Median seconds of the training pass (no validation) over the epochs of a fine-tuning."""
    times = [r["data_time"] + r["step_time"] for r in getattr(fit, "history", None) or []
             if "data_time" in r and "step_time" in r]
    return statistics.median(times) if times else None


def speed(subject: Subject, max_s: float = 5.0) -> dict[str, float]:
    import torch

    from prunelab.train.evaluate import EVAL_BATCH

    shape = _input_shape(subject)
    device = device_of(subject.device)
    # the batch evaluate runs: EVAL_BATCH, or the whole test split where it is smaller
    eval_batch = min(EVAL_BATCH, len(subject.split)) if subject.split is not None else EVAL_BATCH
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "eval_batch": eval_batch}
    if shape is not None:
        sides = {"": subject.model}
        if subject.reference is not None:
            sides["dense_"] = subject.reference
        if subject.export is not None:
            from prunelab.export import load_export

            reuse = subject.export.kernels if str(device) == subject.export.device else None
            sides["export_"] = load_export(subject.export.path, device=device, batch_sizes=(1, EVAL_BATCH),
                                           kernels=reuse)
        for batch in (1, eval_batch):
            timings = compare_latency(sides, shape, batch, device=device, rounds=subject.rounds, max_s=max_s)
            for prefix, timing in timings.items():
                if batch == 1:
                    out[f"{prefix}latency_b1_ms"] = timing.median * 1e3
                    out[f"{prefix}latency_b1_iqr_ms"] = timing.iqr * 1e3
                else:
                    out[f"{prefix}throughput_ips"] = timing.throughput
        for prefix, module in sides.items():
            out[f"{prefix}peak_infer_bytes"] = peak_inference(module, shape, eval_batch, device=device).bytes
        if "export_" in sides:
            out["export_flops_b1"] = export_flops_per_image(sides["export_"], 1)
            out["export_flops_eval"] = export_flops_per_image(sides["export_"], eval_batch)
        if "dense_" in sides:  # what the user runs (the export if any) against the dense model, same rounds
            run = "export_" if "export_" in sides else ""
            out["speedup_b1"] = out["dense_latency_b1_ms"] / out[f"{run}latency_b1_ms"]
            out["speedup_eval"] = out[f"{run}throughput_ips"] / out["dense_throughput_ips"]
    if subject.train is not None and subject.optim is not None:
        epoch = train_epoch_cost(subject.model, subject.train, subject.optim, device=device)
        out["train_epoch_s"], out["peak_train_bytes"] = epoch["train_epoch_s"], epoch["peak_train_bytes"]
        if subject.reference is not None and getattr(subject.reference, "trainable", True):
            dense = train_epoch_cost(subject.reference, subject.train, subject.optim, device=device)
            out["dense_train_epoch_s"] = dense["train_epoch_s"]
            out["dense_peak_train_bytes"] = dense["peak_train_bytes"]
    elif subject.fit is not None:
        out["train_epoch_s"] = _fit_epoch_s(subject.fit)
    return {k: v for k, v in out.items() if v is not None}


_MEMORY = "CUDA: max_memory_allocated minus allocated at the start; CPU: peak RSS increase (PeakMemory)"
_TIMED = {"table": False, "point": False}  # timings differ run to run: MLflow, never DVC-hashed files

METRICS.add(Metric(
    "cost", "FLOPs per image and bytes on disk: counted, the same on every run",
    (Column("flops_dense", "FLOPs per image as the model computes them, zeros multiplied (multiply-add = 2; "
            "matmuls and convolutions, torch.utils.flop_counter); structurally pruned: its smaller layers"),
     Column("flops_ideal", "ideal FLOPs per image: only multiply-adds with a nonzero weight (no kernel "
            "skips zeros for free)"),
     Column("checkpoint_bytes", "size of the model's checkpoint file on disk, bytes"),
     Column("export_bytes", "size of its export file on disk (.pt2 or .sparse, prunelab.export), bytes"),
     Column("export_size_ratio", "export_bytes / bytes of the dense baseline's export (.pt2): below 1 is smaller")),
    cost))

METRICS.add(Metric(
    "speed", "latency, throughput, peak memory and epoch time, measured: they differ from run to run",
    (Column("threads", "PyTorch CPU threads during every timing here (torch.get_num_threads())", **_TIMED),
     Column("latency_b1_ms", "median forward time at batch 1, ms (warm, rounds interleaved with the export)", **_TIMED),
     Column("latency_b1_iqr_ms", "interquartile range of those times, ms", **_TIMED),
     Column("eval_batch", "the evaluation batch the throughputs are measured at: EVAL_BATCH (1,024), or the "
            "test split's size where smaller (the batch evaluate runs)", **_TIMED),
     Column("throughput_ips", "images per second at the evaluation batch (eval_batch), from the median", **_TIMED),
     Column("export_latency_b1_ms", "the export's median forward time at batch 1, ms", **_TIMED),
     Column("export_latency_b1_iqr_ms", "interquartile range of the export's times, ms", **_TIMED),
     Column("export_throughput_ips", "the export's images per second at the evaluation batch", **_TIMED),
     Column("peak_infer_bytes", f"peak memory one forward pass at the evaluation batch adds, bytes ({_MEMORY})",
            **_TIMED),
     Column("export_peak_infer_bytes", "the same for the export, bytes", **_TIMED),
     Column("dense_latency_b1_ms", "the dense model's median forward time at batch 1, ms, timed in the same rounds",
            **_TIMED),
     Column("dense_latency_b1_iqr_ms", "interquartile range of the dense model's times, ms", **_TIMED),
     Column("dense_throughput_ips", "the dense model's images per second at the evaluation batch", **_TIMED),
     Column("dense_peak_infer_bytes", "the same peak memory for the dense model, bytes", **_TIMED),
     Column("speedup_b1", "dense latency / latency of the export (of the model where there is no export), "
            "batch 1: above 1 is faster than dense", **_TIMED),
     Column("speedup_eval", "the same ratio of throughputs at the evaluation batch", **_TIMED),
     Column("export_flops_b1", "FLOPs per image the export executes at batch 1 with the kernels it measured "
            "(a sparse kernel counts nonzero multiply-adds)", **_TIMED),
     Column("export_flops_eval", "the same at the evaluation batch", **_TIMED),
     Column("train_epoch_s", "seconds for one warm training epoch of a copy of the model, no validation "
            "(in the sweep: the median of its fine-tuning epochs' training passes)", **_TIMED),
     Column("dense_train_epoch_s", "the same for the dense model, in the same run", **_TIMED),
     Column("dense_peak_train_bytes", "peak_train_bytes of the dense model, bytes", **_TIMED),
     Column("peak_train_bytes", f"peak memory of its first training steps with a fresh optimiser, bytes ({_MEMORY})",
            **_TIMED)),
    speed))
