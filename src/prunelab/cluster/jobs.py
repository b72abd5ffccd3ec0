"""One job of a sharded study, as it runs on its host: clone at a commit, run the shard, push, report.

The commands are exactly the README's manual ones (``commands``), so a host without the
launcher does the same by hand:

    git clone REPO DIR && cd DIR && git checkout COMMIT
    dvc pull --run-cache --allow-missing       # what other shards already pushed (say, the baselines)
    dvc exp run --pull -n NAME [-S key=value ...] STAGE ...
    dvc exp push --run-cache origin NAME       # the experiment to git, its outputs and run-cache to the DVC remote

Each job is a process group of its own (a "host": killing it kills its stages), its
stages' MLflow runs carry the job's id (``PRUNELAB_JOB``), and the report says which
stages ran and which DVC restored.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from prunelab.errors import PrunelabError

RAN = re.compile(r"Running stage '([^']+)'")
RESTORED = re.compile(r"Stage '([^']+)' (?:is cached - skipping run|didn't change, skipping)")


class JobError(PrunelabError):
    """A command of a shard's job failed; the message names it and ends with its last output."""


@dataclass(frozen=True)
class JobSpec:
    repo: str  # the shared git remote (a path, ssh://..., https://...)
    commit: str
    folder: str  # where this job clones: a fresh folder per attempt
    name: str  # the experiment's name, also the job's id in MLflow tags
    targets: tuple[str, ...]  # the shard's stages; () = the whole study (gathering)
    overrides: tuple[str, ...] = ()  # `-S key=value` of the study
    setup: str | None = None  # a shell command run in the clone first (say `uv sync --locked`)


def commands(spec: JobSpec) -> list[list[str]]:
    """The DVC commands of a job, after the clone (what the README shows)."""
    run = ["dvc", "exp", "run", "--pull", "-n", spec.name]  # --pull: a run-cache hit's outputs come from the remote
    for o in spec.overrides:
        run += ["-S", o]
    return [
        ["dvc", "pull", "--run-cache", "--allow-missing"],
        run + list(spec.targets),
        ["dvc", "exp", "push", "--run-cache", "origin", spec.name],
    ]


def stages_in(output: str) -> tuple[list[str], list[str]]:
    """(stages that ran, stages DVC restored or skipped), from `dvc exp run`'s output, in order."""
    return RAN.findall(output), RESTORED.findall(output)


def _environment(spec: JobSpec, clone: Path) -> dict[str, str]:
    env = {**os.environ, "PRUNELAB_JOB": spec.name, "DVC_NO_ANALYTICS": "1"}
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    python = clone / ".venv" / "bin"  # made by a setup like `uv sync`; else this interpreter's environment
    bin_dir = python if (python / "python").exists() else Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    for key in ("DVC_ROOT", "DVC_EXP_NAME"):
        env.pop(key, None)
    return env


def _sh(argv: list[str] | str, cwd: Path, env: dict[str, str], log: Path) -> str:
    """Run a command with its output going to ``log`` as it comes (``tail -f`` it); return that output."""
    shown = argv if isinstance(argv, str) else shlex.join(argv)
    print(f"[{time.strftime('%H:%M:%S')}] $ {shown}", flush=True)
    with open(log, "a") as fh:
        fh.write(f"$ {shown}\n")
        fh.flush()
        start = fh.tell()
        code = subprocess.run(
            argv, cwd=cwd, env=env, shell=isinstance(argv, str), stdout=fh, stderr=subprocess.STDOUT, check=False
        ).returncode
    with open(log) as fh:
        fh.seek(start)
        output = fh.read()
    if code != 0:
        tail = " | ".join(line for line in output.splitlines()[-6:] if line.strip())
        raise JobError(f"`{shown}` exited {code} on {socket.gethostname()}: {tail}")
    return output


def run_shard(spec: JobSpec) -> dict:
    """Run one job (in the job's process on its host) and return its report."""
    try:
        os.setsid()  # the job and every stage it starts are one process group: one "host" to kill
    except OSError:
        pass  # already a group leader
    start = time.monotonic()
    clone = Path(spec.folder)
    clone.parent.mkdir(parents=True, exist_ok=True)
    log = clone.parent / f"{clone.name}.log"
    env = _environment(spec, clone)
    _sh(["git", "clone", "--quiet", spec.repo, str(clone)], clone.parent, env, log)
    _sh(["git", "checkout", "--quiet", spec.commit], clone, env, log)
    if spec.setup:
        _sh(spec.setup, clone, env, log)
        env = _environment(spec, clone)
    pulled, run, pushed = commands(spec)
    _sh(pulled, clone, env, log)
    ran, restored = stages_in(_sh(run, clone, env, log))
    _sh(pushed, clone, env, log)
    return {
        "name": spec.name,
        "host": socket.gethostname(),
        "folder": str(clone),
        "ran": ran,
        "restored": restored,
        "seconds": round(time.monotonic() - start, 1),
    }
