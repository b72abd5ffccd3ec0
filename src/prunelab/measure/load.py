"""Machine load while timing, and whether a timing is ``noisy``: taken under load, or too spread to trust.

On a 2-core machine one other busy process changes timings by far more than the effects
measured (results/efficiency/summary.json once claimed a 7.9x speed-up at batch 1 from
timings taken under load). So every timed point records what the machine did while it was
timed, and a flag the report uses to leave it out of speed-ups and draw it hollow:

- ``other_cores``: the average number of cores used by everything but this process while
  the timed rounds ran: the whole machine's busy time from /proc/stat, minus this
  process's own CPU time (every thread: ``os.times``), plus steal (time the hypervisor gave
  to other guests), over the wall time. Exact over the rounds, unlike the load average.
- ``own_cores``: the cores this process used meanwhile (its CPU time over the wall time).
- ``load_1m``: the 1-minute load average (runnable tasks, this process's threads
  included), the higher of the start and the end: lagging, recorded for comparison.
- ``timing_spread``: the largest interquartile range relative to the median among the
  timed sides.

Importing this module imports no torch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prunelab.measure.timing import Timing

# Other processes may use the cores this process's threads leave free (cpus - threads);
# beyond those, a quarter of a core on average means some other process ran steadily on
# cores our threads wanted. Below it is what the kernel and idle daemons (the dvc and MLflow
# parents, mostly waiting) take; /proc/stat's 10 ms ticks over a timing of a second or more
# are accurate to a few hundredths of a core, well below it.
CONTENDED_CORES = 0.25
# A timing whose middle half of samples spans more than a quarter of its median is too
# spread to compare: with the 3 to 7 rounds the stages take, its median can then move by
# 10 % or more from run to run, as much as the speed-ups being compared (a sparse kernel is
# chosen at 5 % faster; the sweep's controls, one program against itself, read 0.70-1.12x
# under load). Interleaved warm samples of at least 20 ms on a quiet machine lie far closer.
SPREAD_LIMIT = 0.25


def machine_seconds() -> tuple[float, float] | None:
    """Cumulative busy and steal CPU seconds of the whole machine (Linux), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fh.readline().split()[1:9])
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _load_1m() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


@dataclass
class MachineLoad:
    """``with MachineLoad(threads) as load: <timed rounds>``, then ``load.values(timings)``."""

    threads: int  # torch.get_num_threads() while timing: the cores this process's timings can use
    cpus: int = os.cpu_count() or 1
    load_1m: float | None = None
    own_cores: float | None = None
    other_cores: float | None = None

    def __enter__(self) -> MachineLoad:
        self._load = _load_1m()
        self._machine, self._own, self._wall = machine_seconds(), _own_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        machine, own = machine_seconds(), _own_seconds()
        wall = max(time.perf_counter() - self._wall, 1e-9)
        loads = [v for v in (self._load, _load_1m()) if v is not None]
        self.load_1m = max(loads) if loads else None
        self.own_cores = (own - self._own) / wall
        if machine is not None and self._machine is not None:
            busy, steal = machine[0] - self._machine[0], machine[1] - self._machine[1]
            self.other_cores = max(busy - (own - self._own), 0.0) / wall + steal / wall

    @property
    def contended(self) -> bool:
        """Whether others used cores this process's threads wanted (the load average where
        /proc/stat cannot be read: more runnable tasks than cores)."""
        free = max(self.cpus - self.threads, 0)
        if self.other_cores is not None:
            return self.other_cores > free + CONTENDED_CORES
        return self.load_1m is not None and self.load_1m > self.cpus + CONTENDED_CORES

    def values(self, timings: Iterable[Timing]) -> dict[str, Any]:
        """The speed metric's load columns for ``timings``, taken while this was measured."""
        spread = timing_spread(timings)
        return {
            "cpus": self.cpus,
            "load_1m": _round(self.load_1m),
            "own_cores": _round(self.own_cores),
            "other_cores": _round(self.other_cores),
            "timing_spread": _round(spread),
            "noisy": self.contended or spread > SPREAD_LIMIT,
        }


def timing_spread(timings: Iterable[Timing]) -> float:
    """The largest interquartile range relative to its median among ``timings`` (0 for none)."""
    return max((t.spread for t in timings), default=0.0)


def noisy(timings: Iterable[Timing], load: MachineLoad) -> bool:
    """True for timings taken under contention (``load.contended``) or spread beyond ``SPREAD_LIMIT``."""
    return bool(load.values(timings)["noisy"])


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
