"""A throw-away copy of this project for tests that run the real stages (end to end, faults).

``copy_project`` copies the source tree (none of the built outputs), applies tiny params
and makes it a git repository of its own; ``sh`` runs a command there with telemetry off;
``runs`` reads the MLflow store's runs and tags straight from SQLite; ``start_long_training``
starts train_baseline for a fault to hit it.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Top-level paths that are built, not source; the copy gets none of them.
GENERATED = {".git", ".venv", "mlruns", "models", "metrics", "results", "dvc.lock", ".pytest_cache"}


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("DVC_ROOT", "MLFLOW_TRACKING_URI", "DVC_EXP_NAME")}
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    # PRUNELAB_TIMING=quick: the stages' timings take 3 short rounds (they reach no exact output)
    e.update(
        DVC_NO_ANALYTICS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        TQDM_MININTERVAL="10",
        PRUNELAB_TIMING="quick",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    e.update(extra)
    return e


def sh(proj: Path, *cmd: str, check: bool = True, timeout: int = 900, **extra_env: str) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=proj, env=env(**extra_env), capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def copy_project(dest: Path, params: dict[str, dict]) -> Path:
    """The source tree in ``dest`` with ``params`` merged into each params.yaml section, committed to git."""

    def ignore(folder: str, names: list[str]) -> list[str]:
        top = Path(folder) == ROOT
        dvc_state = Path(folder) == ROOT / ".dvc"
        data = Path(folder) == ROOT / "data"  # only data/local (its README) is in git
        return [
            n
            for n in names
            if n == "__pycache__"
            or (top and n in GENERATED)
            or (dvc_state and n in ("tmp", "cache"))
            or (data and n != "local")
        ]

    shutil.copytree(ROOT, dest, ignore=ignore)
    values = yaml.safe_load((dest / "params.yaml").read_text())
    for section, changes in params.items():
        values[section].update(changes)
    (dest / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    sh(dest, "git", "init", "-q")
    sh(dest, "git", "add", "-A")
    sh(dest, "git", "commit", "-qm", "tiny")
    return dest


def runs(proj: Path) -> list[dict]:
    with sqlite3.connect(proj / "mlruns" / "mlflow.db") as db:
        rows = db.execute("SELECT run_uuid, status, name FROM runs").fetchall()
        tags = db.execute("SELECT run_uuid, key, value FROM tags").fetchall()
    by_run = {r: {"id": r, "status": s, "name": n, "tags": {}} for r, s, n in rows}
    for run, key, value in tags:
        by_run[run]["tags"][key] = value
    return list(by_run.values())


def default_signals() -> None:
    """In the child: Ctrl-C and SIGTERM as in a terminal. A shell that starts a job in the
    background makes it ignore SIGINT, and a process started ignoring SIGINT gets no
    KeyboardInterrupt at all: rightly so for the stages, wrongly for a test of Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_long_training(proj: Path, **train) -> subprocess.Popen:
    """train_baseline with 500 epochs (and ``train``'s other values), once a new MLflow run is
    RUNNING (its own, or its rank 0's with train.nproc > 1), so a signal hits real work."""
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["train"].update({"epochs": 500, **train})
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = {r["id"] for r in runs(proj)}
    proc = subprocess.Popen(
        [sys.executable, "stages/train_baseline.py", "--seed", "0"],
        cwd=proj,
        env=env(TQDM_DISABLE="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )
    deadline = time.monotonic() + 120
    while not any(r["status"] == "RUNNING" and r["id"] not in before for r in runs(proj)):
        assert proc.poll() is None and time.monotonic() < deadline, "train_baseline never started its run"
        time.sleep(0.5)
    time.sleep(1.0)  # into the epochs
    return proc
