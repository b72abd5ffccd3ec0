"""Timing on any device: side-by-side, interleaved, synchronised; the device a name means.

Below both ``measure`` (which times models) and ``export`` (which times kernels to choose
one). Importing this module imports no torch.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

MIN_SAMPLE_S = 0.02  # a timed sample is at least this long: a fast forward is repeated


def device_of(name: Any) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:1", "auto", a torch.device) as a device that is here.

    A CUDA device on a machine without one is the ``train.device`` error
    (``training.resolve_device``), as everywhere else in prunelab.
    """
    import torch

    from prunelab.train.fit import resolve_device

    text = str(name)
    device = resolve_device("cuda" if text.startswith("cuda") else text)
    return torch.device(text) if text.startswith("cuda") else device


def _sync(device: torch.device) -> Callable[[], None]:
    import torch

    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


@dataclass(frozen=True)
class Timing:
    """Seconds per call, one sample per round, of one side of a comparison."""

    seconds: tuple[float, ...]
    batch: int = 1
    threads: int = 0  # torch.get_num_threads() while timing

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def iqr(self) -> float:
        """Interquartile range (the spread reported beside the median)."""
        if len(self.seconds) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.seconds, n=4, method="inclusive")
        return q3 - q1

    @property
    def throughput(self) -> float:
        """Images per second at the median."""
        return self.batch / self.median


def interleaved(runs: Mapping[str, Callable[[], Any]], *, device: Any = "cpu", rounds: int = 7, warmup: int = 2,
                batch: int = 1, min_sample_s: float = MIN_SAMPLE_S, max_s: float | None = None) -> dict[str, Timing]:
    """Time each of ``runs`` side by side: warm-up, then ``rounds`` rounds of one sample each, in turn.

    With ``max_s``, rounds stop once that many seconds have passed (after at least 3): a
    slow call (a big layer at a big batch) gets fewer samples, not minutes.
    """
    import torch

    device = torch.device(device)
    sync = _sync(device)
    for _ in range(warmup):
        for run in runs.values():
            run()
    sync()
    calls = {}
    for name, run in runs.items():  # calls per sample, from one warm call
        start = time.perf_counter()
        run()
        sync()
        calls[name] = max(1, math.ceil(min_sample_s / max(time.perf_counter() - start, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    began = time.perf_counter()
    for r in range(rounds):
        if max_s is not None and r >= 3 and time.perf_counter() - began > max_s:
            break
        for name in (names if r % 2 == 0 else names[::-1]):  # drift hits every side alike
            run, n = runs[name], calls[name]
            if n > 1:  # untimed: the caches held the other side's weights, a cold call is not its speed
                run()  # (a call long enough alone, n == 1, outgrows the caches: warming them is moot)
                sync()
            start = time.perf_counter()
            for _ in range(n):
                run()
            sync()
            samples[name].append((time.perf_counter() - start) / n)
    threads = torch.get_num_threads()
    return {name: Timing(tuple(s), batch, threads) for name, s in samples.items()}
