"""Peak memory: what a block of code, a forward pass or training steps add to the device's memory.

``PeakMemory``: on CUDA, ``torch.cuda.max_memory_allocated`` after a reset, minus what was
allocated at the start; on the CPU, the process's peak resident set size minus its
resident size at the start, read from /proc (see the class).

Importing this module imports no torch.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prunelab.measure.forward import eval_mode, random_input
from prunelab.measure.timing import device_of, synchronizer

if TYPE_CHECKING:
    from torch import nn


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


_frozen = False


def _release_freed_memory() -> None:
    """Hand freed heap memory back to the system (glibc), so memory reused later counts as new.

    A full collection walks every object the process holds; with torch, torch.export and
    MLflow imported that is about 0.3 s, paid before each measurement (ten in one sweep
    stage). So the first call moves what survives it to gc's permanent generation
    (``gc.freeze``): modules, classes and the caller's long-lived objects, which later
    collections skip. Whatever becomes garbage afterwards is still collected here, and
    frozen objects are still freed by reference counting; only a reference cycle among them
    would outlive its use. (A stage has frozen its imports already, ``track.startup``: this
    first call still freezes what the stage made since, torch.export's modules included.)
    """
    global _frozen
    gc.collect()
    if not _frozen:
        gc.freeze()
        _frozen = True
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
    x = random_input(input_shape, batch, dev)
    with torch.inference_mode(), eval_mode([module]):
        module(x)  # warm: lazy initialisation is not what inference costs
        synchronizer(dev)()
        with PeakMemory(dev) as peak:
            module(x)
    return peak
