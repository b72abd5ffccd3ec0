"""Which process owns a run, and marking KILLED the runs whose process or host is gone.

Every run records the host and process that own it (``process_tags``), and the launcher's
job when it has one (``PRUNELAB_JOB``). A stage marks KILLED (``reap_dead_runs``):
- RUNNING runs of this host whose process is gone (SIGKILL, power loss);
- on a shared tracking server, RUNNING runs of any host whose heartbeat stopped: a stage's
  run sets ``prunelab.heartbeat`` every PRUNELAB_HEARTBEAT_S (60 s) while it works
  (``Heartbeat``), and one silent for PRUNELAB_STALE_S (600 s) belongs to a host that is
  gone. The tag ``prunelab.reaped`` says why.
The launcher marks the runs of a job it gave up on at once (``reap_job``).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path

# tags that say which process owns a run (see reap_dead_runs)
HOST_TAG, PID_TAG, STARTED_TAG = "prunelab.host", "prunelab.pid", "prunelab.process_start"
HEARTBEAT_TAG, JOB_TAG, REAPED_TAG = "prunelab.heartbeat", "prunelab.job", "prunelab.reaped"
JOB_ENV = "PRUNELAB_JOB"  # set by the launcher in each job: which job a run belongs to
HEARTBEAT_ENV, STALE_ENV = "PRUNELAB_HEARTBEAT_S", "PRUNELAB_STALE_S"


def _seconds(env: str, default: float) -> float:
    try:
        value = float(os.environ.get(env, default))
    except ValueError:
        return default
    return value if value > 0 else default


def heartbeat_every() -> float:
    return _seconds(HEARTBEAT_ENV, 60.0)


def stale_after() -> float:
    return _seconds(STALE_ENV, 600.0)


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot; Linux), so a reused PID is not taken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of stat, counted after the command name


def process_tags(heartbeat: bool = False) -> dict[str, str]:
    pid = os.getpid()
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), STARTED_TAG: _process_start(pid) or ""}
    if os.environ.get(JOB_ENV):
        tags[JOB_TAG] = os.environ[JOB_ENV]
    if heartbeat:
        tags[HEARTBEAT_TAG] = str(int(time.time()))
    return tags


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


def silent_for(tags: dict[str, str], now: float) -> float | None:
    """Seconds since the run's last heartbeat; None when it sends none (a local store, an older prunelab)."""
    beat = tags.get(HEARTBEAT_TAG, "")
    return now - int(beat) if beat.isdigit() else None


def reap_dead_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs whose process (this host) or heartbeat (any host) is gone; return their ids."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    host, now, stale = socket.gethostname(), time.time(), stale_after()
    running = client.search_runs([experiment_id], max_results=1000, filter_string="attributes.status = 'RUNNING'")
    dead: list[tuple[object, str]] = []
    for r in running:
        tags = r.data.tags
        if tags.get(HOST_TAG) == host and not _alive(tags.get(PID_TAG), tags.get(STARTED_TAG)):
            dead.append((r, f"process {tags.get(PID_TAG)} of {host} is gone"))
        elif (silent := silent_for(tags, now)) is not None and silent > stale:
            dead.append((r, f"no heartbeat from {tags.get(HOST_TAG, '?')} for {silent:.0f} s (> {stale:.0f} s)"))
    for r, why in dead:
        client.set_tag(r.info.run_id, REAPED_TAG, why)
        client.set_terminated(r.info.run_id, "KILLED")
    if dead:
        names = ", ".join(sorted({r.info.run_name or r.info.run_id for r, _ in dead}))
        whys = "; ".join(sorted({why for _, why in dead}))
        print(f"tracking: marked {len(dead)} run(s) KILLED ({whys}): {names}", file=sys.stderr)
    return [r.info.run_id for r, _ in dead]


def reap_job(experiment_id: str, job: str, why: str) -> list[str]:
    """Mark KILLED the RUNNING runs of launcher job ``job`` (its host is lost); return their ids."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    job_value = job.replace("'", "")
    runs = client.search_runs(
        [experiment_id],
        max_results=1000,
        filter_string=f"attributes.status = 'RUNNING' and tags.`{JOB_TAG}` = '{job_value}'",
    )
    for r in runs:
        client.set_tag(r.info.run_id, REAPED_TAG, why)
        client.set_terminated(r.info.run_id, "KILLED")
    return [r.info.run_id for r in runs]


class Heartbeat:
    """A daemon thread that sets a run's heartbeat tag every ``heartbeat_every()`` s until stopped.

    A beat that fails (the server restarting) is skipped: the next one comes anyway, and the
    stale limit is many beats long.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="prunelab-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        while not self._stop.wait(heartbeat_every()):
            try:
                client.set_tag(self.run_id, HEARTBEAT_TAG, str(int(time.time())))
            except Exception:  # a missed beat is harmless: the stage reports store failures itself
                continue
