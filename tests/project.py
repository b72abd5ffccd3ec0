"""A throw-away copy of this project for tests that run the real stages (end to end, faults).

``copy_project`` copies the source tree (none of the built outputs), applies tiny params
and makes it a git repository of its own; ``build_tiny`` makes, once per pytest run, the
tiny project every e2e module starts from (data fetched, a baseline trained, pruned, by
``dvc repro prune``, with its DVC cache), and ``copy_built`` hands a module its own copy;
``sh`` runs a command there with telemetry off; ``runs`` reads the MLflow store's runs and
tags straight from SQLite; ``start_long_training`` starts train_baseline for a fault to hit it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from stores import copy_migrated

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


def set_params(proj: Path, **sections: dict) -> None:
    """Merge each section's values into the project's params.yaml."""
    values = yaml.safe_load((proj / "params.yaml").read_text())
    for section, changes in sections.items():
        values[section].update(changes)
    (proj / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))


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
    set_params(dest, **params)
    sh(dest, "git", "init", "-q")
    sh(dest, "git", "add", "-A")
    sh(dest, "git", "commit", "-qm", "tiny")
    return dest


# The params every e2e module starts from: small enough for seconds per stage, the same
# network and training for all so one baseline serves them (batch sizes that split over
# two ranks with a short last batch, for tests/test_distributed.py).
TINY = {
    "model": {"hidden": [64, 32]},
    "train": {"epochs": 2, "batch_size": 100},
    "finetune": {"epochs": 2, "batch_size": 96},
    "prune": {"sparsity": 0.9},
    "sweep": {"sparsities": [0.0, 0.5, 0.9], "finetune_epochs": 1},
    "compress": {"sweep": True},  # the compressed regime (off in the default run, for its time)
}


@dataclass(frozen=True)
class Built:
    """The tiny project after ``dvc repro prune``, and what that command printed."""

    path: Path
    stdout: str
    stderr: str


def build_tiny(shared: Path) -> Built:
    """The tiny project in ``shared``, built by the first caller of a pytest run (xdist workers
    share ``shared``: the others wait on a lock and read it). Its MLflow store stays with it."""
    shared.mkdir(parents=True, exist_ok=True)
    done = shared / "built.json"
    with open(shared / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            proj = copy_project(shared / "prunelab", TINY)
            out = sh(proj, "dvc", "repro", "prune")
            done.write_text(json.dumps({"stdout": out.stdout, "stderr": out.stderr}))
    printed = json.loads(done.read_text())
    return Built(shared / "prunelab", printed["stdout"], printed["stderr"])


def copy_built(built: Built, dest: Path, params: dict[str, dict] | None = None) -> Path:
    """A module's own copy of the tiny project: outputs, dvc.lock, DVC cache and git history,
    with an empty migrated MLflow store; ``params`` merged into params.yaml and committed
    (DVC then reruns exactly what they reach)."""

    def ignore(folder: str, names: list[str]) -> list[str]:
        top, dvc_state = Path(folder) == built.path, Path(folder) == built.path / ".dvc"
        # .dvc/tmp holds DVC's state keyed by this folder's files; the copy builds its own
        return [n for n in names if (top and n == "mlruns") or (dvc_state and n == "tmp")]

    shutil.copytree(built.path, dest, ignore=ignore, symlinks=True)
    # an empty store: an experiment records its artifact folder as an absolute path, so the
    # build's store, with its runs, cannot move; the copy's stages create their own experiment
    copy_migrated(dest / "mlruns" / "mlflow.db")
    if params:
        set_params(dest, **params)
        sh(dest, "git", "commit", "-qm", "module params", "params.yaml")
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
