"""One study run sharded over two local hosts against the same study on one host.

A throw-away PostgreSQL and an ``mlflow server`` (2 workers, proxied artifacts) start in a
temporary folder under /tmp; every case logs there. Each case gets a study repository of
its own: a copy of this working tree (no built outputs; uncommitted edits count) with tiny
but real params, committed and pushed to a fresh bare git origin, its committed .dvc/config
pointing at a fresh local-folder DVC remote. A fresh origin and remote per case matter:
with shared ones the second case would restore every stage from the first's run-cache.
Then ``python -m prunelab.cluster.launch --executor local --work DIR --name NAME`` runs
in the clone, ``--hosts 1`` ("1 host") or ``--hosts 2 --by seed`` ("2 hosts": one job per
seed, each a clone of its own running its seeds' baselines and sweeps, seed 0's also the
single-model path), then the gathering clone, which should run only plot and efficiency.
``--repeats`` rounds, each with both cases and new repositories, alternating which goes first.

Per case: the launcher command's wall time (shards and gathering), when the last shard
ended (report.json: the launcher's seconds minus the gathering's) and the slowest shard's
own seconds, the MLflow runs the study logged to the server (``dvc_exp`` the case's name
or a shard's ``NAME-...``; nested sweep points included; how many FINISHED) and runs per
wall minute, the stages each part ran and restored. The ratio is 2 hosts / 1 host wall time.

On this 2-core machine the two "hosts" are processes sharing the same 2 cores (each stage
trains with every core's threads), so little speed-up is expected: what two shards can
overlap is mostly the stages' start-up (python, torch, MLflow), not training. The figure is
the launcher's overhead and the sharding's correctness here, not what separate machines give.
Load: os.getloadavg() before and after, and the cores other processes used
(``machine_load.py``). The tracking server's processes are not reaped by this script while
it measures (PostgreSQL is a daemon; ``mlflow server`` and its workers end after), so their
CPU time, read from /proc, is given apart and taken out of the "other" figure.

Usage: python bench/cluster.py [--repeats 1] [--seeds 0 1] [--methods weight unit] [--epochs 3]
       [--finetune-epochs 1] [--sparsities 0.5 0.8 0.9] [--keep] [--json PATH]   # about 4 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
OUT = ROOT / "bench" / "out" / "cluster.json"
# top-level paths that are built or local state, not source: the study's copy gets none of them
GENERATED = {".git", ".venv", "mlruns", "models", "metrics", "results", "dvc.lock", ".pytest_cache", ".ruff_cache"}
CASES = {1: ["--hosts", "1"], 2: ["--hosts", "2", "--by", "seed"]}


def environment(**extra: str) -> dict[str, str]:
    drop = ("DVC_ROOT", "DVC_EXP_NAME", "MLFLOW_TRACKING_URI", "PRUNELAB_JOB")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost")
    env.update(GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@localhost", DVC_NO_ANALYTICS="1")
    env.update(MLFLOW_DISABLE_TELEMETRY="true", PRUNELAB_TIMING="quick", TQDM_DISABLE="1")
    return env | extra


def sh(cwd: Path, *argv: str) -> None:
    out = subprocess.run(argv, cwd=cwd, env=environment(), capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"`{' '.join(argv)}` exited {out.returncode}: {(out.stderr or out.stdout)[-1500:]}")


def study_params(args: argparse.Namespace) -> dict[str, dict]:
    sweep = dict(methods=args.methods, seeds=args.seeds, sparsities=args.sparsities)
    return {
        "model": {"hidden": args.hidden},
        "train": {"epochs": args.epochs},
        "finetune": {"epochs": args.finetune_epochs},
        "sweep": sweep | {"finetune_epochs": args.finetune_epochs},
    }


def make_study(root: Path, params: dict[str, dict], seed: int) -> Path:
    """root/workspace: the tree with ``params``, committed, pushed to root/origin.git; DVC remote root/dvc-remote."""

    def ignore(folder: str, names: list[str]) -> list[str]:
        here = Path(folder)
        skip = {"__pycache__"} | (GENERATED if here == ROOT else set())
        skip |= {"tmp", "cache"} if here == ROOT / ".dvc" else set()
        skip |= {"out"} if here == ROOT / "bench" else set()
        return [n for n in names if n in skip or (here == ROOT / "data" and n != "local")]

    origin, remote, clone = root / "origin.git", root / "dvc-remote", root / "workspace"
    remote.mkdir(parents=True)
    shutil.copytree(ROOT, clone, ignore=ignore)
    values = yaml.safe_load((clone / "params.yaml").read_text())
    for section, changes in params.items():
        values[section].update(changes)
    values["seed"] = seed  # the single-model path's replicate: one of sweep.seeds
    (clone / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    sh(root, "git", "init", "-q", "--bare", "--initial-branch=main", str(origin))
    sh(clone, "git", "init", "-q", "--initial-branch=main")
    sh(clone, "git", "add", "-A")
    sh(clone, "git", "commit", "-qm", "bench study")
    sh(clone, "dvc", "remote", "add", "-d", "shared", str(remote))
    sh(clone, "git", "commit", "-qam", "the shared DVC remote")
    sh(clone, "git", "remote", "add", "origin", str(origin))
    sh(clone, "git", "push", "-q", "origin", "HEAD:main")
    sh(clone, "git", "fetch", "-q", "origin")
    return clone


def all_runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    runs, token = [], None
    while ids:
        page = client.search_runs(ids, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    return runs


def stop_launcher(proc: subprocess.Popen) -> None:
    """Ctrl-C or an error here: the launcher cancels its jobs on SIGINT; killed if it does not end."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_case(hosts: int, rnd: int, folder: Path, params: dict, args: argparse.Namespace, uri: str) -> dict:
    name = f"h{hosts}-r{rnd + 1}"
    root = folder / name
    clone = make_study(root, params, args.seeds[0])
    work, log = root / "work", root / "launcher.log"
    cmd = [sys.executable, "-m", "prunelab.cluster.launch", *CASES[hosts], "--executor", "local"]
    cmd += ["--work", str(work), "--name", name]
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=clone, env=environment(MLFLOW_TRACKING_URI=uri), stdout=fh, stderr=fh)
        try:
            code = proc.wait()
        except BaseException:
            stop_launcher(proc)
            raise
    wall = time.perf_counter() - start
    if code:
        raise RuntimeError(f"case {name}: the launcher exited {code}; log {log}:\n{log.read_text()[-3000:]}")
    report = json.loads((work / "report.json").read_text())
    gathered, shards = report["gathered"], report["shards"]
    mine = [r for r in all_runs(uri) if (e := r.data.tags.get("dvc_exp", "")) == name or e.startswith(f"{name}-")]
    case = {
        "hosts": hosts,
        "round": rnd + 1,
        "name": name,
        "wall_s": wall,
        "launcher_s": report["seconds"],
        "shards_end_s": report["seconds"] - gathered["seconds"],
        "slowest_shard_s": max(s["seconds"] for s in shards.values()),
        "gather_s": gathered["seconds"],
        "runs": len(mine),
        "nested_runs": sum("mlflow.parentRunId" in r.data.tags for r in mine),
        "finished_runs": sum(r.info.status == "FINISHED" for r in mine),
        "runs_per_min": len(mine) / (wall / 60),
        "shards": {k: {f: s[f] for f in ("name", "ran", "restored", "seconds")} for k, s in shards.items()},
        "gather_ran": gathered["ran"],
        "gather_restored": len(gathered["restored"]),
        "failed_jobs": report["failed_jobs"],
    }
    ran = sum(len(s["ran"]) for s in shards.values())
    print(
        f"  round {rnd + 1} {hosts} host(s): {wall:.1f} s, last shard ended at {case['shards_end_s']:.1f} s; "
        f"shards ran {ran} stage(s); gather ran {', '.join(gathered['ran']) or 'nothing'}; {len(mine)} MLflow runs"
    )
    return case


def cpu_seconds(select) -> float:
    """CPU seconds of the running processes ``select(pid, ppid, pgid)`` picks, with their children already reaped."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if select(int(stat.parent.name), int(fields[1]), int(fields[2])):
            total += sum(int(x) for x in fields[11:15]) / tick  # utime, stime, cutime, cstime
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="rounds, each both cases (order alternates)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--methods", nargs="+", default=["weight", "unit"])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8, 0.9])
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--epochs", type=int, default=3, help="train.epochs")
    parser.add_argument("--finetune-epochs", type=int, default=1, help="finetune.epochs and sweep.finetune_epochs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (repositories, logs)")
    parser.add_argument("--json", type=Path, default=OUT)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    from machine_load import MachineLoad  # bench/ is on sys.path: it is the script's folder

    from prunelab.cluster.postgres import LocalPostgres
    from prunelab.cluster.server import TrackingServer

    params = study_params(args)
    cores = len(os.sched_getaffinity(0))
    load_before = os.getloadavg()
    print(f"{cores} cores; load {' '.join(f'{x:.2f}' for x in load_before)}; params {json.dumps(params)}")
    folder = Path(tempfile.mkdtemp(prefix="prunelab-cluster-"))  # under /tmp: the postgres user must reach it
    folder.chmod(0o755)
    cases: dict[int, list[dict]] = {1: [], 2: []}
    db = server = None
    ok = False
    try:
        start = time.perf_counter()
        with MachineLoad() as load:
            db = LocalPostgres(folder / "pg").start()
            db.create_database("mlflow")
            server = TrackingServer(folder / "server", db.uri("mlflow"), workers=2).start()
            print(f"tracking server {server.uri} (PostgreSQL on port {db.port}); work in {folder}")
            for rnd in range(args.repeats):
                for hosts in (1, 2) if rnd % 2 == 0 else (2, 1):
                    cases[hosts].append(run_case(hosts, rnd, folder, params, args, server.uri))
            master = int((db.data / "postmaster.pid").read_text().split()[0])  # backends: its children
            pg_seconds = cpu_seconds(lambda pid, ppid, pgid: master in (pid, ppid))
            srv_seconds = cpu_seconds(lambda pid, ppid, pgid: pgid == server.proc.pid)  # its own session
        wall = time.perf_counter() - start
        ok = True
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.stop()
        if db is not None:
            db.stop()
        if args.keep or not ok:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    load_after = os.getloadavg()
    result = {"cores": cores, "params": params, "loadavg_before": load_before, "loadavg_after": load_after}
    result |= {"other_cores_with_servers": load.other_cores, "steal_cores": load.steal_cores}
    result |= {"postgres_cores": pg_seconds / wall, "mlflow_server_cores": srv_seconds / wall}
    result["other_cores"] = max(load.other_cores - (pg_seconds + srv_seconds) / wall, 0.0)
    report(cases, result)
    loads = " ".join(f"{x:.2f}" for x in load_before), " ".join(f"{x:.2f}" for x in load_after)
    print(f"\nload average before {loads[0]}, after {loads[1]}; while running: {load.describe()}")
    servers = f"PostgreSQL {result['postgres_cores']:.2f}, mlflow server {result['mlflow_server_cores']:.2f}"
    print(f"of those other cores: {servers}; the rest {result['other_cores']:.2f}")
    result["args"] = {**vars(args), "json": str(args.json)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=str))
    print(f"written {args.json}")
    return 0


def report(cases: dict[int, list[dict]], result: dict) -> None:
    heads = ["case", "round", "wall s", "last shard s", "slowest shard s", "gather s", "runs", "nested", "finished"]
    print("\n" + " ".join(f"{h:>{max(len(h), 7)}}" for h in heads) + "  runs/min  gather ran")
    for hosts in (1, 2):
        for c in cases[hosts]:
            values = [f"{hosts} host" + "s" * (hosts > 1), c["round"], f"{c['wall_s']:.1f}", f"{c['shards_end_s']:.1f}"]
            values += [f"{c['slowest_shard_s']:.1f}", f"{c['gather_s']:.1f}", c["runs"], c["nested_runs"]]
            values += [c["finished_runs"]]
            line = " ".join(f"{v:>{max(len(h), 7)}}" for v, h in zip(values, heads))
            print(f"{line}  {c['runs_per_min']:>8.1f}  {', '.join(c['gather_ran'])}")
    median = {h: statistics.median(c["wall_s"] for c in cases[h]) for h in (1, 2)}
    per_round = [b["wall_s"] / a["wall_s"] for a, b in zip(cases[1], cases[2])]
    each = ", ".join(f"{x:.2f}" for x in per_round)
    print(f"wall time 2 hosts / 1 host: {median[2] / median[1]:.2f} (per round {each})")
    result |= {"cases": {str(h): cases[h] for h in (1, 2)}, "median_wall_s": {str(h): median[h] for h in (1, 2)}}
    result |= {"ratio_2_over_1": median[2] / median[1], "ratio_per_round": per_round}


if __name__ == "__main__":
    sys.exit(main())
