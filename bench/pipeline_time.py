"""Wall time of the default pipeline (`dvc repro`) on a fresh copy of the project.

The working tree's files (tracked and untracked-but-not-ignored, so uncommitted edits
count) except dvc.lock are copied into a temporary git repository, and `dvc repro` runs
there with the virtual environment's python and dvc first on PATH.
Its output is timestamped line by line as it streams: a stage runs from DVC's
"Running stage 'X':" line to its "Updating lock file" line. Every stage is a fresh
python process, so each is charged an estimated start-up cost: the median wall time of
`python -c "import <the prunelab modules its script imports>, prunelab.track, mlflow"`
(interpreter start and exit, torch, mlflow, project; a stage process itself now starts and
exits faster than that, see stage_startup.py), and compute ≈ stage wall - start-up. A second
`dvc repro` with nothing changed measures the no-op cost. The exact outputs (all but the
timings: metrics/speed, results/speed, results/efficiency) are compared with the MD5s of the
working tree's dvc.lock: a change that only moves time must leave them as they were.

Usage: uv run python bench/pipeline_time.py [--keep]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import yaml
from machine_load import MachineLoad  # bench/ is on sys.path: it is the script's folder

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
OUT_DIR = ROOT / "bench" / "out"
GOAL_S = 120.0
STARTUP_REPEATS = 3

RUNNING = re.compile(r"^Running stage '(?P<name>[^']+)':")
LOCK_UPDATED = re.compile(r"^Updating lock file")


@dataclass
class Stage:
    name: str
    script: str
    start: float
    end: float | None = None
    startup: float = 0.0  # estimated, filled in after the run

    @property
    def wall(self) -> float:
        assert self.end is not None
        return self.end - self.start


def project_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files; not dvc.lock: without it every stage runs."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    # -c also lists tracked files deleted in the working tree.
    return [f for f in listed if f and f != "dvc.lock" and (ROOT / f).is_file()]


def make_copy(dest: Path) -> None:
    for rel in project_files():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "commit.gpgsign=false"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "pipeline_time snapshot"]):
        subprocess.run(git + cmd, cwd=dest, check=True)


def repro_env() -> dict[str, str]:
    # The copy must log to its own mlruns/, so nothing may point MLflow elsewhere.
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    env.update(
        DVC_NO_ANALYTICS="1",
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(VENV_BIN.parent),
        # dvc's own stdout is a pipe here: unbuffered, its lines arrive when they are
        # written, which is what the per-stage timestamps rely on.
        PYTHONUNBUFFERED="1",
    )
    return env


def repro(cwd: Path, env: dict[str, str], log: TextIO) -> tuple[int, float, list[tuple[float, str]]]:
    """Run `dvc repro`, returning exit code, wall seconds and (seconds since start, line) pairs."""
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    with subprocess.Popen(
        [str(VENV_BIN / "dvc"), "repro"], cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:  # universal newlines: each tqdm '\r' refresh is a line too
            t, line = time.perf_counter() - start, raw.rstrip("\n")
            lines.append((t, line))
            log.write(f"{t:8.2f}  {line}\n")
            if RUNNING.match(line):
                print(f"  {t:7.1f} s  {line}", flush=True)
    return proc.returncode, time.perf_counter() - start, lines


def parse_stages(lines: list[tuple[float, str]], total: float) -> list[Stage]:
    stages: list[Stage] = []
    expect_cmd = False
    for t, line in lines:
        if m := RUNNING.match(line):
            if stages and stages[-1].end is None:
                stages[-1].end = t
            stages.append(Stage(m["name"], "", t))
            expect_cmd = True
        elif expect_cmd and line.startswith("> "):
            stages[-1].script = next((w for w in line[2:].split() if w.endswith(".py")), "")
            expect_cmd = False
        elif LOCK_UPDATED.match(line) and stages and stages[-1].end is None:
            stages[-1].end = t
    if stages and stages[-1].end is None:
        stages[-1].end = total
    return stages


# outputs that hold timings (or are computed from them): they differ between any two runs
TIMING_OUTPUTS = ("metrics/speed/", "results/speed/", "results/efficiency/")


def lock_outputs(lock: Path) -> dict[str, str]:
    """Each exact output's MD5 in a dvc.lock (a folder's is that of its listing)."""
    stages = yaml.safe_load(lock.read_text(encoding="utf-8")).get("stages", {}) if lock.is_file() else {}
    return {
        out["path"]: out["md5"]
        for stage in stages.values()
        for out in stage.get("outs", [])
        if not out["path"].startswith(TIMING_OUTPUTS)
    }


def stage_imports(copy: Path, script: str) -> list[str]:
    """The prunelab modules a stage script imports (anywhere in it), plus prunelab.track and mlflow
    (which prunelab.track itself no longer imports: the estimate keeps its earlier meaning)."""
    modules = {"prunelab.track", "mlflow"}
    for node in ast.walk(ast.parse((copy / script).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(a.name for a in node.names if a.name.split(".")[0] == "prunelab")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "prunelab":
            modules.add(node.module)
            for alias in node.names:  # `from prunelab import config`: config is a module
                sub = copy / "src" / Path(*node.module.split("."), alias.name)
                if sub.is_dir() or sub.with_suffix(".py").is_file():
                    modules.add(f"{node.module}.{alias.name}")
    return sorted(modules)


def startup_seconds(copy: Path, env: dict[str, str], modules: list[str]) -> float:
    # PYTHONPATH=src mirrors stages/_bootstrap.py: the copy's own src/ is imported.
    env = {**env, "PYTHONPATH": "src"}
    times = []
    for _ in range(STARTUP_REPEATS):
        start = time.perf_counter()
        subprocess.run([str(VENV_BIN / "python"), "-c", "import " + ", ".join(modules)], cwd=copy, env=env, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy and print its path")
    args = parser.parse_args()

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    copy = Path(tempfile.mkdtemp(prefix="prunelab-pipeline-"))
    env = repro_env()
    try:
        make_copy(copy)
        print(f"fresh copy in {copy}; running dvc repro", flush=True)
        with open(OUT_DIR / "pipeline_repro.log", "w", encoding="utf-8") as log:
            with MachineLoad() as load:
                rc, total, lines = repro(copy, env, log)
            if rc != 0:
                print("\n".join(line for _, line in lines[-30:]))
                print(f"dvc repro failed (exit {rc}); full log in {log.name}", file=sys.stderr)
                return 1
            print("no-op dvc repro", flush=True)
            log.write("\n---- no-op repro ----\n")
            noop_rc, noop_total, noop_lines = repro(copy, env, log)
        stages = parse_stages(lines, total)
        noop_reran = [s.name for s in parse_stages(noop_lines, noop_total)]
        reference, produced = lock_outputs(ROOT / "dvc.lock"), lock_outputs(copy / "dvc.lock")
        differ = sorted(p for p in reference.keys() | produced.keys() if reference.get(p) != produced.get(p))

        print("measuring start-up cost per stage script", flush=True)
        cache: dict[tuple[str, ...], float] = {}
        for s in stages:
            modules = tuple(stage_imports(copy, s.script))
            if modules not in cache:
                cache[modules] = startup_seconds(copy, env, list(modules))
            s.startup = cache[modules]
    finally:
        if args.keep:
            print(f"kept {copy}")
        else:
            shutil.rmtree(copy, ignore_errors=True)

    stage_wall = sum(s.wall for s in stages)
    startup = sum(s.startup for s in stages)
    met = total <= GOAL_S
    print(f"\n{'stage':<16} {'wall s':>8} {'start-up s (est.)':>18} {'compute s (est.)':>17}")
    for s in stages:
        print(f"{s.name:<16} {s.wall:>8.1f} {s.startup:>18.1f} {s.wall - s.startup:>17.1f}")
    print(f"{'stages total':<16} {stage_wall:>8.1f} {startup:>18.1f} {stage_wall - startup:>17.1f}")
    print(f"{'dvc outside stages':<16} {total - stage_wall:>8.1f}")
    print(f"{'dvc repro total':<16} {total:>8.1f}")
    print(f"stage processes: {len(stages)} (one python per stage, besides dvc itself)")
    print(f"no-op dvc repro: {noop_total:.1f} s (exit {noop_rc}; stages rerun: {', '.join(noop_reran) or 'none'})")
    print(f"during the repro, {load.describe()}")
    print(
        f"exact outputs: {len(produced) - len(set(differ) & produced.keys())} of {len(produced)} have the MD5 "
        f"of this tree's dvc.lock{'' if not differ else '; differ: ' + ', '.join(differ)}"
    )
    print(f"goal: default dvc repro <= {GOAL_S:.0f} s: {'met' if met else 'NOT met'} ({total:.1f} s)")

    out = OUT_DIR / "pipeline_time.json"
    out.write_text(
        json.dumps(
            {
                "total_s": total,
                "goal_s": GOAL_S,
                "goal_met": met,
                "stages": [{**asdict(s), "wall": s.wall, "compute": s.wall - s.startup} for s in stages],
                "stage_wall_s": stage_wall,
                "startup_s": startup,
                "dvc_outside_stages_s": total - stage_wall,
                "processes": len(stages),
                "noop_s": noop_total,
                "noop_exit": noop_rc,
                "noop_stages_rerun": noop_reran,
                "exact_outputs": len(produced),
                "exact_outputs_differing_from_dvc_lock": differ,
                "startup_imports": {" ".join(k): v for k, v in cache.items()},
                "other_cores": load.other_cores,
                "steal_cores": load.steal_cores,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
