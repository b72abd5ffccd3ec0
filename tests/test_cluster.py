"""A study across hosts, for real: PostgreSQL 15 and `mlflow server` on 127.0.0.1, clones as hosts.

The servers are started in temporary folders and stopped; the "hosts" are clones of a bare
git repository in separate folders, running at the same time, with a local folder as the
DVC remote (the same commands work with SSH or S3 remotes). Outside CI a machine without
PostgreSQL's server programs skips these tests and says why; in CI (CI=true) they fail.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from project import copy_built, copy_project, env, sh
from servers import all_runs, client, start_server

from prunelab import track
from prunelab.cluster.server import TrackingServer
from prunelab.track.reap import HEARTBEAT_ENV, STALE_ENV

pytestmark = pytest.mark.e2e

TINY = {
    "model": {"hidden": [64, 32]},
    "train": {"epochs": 3},
    "finetune": {"epochs": 1},
    "sweep": {"methods": ["weight"], "seeds": [0, 1], "sparsities": [0.5, 0.9], "finetune_epochs": 1},
}


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    srv = start_server(postgres, tmp_path_factory.mktemp("server"), "mlflow")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The project with tiny params, its DVC remote a local folder, pushed to a bare git repository."""
    root = tmp_path_factory.mktemp("study")
    origin, remote = root / "origin.git", root / "dvc-remote"
    sh(root, "git", "init", "-q", "--bare", "--initial-branch=main", str(origin))
    remote.mkdir()
    src = copy_project(root / "workspace", TINY)
    sh(src, "dvc", "remote", "add", "-d", "shared", str(remote))
    sh(src, "git", "commit", "-qam", "the shared DVC remote")
    sh(src, "git", "remote", "add", "origin", str(origin))
    sh(src, "git", "push", "-q", "origin", "HEAD:main")
    sh(src, "git", "fetch", "-q", "origin")
    return src


def _create(uri: str, barrier, results) -> None:
    os.environ.update(MLFLOW_TRACKING_URI=uri, PRUNELAB_MLFLOW_EXPERIMENT="raced", MLFLOW_DISABLE_TELEMETRY="true")
    barrier.wait()
    try:
        results.put(track.init_store())
    except Exception as exc:  # reported to the test, not lost in a child
        results.put(f"error: {exc}")


def test_many_workers_starting_at_once_create_the_experiment_once(server):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(6), ctx.Queue()
    workers = [ctx.Process(target=_create, args=(server.uri, barrier, results)) for _ in range(6)]
    for w in workers:
        w.start()
    ids = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(30)
    assert len(set(ids)) == 1 and not str(ids[0]).startswith("error"), ids
    exp = client(server).get_experiment(ids[0])
    assert exp.name == "raced" and exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # the server keeps the artifacts (proxied)


def wait_for_queue(clone: Path, deadline: float) -> str:
    while True:
        status = sh(clone, "dvc", "queue", "status").stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(3)


def test_two_clones_with_queue_workers_log_every_run_once_and_completely(server, study, tmp_path):
    clones = {}
    for host, rates in (("a", ("0.001", "0.002")), ("b", ("0.003", "0.004"))):
        clone = tmp_path / host
        sh(tmp_path, "git", "clone", "-q", str(study / ".." / "origin.git"), str(clone))
        # what every experiment shares is in the run-cache first: DVC's concurrent commits of one
        # object into a clone's cache can race ("unable to remove ... without a confirmation")
        sh(clone, "dvc", "repro", "fetch_data", MLFLOW_TRACKING_URI=server.uri)
        for lr in rates:
            sh(
                clone,
                "dvc",
                "exp",
                "run",
                "--queue",
                "-n",
                f"{host}-lr{lr}",
                "-S",
                f"train.lr={lr}",
                "train_baseline@0",
            )
        clones[host] = clone
    uri = {"MLFLOW_TRACKING_URI": server.uri}
    for clone in clones.values():  # both hosts' workers at once: four experiments log at the same time
        sh(clone, "dvc", "queue", "start", "-j", "2", **uri)
    deadline = time.monotonic() + 600
    for clone in clones.values():
        status = wait_for_queue(clone, deadline)
        assert status.count("Success") == 2, status
    names = {f"{h}-lr{lr}" for h, r in (("a", ("0.001", "0.002")), ("b", ("0.003", "0.004"))) for lr in r}
    runs = [r for r in all_runs(server) if r.data.tags.get("dvc_exp") in names]
    assert {r.info.status for r in runs} == {"FINISHED"}
    c = client(server)
    for name in names:
        trained = [r for r in runs if r.data.tags["dvc_exp"] == name and r.data.tags["stage"] == "train_baseline"]
        assert len(trained) == 1, name  # once: no retry wrote a second run
        history = c.get_metric_history(trained[0].info.run_id, "train_loss")
        assert sorted(m.step for m in history) == [1, 2, 3]  # every epoch, nothing lost
        assert trained[0].data.params["train.lr"] == name.split("lr")[1]
    log = (server.folder / "server.log").read_text()
    assert "QueuePool limit" not in log and "deadlock" not in log.lower() and "Traceback" not in log


def running_run_of(srv: TrackingServer, job: str, deadline: float):
    while time.monotonic() < deadline:
        for r in all_runs(srv):
            if r.info.status == "RUNNING" and r.data.tags.get(track.JOB_TAG) == job:
                return r
        time.sleep(0.5)
    raise AssertionError(f"no RUNNING run of job {job}")


def test_a_sharded_study_survives_a_lost_host_and_gathers_from_the_run_cache(server, study, tmp_path):
    work = tmp_path / "cluster"
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prunelab.cluster.launch",
            "--hosts",
            "2",
            "--by",
            "seed",
            "--executor",
            "local",
            "--work",
            str(work),
            "--name",
            "t",
        ],
        cwd=study,
        env=env(MLFLOW_TRACKING_URI=server.uri, TQDM_DISABLE="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        victim = running_run_of(server, "t-seed-1", time.monotonic() + 300)  # the host of seed 1, mid-shard
        os.killpg(os.getpgid(int(victim.data.tags[track.PID_TAG])), signal.SIGKILL)
        out, _ = launcher.communicate(timeout=900)
    finally:
        with contextlib.suppress(ProcessLookupError):
            launcher.kill()
    assert launcher.returncode == 0, out[-3000:]
    assert "shard seed-1: job t-seed-1 failed" in out and "RUNNING run(s) of it marked KILLED" in out
    report = json.loads((work / "report.json").read_text())
    assert set(report["shards"]) == {"seed-0", "seed-1"} and report["shards"]["seed-1"]["name"] == "t-seed-1-try2"
    assert sorted(report["gathered"]["ran"]) == ["efficiency", "plot"]  # nothing trained: all from the run-cache
    runs = all_runs(server)
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    killed = next(r for r in runs if r.info.run_id == victim.info.run_id)
    # marked by whichever saw it first: the launcher giving up on the job, or a stage of the other
    # "host" finding the process gone (both hosts are this machine here)
    why = killed.data.tags[track.REAPED_TAG]
    assert killed.info.status == "KILLED" and (
        "job t-seed-1 failed" in why or f"process {victim.data.tags[track.PID_TAG]}" in why
    )
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags and r.info.status == "FINISHED"]
    for exp, stages in (("t-seed-0", {"train_baseline", "sweep", "prune", "finetune", "compress", "evaluate"}),
                        ("t-seed-1-try2", {"train_baseline", "sweep"})):  # fmt: skip
        finished = Counter(r.data.tags["stage"] for r in top if r.data.tags.get("dvc_exp") == exp)
        assert stages <= set(finished) and set(finished.values()) == {1}, (exp, finished)  # each stage once
    gathered = work / "gather"
    rows = (gathered / "results" / "sweep.csv").read_text().splitlines()
    assert {r.split(",")[rows[0].split(",").index("seed")] for r in rows[1:]} == {"0", "1"}  # every shard's points
    # what another clone sees on the server: nested sweep points, dataset inputs, the figure as an artifact
    c = client(server)
    sweep = next(r for r in top if r.data.tags.get("dvc_exp") == "t-seed-0" and r.data.tags["stage"] == "sweep")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]
    assert len(children) >= 2 and all(r.info.status == "FINISHED" for r in children)
    assert c.get_run(sweep.info.run_id).inputs.dataset_inputs
    by_stage = {r.data.tags["stage"]: r for r in top if r.data.tags.get("dvc_exp") in ("t", "t-seed-0")}
    elsewhere = tmp_path / "another-clone"
    figure = Path(c.download_artifacts(by_stage["plot"].info.run_id, "figures/sweep.png", str(elsewhere)))
    assert figure.read_bytes() == (gathered / "results" / "plots" / "sweep.png").read_bytes()
    export = Path(c.download_artifacts(by_stage["compress"].info.run_id, "model.sparse", str(elsewhere)))
    assert export.read_bytes() == (gathered / "models" / "export" / "compressed" / "model.sparse").read_bytes()


def test_a_silent_host_is_reaped_through_the_server_by_a_stage_on_another(server, built, tmp_path):
    """A training stage on "another host" (its own UTS namespace: another host name, so its process
    cannot be looked up here) goes silent (SIGSTOP: a frozen or cut-off machine, heartbeats stop);
    the next stage started here finds its run silent past PRUNELAB_STALE_S and marks it KILLED."""
    proj = copy_built(built, tmp_path / "proj")
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["train"]["epochs"] = 500
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    beats = {"MLFLOW_TRACKING_URI": server.uri, HEARTBEAT_ENV: "1", STALE_ENV: "5"}
    far = subprocess.Popen(
        ["unshare", "--uts", "sh", "-c", 'hostname far-host && exec "$@"', "-",
         sys.executable, "stages/train_baseline.py", "--seed", "0"],
        cwd=proj, env=env(TQDM_DISABLE="1", **beats), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (running := [r for r in all_runs(server) if r.info.status == "RUNNING"
                               and r.data.tags.get(track.HOST_TAG) == "far-host"
                               and track.HEARTBEAT_TAG in r.data.tags]):  # fmt: skip
            assert far.poll() is None and time.monotonic() < deadline, far.communicate()
            time.sleep(0.3)
        os.kill(far.pid, signal.SIGSTOP)  # `exec`: the pid is the stage's own
        time.sleep(7)  # past PRUNELAB_STALE_S since the last beat
        out = sh(proj, sys.executable, "stages/prune.py", TQDM_DISABLE="1", **beats)
    finally:
        far.kill()
        far.communicate()
    reaped = client(server).get_run(running[0].info.run_id)
    assert reaped.info.status == "KILLED", out.stderr
    assert reaped.data.tags[track.REAPED_TAG].startswith("no heartbeat from far-host for ")
    assert "tracking: marked 1 run(s) KILLED (no heartbeat from far-host for" in out.stderr
