"""The fixed cost of one stage process beyond `import torch`: imports, the MLflow store, run bookkeeping.

Every DVC stage is a fresh python process, so each pays this before and after its work.
The script copies a checkout's src/, stages/_bootstrap.py and params.yaml into a temporary
git repository (its bytecode compiled once, as a stage finds it after its first run) and
times, round by round, each side once per round and each going first in turn so that
drift hits all alike:

(a) ``python -c "import torch"``;
(b) a no-op stage: a stage script like those in stages/ (``_bootstrap``, then
    ``prunelab.pipeline.runner.run``) whose ``main`` imports a stage's pipeline module
    (``--module``, by default the prune stage's: torch and the library), reads params.yaml,
    opens the MLflow store and starts and ends a run with a stage's tags and a params
    section, as a stage does before and after its work; it computes nothing.

``--root A --root B`` times the no-op stages of two checkouts in the same rounds, (b) and
(c): say, the code before a change (``git archive HEAD src stages params.yaml | tar -x -C
/tmp/before``) and the working tree, each run with this script and virtual environment.

Printed: the median of each side, the median of the rounds' differences (stage - bare
import torch: the fixed cost), the no-op stage's phases (from timestamps it writes), the
cores other processes used meanwhile, and the largest imports of one more no-op run under
``python -X importtime``. Each copy's store is created by a warm-up run before the timed
rounds, as in a project that has run any stage.

Usage: uv run python bench/stage_startup.py [--rounds 9] [--module prunelab.pipeline.prune] [--root PATH ...]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from machine_load import MachineLoad  # bench/ is on sys.path: it is the script's folder

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 1.0

NOOP_STAGE = '''"""A stage that does everything a stage does except its work (bench/stage_startup.py)."""

import json
import sys
import time

import _bootstrap  # noqa: F401

from prunelab.pipeline import runner

MARKS = []


def mark():
    MARKS.append(time.time())


def main():
    import importlib

    mark()
    importlib.import_module(sys.argv[1])  # the stage's own imports
    mark()
    from prunelab import config, track

    params = config.load_params()
    track.init_store()
    mark()
    tags = track.run_tags("noop", dataset=params["data"]["name"])
    with track.start_run("noop", params={"prune": params["prune"], "seed": params["seed"]}, tags=tags):
        pass
    mark()


if __name__ == "__main__":
    try:
        runner.run(main, "noop")
    finally:
        with open(sys.argv[2], "w") as fh:
            json.dump(MARKS, fh)
'''

# the no-op stage's timestamps, in order, and what lies between each and the one before
PHASES = (
    "python, _bootstrap, the runner",
    "the stage's module (torch, the library)",
    "params, mlflow imported, the store opened",
    "the run: start, params, tags, end",
    "exit",
)


def make_project(source: Path, dest: Path) -> None:
    shutil.copytree(source / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "stages").mkdir()
    shutil.copy2(source / "stages" / "_bootstrap.py", dest / "stages")
    (dest / "stages" / "noop.py").write_text(NOOP_STAGE, encoding="utf-8")
    shutil.copy2(source / "params.yaml", dest)
    # a stage usually finds its bytecode written by an earlier run; PYTHONDONTWRITEBYTECODE would
    # otherwise make every run here compile the library again
    subprocess.run([sys.executable, "-m", "compileall", "-q", "src", "stages"], cwd=dest, check=True)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "commit.gpgsign=false"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "stage_startup"]):
        subprocess.run(git + cmd, cwd=dest, check=True)


def child_env() -> dict[str, str]:
    drop = ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "PYTHONPATH", "PRUNELAB_MLFLOW_EXPERIMENT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    return env


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds of ``cmd``, and the epoch time it was started at."""
    started, start = time.time(), time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return wall, started


def import_times(stderr: str) -> list[tuple[float, float, int, str]]:
    """(cumulative s, self s, nesting depth, module) for each line of ``-X importtime``'s output."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, cumulative, name = line.split(":", 1)[1].split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        rows.append((int(cumulative) / 1e6, int(own) / 1e6, depth, name.strip()))
    return rows


@dataclass
class Project:
    """One checkout's no-op stage, in its temporary copy, and what its runs measured."""

    root: Path
    copy: Path
    walls: list[float] = field(default_factory=list)
    phases: list[list[float]] = field(default_factory=list)

    def command(self, module: str) -> list[str]:
        return [sys.executable, "stages/noop.py", module, str(self.copy / "marks.json")]

    def run(self, module: str, env: dict[str, str]) -> None:
        wall, started = timed(self.command(module), self.copy, env)
        self.walls.append(wall)
        points = [started, *json.loads((self.copy / "marks.json").read_text()), started + wall]
        self.phases.append([b - a for a, b in itertools.pairwise(points)])


def report(project: Project, bare: list[float], label: str) -> None:
    diffs = [s - b for s, b in zip(project.walls, bare, strict=True)]
    cost = statistics.median(diffs)
    print(f"\n({label}) no-op stage of {project.root}")
    print(f"    median {statistics.median(project.walls):.2f} s (min {min(project.walls):.2f})")
    print(f"    fixed cost beyond import torch, median of the rounds' differences: {cost:.2f} s")
    print(f"    per round: {', '.join(f'{d:.2f}' for d in diffs)}")
    print(f"    goal <= {GOAL_S:.1f} s: {'met' if cost <= GOAL_S else 'NOT met'}")
    print("    median seconds per phase:")
    for n, name in enumerate(PHASES):
        print(f"      {statistics.median(p[n] for p in project.phases):5.2f}  {name}")


def report_imports(stderr: str, top: int, root: Path) -> None:
    rows = import_times(stderr)
    print(f"\nlargest imports of one more no-op stage run of {root} (-X importtime; cumulative s, self s, nested):")
    for cumulative, own, depth, name in sorted(rows, key=lambda r: -r[0])[:top]:
        print(f"  {cumulative:6.2f} {own:6.2f}  {'  ' * depth}{name}")
    by_package: collections.Counter[str] = collections.Counter()
    for _, own, _, name in rows:
        by_package[name.split(".")[0]] += own
    total = sum(by_package.values())
    print(f"the same run's {len(rows)} imports, {total:.2f} s, by top-level package (self times summed):")
    print("  " + ", ".join(f"{name} {own:.2f}" for name, own in by_package.most_common(8)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9, help="timed rounds (default 9)")
    parser.add_argument("--module", default="prunelab.pipeline.prune", help="the pipeline module the stage imports")
    parser.add_argument(
        "--root",
        type=Path,
        action="append",
        help="a project checkout to measure (default: this one); give it twice to compare two in the same rounds",
    )
    parser.add_argument("--top", type=int, default=20, help="how many imports to list (default 20)")
    args = parser.parse_args()

    env = child_env()
    torch_cmd = [sys.executable, "-c", "import torch"]
    bare: list[float] = []
    with tempfile.TemporaryDirectory(prefix="prunelab-startup-") as tmp:
        projects = []
        for n, root in enumerate(args.root or [ROOT]):
            projects.append(Project(root.resolve(), Path(tmp) / str(n)))
            make_project(root.resolve(), projects[-1].copy)
            timed(projects[-1].command(args.module), projects[-1].copy, env)  # creates the store; warms the cache
        timed(torch_cmd, Path(tmp), env)
        sides: list[Project | None] = [None, *projects]  # None: the bare import torch (a)
        with MachineLoad() as load:
            loads_before = os.getloadavg()
            for i in range(args.rounds):
                for side in sides[i % len(sides) :] + sides[: i % len(sides)]:  # each side goes first in turn
                    if side is None:
                        bare.append(timed(torch_cmd, Path(tmp), env)[0])
                    else:
                        side.run(args.module, env)
            loads_after = os.getloadavg()
        last = projects[-1]
        traced = subprocess.run(
            [sys.executable, "-X", "importtime", *last.command(args.module)[1:]],
            cwd=last.copy,
            env=env,
            capture_output=True,
            text=True,
        )

    print(f"stage module: {args.module}; {args.rounds} rounds, the sides alternating; python {sys.version.split()[0]}")
    print(f"(a) python -c 'import torch': median {statistics.median(bare):.2f} s (min {min(bare):.2f})")
    for n, project in enumerate(projects):
        report(project, bare, "abcdefgh"[n + 1])
    print(f"\nduring the rounds, {load.describe()}")
    print(f"load average (1 min) before {loads_before[0]:.2f}, after {loads_after[0]:.2f}")
    report_imports(traced.stderr, args.top, last.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
