"""The shared tracking server's own failures, for real: a restart, an outage, basic auth.

Each test starts a server of its own (on a PostgreSQL of this module's: tests/servers.py),
so these run on another pytest-xdist worker beside tests/test_cluster.py's study.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from project import copy_built, copy_project, env, sh
from servers import all_runs, client, start_server

from prunelab.cluster.server import TrackingServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def alone(postgres, built, tmp_path):
    """A server of its own (the test stops and starts it) and a project that has its data."""
    srv = start_server(postgres, tmp_path / "server", "restarted")
    proj = copy_built(built, tmp_path / "proj")
    yield srv, proj
    srv.stop()


def train(proj: Path, srv: TrackingServer, epochs: int, **extra: str) -> subprocess.Popen:
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["train"]["epochs"] = epochs
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return subprocess.Popen(
        [sys.executable, "stages/train_baseline.py", "--seed", "0"],
        cwd=proj,
        env=env(MLFLOW_TRACKING_URI=srv.uri, TQDM_DISABLE="1", **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def new_running_run(srv: TrackingServer, seen: set[str], proc: subprocess.Popen):
    deadline = time.monotonic() + 120
    while True:
        running = [r for r in all_runs(srv) if r.info.status == "RUNNING" and r.info.run_id not in seen]
        if running:
            return running[0]
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.3)


def test_a_server_restart_loses_nothing_and_a_long_outage_fails_in_one_line(alone):
    srv, proj = alone
    proc = train(proj, srv, epochs=30)
    first = new_running_run(srv, set(), proc)
    srv.stop()
    down = time.monotonic()
    srv.start()  # same port and database: a restart, here about 15 s on 2 cores
    restart = time.monotonic() - down
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    run = client(srv).get_run(first.info.run_id)
    assert run.info.status == "FINISHED", restart
    assert sorted(m.step for m in client(srv).get_metric_history(run.info.run_id, "train_loss")) == list(range(1, 31))
    # a longer outage than the client waits for (here cut to ~2 s): one line, and the rerun is clean
    proc = train(proj, srv, epochs=30, MLFLOW_HTTP_REQUEST_MAX_RETRIES="2")
    second = new_running_run(srv, {first.info.run_id}, proc)
    srv.stop()
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        srv.start()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in err, err[-2000:]
    assert len(errors) == 1 and errors[0].startswith(f"error: tracking server {srv.uri} is unreachable")
    assert proc.wait() == 2
    rerun = train(proj, srv, epochs=1)  # what the rerun must do is start clean and reap, not train long
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    runs = {r.info.run_id: r for r in all_runs(srv) if r.data.tags["stage"] == "train_baseline"}
    assert runs[second.info.run_id].info.status == "KILLED"  # its process is gone: the rerun's stage said so
    assert sorted(r.info.status for r in runs.values()) == ["FINISHED", "FINISHED", "KILLED"]


def listening(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp writes them) that listen on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    found.add(local.rsplit(":", 1)[0])
    return found


def test_basic_auth_refuses_a_client_without_credentials_and_serves_one_with_them(postgres, tmp_path, monkeypatch):
    admin = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": f"pl-{os.urandom(8).hex()}"}
    for key, value in admin.items():  # the server takes its admin from the environment, as users do
        monkeypatch.setenv(key, value)
    srv = start_server(postgres, tmp_path / "server", "guarded", auth=True)
    try:
        assert listening(srv.port) == {"0100007F"}  # 127.0.0.1 only
        proj = copy_project(tmp_path / "proj", {})
        for user, password in (("", ""), ("admin", "wrong-password")):
            out = sh(proj, sys.executable, "stages/fetch_data.py", check=False, MLFLOW_TRACKING_URI=srv.uri,
                     MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)  # fmt: skip
            assert out.returncode == 2 and "Traceback" not in out.stderr
            assert out.stderr.strip().splitlines() == [
                f"error: tracking server {srv.uri} refused the request: no or wrong credentials (401). Set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment (never in params.yaml or git)"
            ]
        sh(proj, sys.executable, "stages/fetch_data.py", MLFLOW_TRACKING_URI=srv.uri, **admin)
        assert [r.info.status for r in all_runs(srv)] == ["FINISHED"]
        assert admin["MLFLOW_TRACKING_PASSWORD"] not in sh(proj, "git", "grep", "-n", "pl-", check=False).stdout
    finally:
        srv.stop()
