"""The pieces of a study across hosts that need no server: shards, job commands, outputs put back, store messages.

What DVC and MLflow make of prunelab's commands is asked of DVC and MLflow themselves: the
commands are parsed by their own command-line parsers, DVC's output and cache come from a real
(tiny) DVC repository run in this process, and a refused request from MLflow's own client.
"""

import contextlib
import io
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from stores import copy_migrated, refusing_server  # tests/ is on sys.path

from prunelab import track
from prunelab.cluster import jobs, server, shards
from prunelab.errors import ConfigError, PrunelabError
from prunelab.pipeline.outputs import restore_outputs

# DVC's own code, not prunelab's: its trie library warns inside `dvc exp run` and `dvc commit`
dvc_warnings = pytest.mark.filterwarnings("ignore:_NoneStep.value:DeprecationWarning")

PARAMS = {"seed": 1, "sweep": {"methods": ["weight", "unit", "random"], "seeds": [0, 1, 2]}}


def every_stage(params):
    methods, seeds = params["sweep"]["methods"], params["sweep"]["seeds"]
    return (
        {f"train_baseline@{s}" for s in seeds}
        | {f"sweep@{m}-{s}" for m in methods for s in seeds}
        | set(shards.SINGLE_MODEL)
    )


@pytest.mark.parametrize("by", shards.BY)
@pytest.mark.parametrize("hosts", [1, 2, 3, 5])
def test_the_shards_run_every_training_stage_once_between_them(by, hosts):
    plan = shards.plan(PARAMS, hosts, by)
    targets = [t for s in plan for t in s.targets]
    assert sorted(targets) == sorted(every_stage(PARAMS))  # all of them, none twice
    assert len([s for s in plan if not s.first]) <= hosts
    assert len({s.name for s in plan}) == len(plan)
    for s in plan:  # a shard's sweeps have their baselines in the shard or in one that runs first
        firsts = {t for f in plan if f.first for t in f.targets}
        for t in s.targets:
            if t.startswith("sweep@"):
                assert f"train_baseline@{t.rsplit('-', 1)[1]}" in set(s.targets) | firsts


def test_seed_shards_keep_a_seeds_baseline_and_sweeps_together_and_the_single_model_path_with_seed():
    plan = shards.plan(PARAMS, 2, "seed")
    assert [s.name for s in plan] == ["seed-0+2", "seed-1"]
    assert plan[1].targets == (
        "train_baseline@1",
        "sweep@weight-1",
        "sweep@unit-1",
        "sweep@random-1",
        *shards.SINGLE_MODEL,
    )
    assert not any(s.first for s in plan)


def test_method_shards_share_baselines_trained_first():
    plan = shards.plan(PARAMS, 2, "method")
    assert plan[0] == shards.Shard(
        "baselines", ("train_baseline@0", "train_baseline@1", "train_baseline@2"), first=True
    )
    assert [s.name for s in plan[1:]] == ["method-weight+random", "method-unit"]


@pytest.mark.parametrize(
    ("params", "hosts", "by", "says"),
    [
        (PARAMS, 0, "seed", "--hosts 0 is invalid"),
        (PARAMS, True, "seed", "--hosts True is invalid"),
        (PARAMS, 2, "sparsity", "--by 'sparsity' is invalid; allowed: seed, method"),
        ({"seed": 0, "sweep": {"methods": [], "seeds": [0]}}, 2, "seed", "sweep.methods = []"),
        ({"seed": 3, "sweep": {"methods": ["weight"], "seeds": [0]}}, 2, "seed", "seed = 3 is invalid"),
    ],
)
def test_a_bad_shard_request_is_one_line_naming_it(params, hosts, by, says):
    with pytest.raises((PrunelabError, ConfigError), match=says.replace("[", r"\[").replace("]", r"\]")):
        shards.plan(params, hosts, by)


def dvc_args(argv: list[str]):
    """``argv`` as DVC's own command line parses it (nothing runs)."""
    from dvc.cli import parse_args

    assert argv[0] == "dvc"
    return parse_args(argv[1:])


def test_a_jobs_commands_pull_the_run_cache_run_its_stages_and_push_both():
    from dvc.commands.data_sync import CmdDataPull
    from dvc.commands.experiments.push import CmdExperimentsPush
    from dvc.commands.experiments.run import CmdExperimentsRun

    spec = jobs.JobSpec(
        "repo", "abc", "/x", "r1-seed-0", ("train_baseline@0", "sweep@weight-0"), ("sweep.seeds=[0,1]", "seed=1")
    )
    pull, run, push = (dvc_args(argv) for argv in jobs.commands(spec))
    # everything other shards pushed, their run-cache too; what no one pushed yet is no error
    assert pull.func is CmdDataPull and pull.targets == [] and pull.run_cache and pull.allow_missing
    # the shard's stages, in order, as the named experiment with the study's overrides; a run-cache
    # hit's outputs are pulled from the remote; in this clone's workspace, not queued or in a temp folder
    assert run.func is CmdExperimentsRun and run.targets == list(spec.targets) and run.name == spec.name
    assert run.set_param == list(spec.overrides) and run.pull
    assert not (run.queue or run.tmp_dir or run.run_all or run.force)
    # the experiment to git's origin, its outputs and its run-cache to the DVC remote
    assert push.func is CmdExperimentsPush and push.git_remote == "origin" and push.experiment == [spec.name]
    assert push.run_cache and push.push_cache
    # a job with no targets (gathering) runs the whole pipeline
    gather = dvc_args(jobs.commands(jobs.JobSpec("repo", "abc", "/x", "gather", ()))[1])
    assert gather.targets == [] and gather.set_param == [] and gather.name == "gather"


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)


@contextlib.contextmanager
def dvc_console() -> Iterator[io.StringIO]:
    """What DVC's console logging prints, collected. Its handlers hold the sys.stdout and
    sys.stderr of the moment dvc was first imported (some earlier test's capture, in a test run),
    so they are pointed here for the while; a job's log has both streams (jobs._sh)."""
    import logging

    from dvc.logger import LoggerHandler

    handlers = {h for n in ("dvc", "dvc_objects", "dvc_data") for h in logging.getLogger(n).handlers}
    handlers = [h for h in handlers if isinstance(h, LoggerHandler)]
    assert handlers, "DVC no longer logs to the console through dvc.logger.LoggerHandler"
    buffer, streams = io.StringIO(), [h.stream for h in handlers]
    for h in handlers:
        h.stream = buffer
    try:
        yield buffer
    finally:
        for h, stream in zip(handlers, streams, strict=True):
            h.stream = stream


@dvc_warnings
def test_the_stages_that_ran_and_were_restored_are_read_from_dvcs_output(tmp_path, monkeypatch, capfd):
    """A job's own `dvc exp run` (jobs.commands), run by DVC's CLI in this process on a two-stage
    pipeline of shell commands: first both stages run; with another param one runs and the other
    did not change; with the first param back, the run-cache restores the one."""
    from dvc.cli import main

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "test@example.com")
    git(repo, "config", "user.name", "test")
    monkeypatch.chdir(repo)
    assert main(["init", "-q"]) == 0
    assert main(["remote", "add", "-q", "-d", "origin", str(tmp_path / "remote")]) == 0  # for --pull
    (repo / "params.yaml").write_text("p: 1\n")
    stages = {
        "a": {"cmd": "echo ${p} > a.txt", "params": ["p"], "outs": ["a.txt"]},
        "b": {"cmd": "echo b > b.txt", "outs": ["b.txt"]},
    }
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "pipeline")

    def exp_run(name: str, *overrides: str) -> str:
        argv = jobs.commands(jobs.JobSpec("repo", "abc", str(repo), name, (), overrides))[1]
        capfd.readouterr()
        with dvc_console() as logged:
            assert main(argv[1:]) == 0
        out = capfd.readouterr()
        return out.out + out.err + logged.getvalue()

    assert jobs.stages_in(exp_run("first")) == (["a", "b"], [])
    assert jobs.stages_in(exp_run("second", "p=2")) == (["a"], ["b"])  # b: didn't change
    assert jobs.stages_in(exp_run("third", "p=1")) == ([], ["a", "b"])  # a: is cached (run-cache)


def mlflow_server_params(argv: list[str]) -> dict:
    """``argv`` as `mlflow server`'s own command line parses it (nothing starts)."""
    from mlflow.cli import server as mlflow_server

    assert argv[:2] == ["mlflow", "server"]
    return mlflow_server.make_context("server", argv[2:]).params


def test_the_server_binds_this_host_only_unless_told_and_proxies_artifacts():
    uri = "postgresql+psycopg://u@db/mlflow"
    params = mlflow_server_params(server.server_command(uri, "/srv/artifacts"))
    assert params["host"] == "127.0.0.1" and params["backend_store_uri"] == uri
    assert params["serve_artifacts"] and params["artifacts_destination"] == "/srv/artifacts"
    assert not params["artifacts_only"] and params["app_name"] is None  # no login unless asked
    told = mlflow_server_params(server.server_command(uri, "a", host="0.0.0.0", port=5123, workers=2, auth=True))
    assert told["host"] == "0.0.0.0" and told["port"] == 5123 and int(told["workers"]) == 2
    assert told["app_name"] == "basic-auth"


def test_the_basic_auth_settings_are_readable_by_the_server_only(tmp_path):
    path = server.auth_config(tmp_path, "admin", "a-long-password-1")
    assert path.stat().st_mode & 0o777 == 0o600
    assert "admin_password = a-long-password-1" in path.read_text()


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (401, "refused the request: no or wrong credentials (401). Set MLFLOW_TRACKING_USERNAME and "),
        (403, "refused the request: this user may not write to experiment 'prunelab' (403): ask "),
    ],
)
def test_a_refused_request_is_one_line_that_says_what_to_do(monkeypatch, tmp_path, status, says):
    """MLflow's own client meets a server that refuses it, so the test sees MLflow's real error text
    (the basic-auth server itself: test_cluster_servers)."""
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PRUNELAB_MLFLOW_EXPERIMENT"):
        monkeypatch.delenv(name, raising=False)
    with refusing_server(status) as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        with pytest.raises(track.TrackingError) as err:
            with track.start_run("prune", params={}, tags={}):
                pass
    assert str(err.value).startswith(f"tracking server {uri} {says}") and "\n" not in str(err.value)


def test_a_run_is_silent_from_its_last_heartbeat_and_one_without_heartbeats_is_never_judged():
    now = time.time()
    assert track.reap.silent_for({track.HEARTBEAT_TAG: str(int(now) - 700)}, now) == pytest.approx(700, abs=1)
    assert track.reap.silent_for({}, now) is None
    assert track.reap.silent_for({track.HEARTBEAT_TAG: "soon"}, now) is None


def committed(root: Path, stages: dict, files: dict[str, bytes], cache: str | None = None) -> None:
    """A real DVC repository at ``root`` whose stages wrote ``files`` and were committed by DVC
    (`dvc commit`): dvc.lock and the cache exactly as DVC lays them out; ``cache``: `dvc cache dir --local`."""
    from dvc.cli import main
    from dvc.repo import Repo

    Repo.init(root, no_scm=True).close()
    if cache is not None:
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(root)
            assert main(["cache", "dir", "--local", cache]) == 0
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    with Repo(root) as repo:
        repo.commit(force=True)


TRAIN = {  # as in the project's dvc.yaml: a foreach stage, so dvc.lock names it train_baseline@0
    "train_baseline": {
        "foreach": [0],
        "do": {
            "cmd": "python stages/train_baseline.py --seed ${item}",
            "outs": ["models/baseline/seed-${item}.pt", "metrics/m-${item}.json", "results/plots-${item}"],
        },
    }
}


@dvc_warnings
def test_outputs_dvc_removed_come_back_from_its_cache_and_present_ones_are_left(tmp_path):
    from dvc.repo import Repo

    files = {
        "models/baseline/seed-0.pt": b"weights",
        "metrics/m-0.json": b"old metrics",
        "results/plots-0/a.png": b"png",
        "results/plots-0/sub/b.csv": b"1,2",
    }
    committed(tmp_path, TRAIN, files)
    assert "train_baseline@0" in yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"]
    # what DVC does before it reruns the stage: its outputs go; this one was written again before the failure
    (tmp_path / "models/baseline/seed-0.pt").unlink()
    for name in ("results/plots-0/a.png", "results/plots-0/sub/b.csv"):
        (tmp_path / name).unlink()
    for folder in ("results/plots-0/sub", "results/plots-0"):
        (tmp_path / folder).rmdir()
    (tmp_path / "metrics/m-0.json").write_bytes(b"new metrics")
    argv = ["stages/train_baseline.py", "--seed", "0"]
    assert restore_outputs(tmp_path, ["stages/train_baseline.py", "--seed", "1"]) == []  # another stage's command
    assert sorted(restore_outputs(tmp_path, argv)) == ["models/baseline/seed-0.pt", "results/plots-0"]
    assert {name: (tmp_path / name).read_bytes() for name in files} == {**files, "metrics/m-0.json": b"new metrics"}
    with Repo(tmp_path) as repo:  # `dvc gc` took the model's object: nothing to put back
        lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"]["train_baseline@0"]
        md5 = next(o["md5"] for o in lock["outs"] if o["path"] == "models/baseline/seed-0.pt")
        Path(repo.cache.local.oid_to_path(md5)).unlink()
    (tmp_path / "models/baseline/seed-0.pt").unlink()
    assert restore_outputs(tmp_path, argv) == []


@dvc_warnings
@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_a_cache_elsewhere_is_found_through_dvcs_config(tmp_path, how):
    root, shared = tmp_path / "repo", tmp_path / "shared-cache"
    root.mkdir()
    stage = {"fetch_data": {"cmd": "python stages/fetch_data.py", "outs": ["d.pt"]}}
    committed(root, stage, {"d.pt": b"data"}, cache="../shared-cache" if how == "relative" else str(shared))
    assert [p for p in shared.rglob("*") if p.is_file()]  # DVC put its objects there, not in .dvc/cache
    (root / "d.pt").unlink()
    assert restore_outputs(root, ["stages/fetch_data.py"]) == ["d.pt"]
    assert (root / "d.pt").read_bytes() == b"data"


def test_a_run_whose_heartbeat_stopped_is_marked_killed_from_any_host(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{copy_migrated(tmp_path / 'mlflow.db')}")
    monkeypatch.setenv(track.reap.STALE_ENV, "600")
    exp, client, now = track.init_store(), MlflowClient(), int(time.time())
    ghost = {track.HOST_TAG: "a-host-that-is-gone", track.PID_TAG: "1"}
    silent = client.create_run(exp, tags={**ghost, track.HEARTBEAT_TAG: str(now - 900)})
    beating = client.create_run(exp, tags={**ghost, track.HEARTBEAT_TAG: str(now - 30)})
    older = client.create_run(exp, tags=ghost)  # an older prunelab, or a local store: no heartbeats to judge by
    assert track.reap_dead_runs(exp) == [silent.info.run_id]
    status = {r: client.get_run(r.info.run_id).info.status for r in (silent, beating, older)}
    assert list(status.values()) == ["KILLED", "RUNNING", "RUNNING"]
    assert (
        "no heartbeat from a-host-that-is-gone for 9" in client.get_run(silent.info.run_id).data.tags[track.REAPED_TAG]
    )
