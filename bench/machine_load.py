"""How much of the machine other processes used while a benchmark ran: the noise it carries.

On a 2-core machine one other busy process changes timings by far more than the effects
measured here, and the load average lags by a minute. Busy CPU time from /proc/stat
(whole machine) minus this process's own CPU time and that of its waited-for children
is what everything else used; steal is time the hypervisor gave to other guests. Linux only
(the reading of /proc/stat is ``prunelab.measure.load``'s).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from prunelab.measure.load import machine_seconds


def _own_seconds() -> float:
    t = os.times()  # children: only those already waited for, with their own waited-for children
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class MachineLoad:
    """Average number of cores others used (``other_cores``) and stolen (``steal_cores``)."""

    other_cores: float = 0.0
    steal_cores: float = 0.0

    def __enter__(self) -> MachineLoad:
        (self._busy, self._steal), self._own, self._wall = self._machine(), _own_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, steal = self._machine()
        wall = max(time.perf_counter() - self._wall, 1e-9)
        self.other_cores = max(busy - self._busy - (_own_seconds() - self._own), 0.0) / wall
        self.steal_cores = (steal - self._steal) / wall

    @staticmethod
    def _machine() -> tuple[float, float]:
        seconds = machine_seconds()
        if seconds is None:
            raise OSError("/proc/stat is not readable: the benchmarks' load figure needs Linux")
        return seconds

    def describe(self) -> str:
        noisy = "  NOISY: compare only runs near 0" if self.other_cores + self.steal_cores > 0.1 else ""
        return (
            f"other processes used {self.other_cores:.2f} of {os.cpu_count()} cores on average, "
            f"steal {self.steal_cores:.2f}{noisy}"
        )
