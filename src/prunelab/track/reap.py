"""Which process owns a run, and marking KILLED the runs whose process is gone.

Every run records the host and process that own it (``process_tags``); a stage that finds
RUNNING runs of this host whose process is gone (SIGKILL, power loss) marks them KILLED
(``reap_dead_runs``), so the runs table does not show them running forever.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import mlflow

# tags that say which process owns a run (see reap_dead_runs)
HOST_TAG, PID_TAG, STARTED_TAG = "prunelab.host", "prunelab.pid", "prunelab.process_start"


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot; Linux), so a reused PID is not taken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of stat, counted after the command name


def process_tags() -> dict[str, str]:
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), STARTED_TAG: _process_start(pid) or ""}


def _alive(pid: str | None, started: str | None) -> bool:
    if not pid or not pid.isdigit():
        return True  # no owner recorded: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    now = _process_start(int(pid))
    return not (started and now and now != started)


def reap_dead_runs(experiment_id: str) -> list[str]:
    """Mark KILLED every RUNNING run of this host whose process is gone (SIGKILL, power loss); return their names."""
    client = mlflow.tracking.MlflowClient()
    host = socket.gethostname().replace("'", "")
    runs = client.search_runs(
        [experiment_id],
        max_results=1000,
        filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
    )
    dead = [r for r in runs if not _alive(r.data.tags.get(PID_TAG), r.data.tags.get(STARTED_TAG))]
    for r in dead:
        client.set_terminated(r.info.run_id, "KILLED")
    if dead:
        names = ", ".join(sorted({r.info.run_name or r.info.run_id for r in dead}))
        pids = ", ".join(sorted({r.data.tags[PID_TAG] for r in dead}))
        print(
            f"tracking: marked {len(dead)} run(s) KILLED whose process (pid {pids}) is gone: {names}", file=sys.stderr
        )
    return [r.info.run_id for r in dead]
