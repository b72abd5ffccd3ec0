"""The launcher: a study's shards fanned out as jobs (Slurm through submitit, or local processes), then gathered.

    python -m prunelab.cluster.launch --hosts 4 [--by seed|method] [--study r1 | -S key=value ...]
        [--executor auto|slurm|local] [--retries 1] [--no-gather] [--work DIR] [--name NAME]

Each job clones the shared git remote at the commit, runs its shard, pushes the experiment
and the run-cache (``jobs.run_shard``) and reports. A job that fails (its host died, a stage
failed) has its RUNNING MLflow runs marked KILLED and its shard rerun in a fresh job, up to
``--retries`` times. Then the study is gathered in a clone of its own: ``dvc pull
--run-cache`` and the whole study's ``dvc exp run``, where only the stages no shard ran
(the figures over every shard) do any work. The commit must be pushed, and the DVC remote
set in the committed .dvc/config: every job reads both from there.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from prunelab import atomic
from prunelab.cluster.jobs import JobError, JobSpec, run_shard
from prunelab.cluster.shards import BY, GATHER_ONLY, Shard, plan
from prunelab.errors import PrunelabError


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _git(*argv: str) -> str:
    out = subprocess.run(["git", *argv], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise PrunelabError(f"`git {' '.join(argv)}` failed: {' '.join(out.stderr.split())}")
    return out.stdout.strip()


def _overrides(args: argparse.Namespace) -> list[str]:
    from prunelab.pipeline import studies

    if args.study and args.study not in studies.STUDIES:
        raise PrunelabError(f"--study {args.study!r} is invalid; allowed: {', '.join(studies.STUDIES)}")
    given = studies.settings(args.study) if args.study else []
    for item in args.set or []:
        if "=" not in item:
            raise PrunelabError(f"-S {item!r} is invalid; allowed: key=value, as `dvc exp run -S` takes it")
    return given + list(args.set or [])


def study_params(commit: str, overrides: list[str]) -> dict:
    """params.yaml at ``commit`` with the ``-S`` overrides applied (values read as YAML, like DVC)."""
    from prunelab.pipeline.studies import apply

    params = yaml.safe_load(_git("show", f"{commit}:params.yaml")) or {}
    values = {}
    for key, text in (o.split("=", 1) for o in overrides):
        try:
            values[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            allowed = "a YAML value, as `dvc exp run -S` takes it"
            raise PrunelabError(f"-S {key}={text} is invalid; allowed: {allowed}") from None
    return apply(params, values)


def _reap(job: str) -> str:
    """Mark KILLED the RUNNING runs of a job given up on; say how many (or why not)."""
    try:
        from prunelab import track

        with track.store_errors():
            killed = track.reap_job(track.init_store(), job, f"launcher: job {job} failed; its shard was rerun")
        return f"{len(killed)} RUNNING run(s) of it marked KILLED"
    except Exception as exc:  # the store down too: the runs' heartbeats stop, and any later stage reaps them
        return f"its runs not marked now ({' '.join(str(exc).split())[:120]})"


def _why(exc: Exception, spec: JobSpec) -> str:
    """One line on why a job gave no report."""
    from submitit.core.utils import UncompletedJobError

    if isinstance(exc, UncompletedJobError):  # nothing came back: the process (or its machine) died
        return f"its process ended without a result (killed, or its host lost); log {spec.folder}.log"
    text = " ".join(str(exc).split())
    marker = text.rfind("JobError: ")  # submitit hands back the job's traceback; its last error is the news
    return text[marker + len("JobError: ") :][-400:] if marker >= 0 else text[-400:]


class Launcher:
    def __init__(self, args: argparse.Namespace, spec: dict) -> None:
        import submitit

        self.args, self.spec = args, spec
        cluster = None if args.executor == "auto" else args.executor
        try:
            self.executor = submitit.AutoExecutor(folder=str(args.work / "submitit"), cluster=cluster)
        except Exception as exc:  # submitit's word for "no such scheduler here"
            raise PrunelabError(f"--executor {args.executor}: {' '.join(str(exc).split())}") from None
        params: dict = {"timeout_min": args.timeout_min, "name": args.name}
        if args.slurm_partition:
            params["slurm_partition"] = args.slurm_partition
        if args.cpus_per_task:
            params["cpus_per_task"] = args.cpus_per_task
        if args.gpus_per_node:
            params["gpus_per_node"] = args.gpus_per_node
        self.executor.update_parameters(**params)
        if self.executor.cluster == "local":  # the jobs share this machine's cores: idle OpenMP threads sleep
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # (stages/_bootstrap.py: no number changes)
        self.reports: dict[str, dict] = {}
        self.failures: list[dict] = []
        self.running: dict = {}

    def _job(self, shard: Shard, attempt: int) -> JobSpec:
        name = f"{self.args.name}-{shard.name}" + (f"-try{attempt}" if attempt > 1 else "")
        folder = self.args.work / "hosts" / name
        return JobSpec(targets=shard.targets, folder=str(folder), name=name, **self.spec)

    def run(self, shards: list[Shard]) -> None:
        """Every shard to completion (the ``first`` ones before the rest), retrying failed jobs."""
        for group in ([s for s in shards if s.first], [s for s in shards if not s.first]):
            running = self.running = {s.name: (s, 1, self._submit(s, 1)) for s in group}
            while running:
                time.sleep(1.0)
                for key, (shard, attempt, job) in list(running.items()):
                    if not job.done():
                        continue
                    del running[key]
                    spec = self._job(shard, attempt)
                    try:
                        report = job.result()
                    except Exception as exc:  # the job's own error, or "no result" when its host died
                        why = _why(exc, spec)
                        self.failures.append({"shard": shard.name, "job": spec.name, "error": why})
                        _say(f"shard {shard.name}: job {spec.name} failed: {why}; {_reap(spec.name)}")
                        if attempt > self.args.retries:
                            raise PrunelabError(
                                f"shard {shard.name} failed {attempt} time(s); see {spec.folder}.log"
                            ) from None
                        running[key] = (shard, attempt + 1, self._submit(shard, attempt + 1))
                        continue
                    self.reports[shard.name] = report
                    _say(
                        f"shard {shard.name}: done on {report['host']} in {report['seconds']:.0f} s; ran "
                        f"{len(report['ran'])} stage(s), restored {len(report['restored'])}; pushed {report['name']}"
                    )

    def _submit(self, shard: Shard, attempt: int):
        spec = self._job(shard, attempt)
        job = self.executor.submit(run_shard, spec)
        _say(f"shard {shard.name}: job {job.job_id} ({self.executor.cluster}) runs {' '.join(shard.targets)}")
        return job

    def cancel(self) -> None:
        """Stop the jobs still running (Ctrl-C): their stages end KILLED, nothing is pushed."""
        for _, _, job in self.running.values():
            job.cancel(check=False)


def gather(args: argparse.Namespace, spec: dict) -> dict:
    """The whole study in a clone of its own, from the shards' run-cache; fails if it had to train."""
    _say("gathering: dvc pull --run-cache, then the whole study's dvc exp run")
    try:
        report = run_shard(JobSpec(targets=(), folder=str(args.work / "gather"), name=args.name, **spec))
    except JobError as exc:
        raise PrunelabError(f"gathering failed: {exc}") from None
    trained = [s for s in report["ran"] if s.split("@")[0] not in GATHER_ONLY]
    _say(f"gathered in {report['seconds']:.0f} s: ran {', '.join(report['ran']) or 'nothing'}; pushed {args.name}")
    if trained:
        raise PrunelabError(
            f"gathering had to run {', '.join(trained)}: no shard pushed their run-cache (another commit or params?)"
        )
    return report


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m prunelab.cluster.launch", description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=2, help="how many jobs share the study (default 2)")
    p.add_argument("--by", default="seed", help=f"what a shard takes: {' | '.join(BY)} (default seed)")
    p.add_argument("--study", help="a reference study's overrides (docs/reference-studies.md)")
    p.add_argument("-S", "--set", action="append", metavar="KEY=VALUE", help="a params override, as dvc exp run -S")
    p.add_argument("--repo", help="the shared git remote the jobs clone (default: this clone's origin)")
    p.add_argument("--commit", default="HEAD", help="the commit every job runs (default HEAD; it must be pushed)")
    p.add_argument("--name", help="the experiments' name prefix (default: the study, or study-COMMIT)")
    p.add_argument("--work", type=Path, help="where jobs clone and log (shared by the hosts; default ~/.cache/...)")
    p.add_argument("--executor", default="auto", choices=("auto", "slurm", "local"), help="auto: Slurm if there")
    p.add_argument("--retries", type=int, default=1, help="reruns of a failed shard, each in a fresh job (default 1)")
    p.add_argument("--no-gather", action="store_true", help="only run and push the shards")
    p.add_argument("--setup", help="a shell command each job runs in its clone first, e.g. 'uv sync --locked'")
    p.add_argument("--timeout-min", type=int, default=24 * 60, help="each job's time limit (default a day)")
    p.add_argument("--slurm-partition")
    p.add_argument("--cpus-per-task", type=int)
    p.add_argument("--gpus-per-node", type=int)
    args = p.parse_args(argv)
    if args.retries < 0:
        raise PrunelabError(f"--retries {args.retries} is invalid; allowed: an integer >= 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    overrides = _overrides(args)
    commit = _git("rev-parse", "--verify", f"{args.commit}^{{commit}}")
    if args.repo is None:
        args.repo = _git("remote", "get-url", "origin")
        _git("fetch", "--quiet", "origin")
        if not _git("branch", "-r", "--contains", commit):
            raise PrunelabError(f"commit {commit[:12]} is not on origin ({args.repo}): git push it first")
    args.name = args.name or args.study or f"study-{commit[:7]}"
    args.work = (args.work or Path.home() / ".cache" / "prunelab" / "cluster" / args.name).resolve()
    if (args.work / "hosts").exists():
        raise PrunelabError(f"--work {args.work} was used before: remove it, or give another --work or --name")
    shards = plan(study_params(commit, overrides), args.hosts, args.by)
    spec = {"repo": args.repo, "commit": commit, "overrides": tuple(overrides), "setup": args.setup}
    launcher = Launcher(args, spec)
    _say(f"study {args.name} at {commit[:12]}: {len(shards)} shard(s) by {args.by}; work in {args.work}")
    start = time.monotonic()
    try:
        launcher.run(shards)
    except PrunelabError:
        launcher.cancel()  # the study cannot complete: the other shards' jobs stop too
        raise
    except KeyboardInterrupt:
        launcher.cancel()
        print("\ninterrupted: the running jobs were cancelled; shards already pushed stay pushed", file=sys.stderr)
        sys.exit(130)
    gathered = None if args.no_gather else gather(args, spec)
    report = {
        "name": args.name,
        "commit": commit,
        "overrides": overrides,
        "executor": launcher.executor.cluster,
        "shards": launcher.reports,
        "failed_jobs": launcher.failures,
        "gathered": gathered,
        "seconds": round(time.monotonic() - start, 1),
    }
    path = atomic.write_json(args.work / "report.json", report)
    _say(f"done in {report['seconds']:.0f} s; report {path}")


if __name__ == "__main__":
    from prunelab import cli

    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    cli.run(main)
