"""Timing on any device: side-by-side, interleaved, synchronised; how carefully to time; the device a name means.

Below both ``measure`` (which times models) and ``export`` (which times kernels to choose
one). Importing this module imports no torch.

How carefully each caller times is one ``TimingPolicy`` preset here, and nowhere else:

==================  ======  ======  ============  =====  ==============================================
preset              rounds  warmup  min_sample_s  max_s  who times with it
==================  ======  ======  ============  =====  ==============================================
``STAGE``           7       2       0.02          5.0    a stage's model (and export) against the dense one
``QUICK``           3       2       0.02          5.0    the same under PRUNELAB_TIMING=quick (tests, CI)
``SWEEP_POINT``     3       1       0.01          2.0    each sweep point against the dense one
``KERNELS``         7       2       0.02          1.0    choosing a sparse layer's kernel (``export.default_timer``)
``QUICK_KERNELS``   3       1       0.005         0.25   the same quickly (``export.quick_timer``): every sweep
                                                         point's export, and every export under quick
``BENCH``           31      2       0.02          none   ``bench/efficiency.py`` (``--rounds`` overrides)
``DEFAULT``         7       2       0.02          none   ``interleaved``'s and ``compare_latency``'s defaults
==================  ======  ======  ============  =====  ==============================================

``active_policy(use)`` is the stages' choice: PRUNELAB_TIMING (``full``, the default, or
``quick``) picks the preset for comparing models (``"compare"``) or choosing kernels
(``"kernels"``). An environment variable, not a param: it changes only the timings files,
never an exact output, so it must not make DVC rerun a stage.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prunelab.errors import PrunelabError

if TYPE_CHECKING:
    import torch

MIN_SAMPLE_S = 0.02  # a timed sample is at least this long: a fast forward is repeated


@dataclass(frozen=True)
class TimingPolicy:
    """How carefully to time: ``warmup`` untimed calls per side, then up to ``rounds`` rounds of
    one sample per side, each sample at least ``min_sample_s`` long; with ``max_s``, rounds stop
    once that many seconds have passed (after at least 3)."""

    rounds: int
    warmup: int = 2
    min_sample_s: float = MIN_SAMPLE_S
    max_s: float | None = None

    def interleaved_args(self) -> dict[str, Any]:
        """The keyword arguments of ``interleaved`` this policy sets."""
        return {"rounds": self.rounds, "warmup": self.warmup, "min_sample_s": self.min_sample_s, "max_s": self.max_s}


STAGE = TimingPolicy(rounds=7, warmup=2, min_sample_s=MIN_SAMPLE_S, max_s=5.0)
QUICK = TimingPolicy(rounds=3, warmup=2, min_sample_s=MIN_SAMPLE_S, max_s=5.0)
# The sweep times 26 models in the default run, each against the dense one and each export's
# kernels: short samples and one warm-up call keep that under a minute of the run (the default
# `dvc repro` goal is 180 s). Their ratios carry about +-10 % of noise: bench/efficiency.py
# is the careful measurement, and timings under load are flagged (measure/load.py).
SWEEP_POINT = TimingPolicy(rounds=3, warmup=1, min_sample_s=0.01, max_s=2.0)
KERNELS = TimingPolicy(rounds=7, warmup=2, min_sample_s=MIN_SAMPLE_S, max_s=1.0)
QUICK_KERNELS = TimingPolicy(rounds=3, warmup=1, min_sample_s=0.005, max_s=0.25)  # ~50 ms per layer and batch
BENCH = TimingPolicy(rounds=31, warmup=2, min_sample_s=MIN_SAMPLE_S, max_s=None)
DEFAULT = TimingPolicy(rounds=7, warmup=2, min_sample_s=MIN_SAMPLE_S, max_s=None)

TIMING_ENV = "PRUNELAB_TIMING"  # full (default) | quick: fewer, shorter timing rounds (CI, smoke runs)
MODES: dict[str, dict[str, TimingPolicy]] = {  # PRUNELAB_TIMING -> the stages' preset per use
    "full": {"compare": STAGE, "kernels": KERNELS},
    "quick": {"compare": QUICK, "kernels": QUICK_KERNELS},
}


def timing_mode() -> str:
    """``full`` unless PRUNELAB_TIMING says ``quick``; any other value is a one-line PrunelabError."""
    mode = os.environ.get(TIMING_ENV, "full") or "full"
    if mode not in MODES:
        raise PrunelabError(f"{TIMING_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def active_policy(use: str = "compare") -> TimingPolicy:
    """The stages' preset for ``use`` ("compare": a model against the dense one; "kernels":
    choosing an export's kernels) under PRUNELAB_TIMING."""
    presets = MODES[timing_mode()]
    if use not in presets:
        raise ValueError(f"use={use!r}: expected one of {', '.join(presets)}")
    return presets[use]


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


def synchronizer(device: torch.device) -> Callable[[], None]:
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
    def spread(self) -> float:
        """The interquartile range relative to the median (0 for a median of 0)."""
        return self.iqr / self.median if self.median > 0 else 0.0

    @property
    def throughput(self) -> float:
        """Images per second at the median."""
        return self.batch / self.median


def interleaved(
    runs: Mapping[str, Callable[[], Any]],
    *,
    device: Any = "cpu",
    rounds: int = DEFAULT.rounds,
    warmup: int = DEFAULT.warmup,
    batch: int = 1,
    min_sample_s: float = DEFAULT.min_sample_s,
    max_s: float | None = DEFAULT.max_s,
) -> dict[str, Timing]:
    """Time each of ``runs`` side by side: warm-up, then ``rounds`` rounds of one sample each, in turn.

    With ``max_s``, rounds stop once that many seconds have passed (after at least 3): a
    slow call (a big layer at a big batch) gets fewer samples, not minutes. Callers pass a
    preset's numbers: ``interleaved(runs, **policy.interleaved_args())``.
    """
    import torch

    device = torch.device(device)
    sync = synchronizer(device)
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
        for name in names if r % 2 == 0 else names[::-1]:  # drift hits every side alike
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
