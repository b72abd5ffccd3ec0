"""The pieces of a study across hosts that need no server: shards, job commands, outputs put back, store messages."""

import hashlib
import json
import time

import pytest
import yaml

from prunelab import track
from prunelab.cluster import jobs, server, shards
from prunelab.errors import ConfigError, PrunelabError
from prunelab.pipeline.outputs import restore_outputs

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


def test_a_jobs_commands_pull_the_run_cache_run_its_stages_and_push_both():
    spec = jobs.JobSpec("repo", "abc", "/x", "r1-seed-0", ("train_baseline@0",), ("sweep.seeds=[0,1]",))
    pull, run, push = jobs.commands(spec)
    assert pull == ["dvc", "pull", "--run-cache", "--allow-missing"]
    assert run == ["dvc", "exp", "run", "--pull", "-n", "r1-seed-0", "-S", "sweep.seeds=[0,1]", "train_baseline@0"]
    assert push == ["dvc", "exp", "push", "--run-cache", "origin", "r1-seed-0"]


def test_the_stages_that_ran_and_were_restored_are_read_from_dvcs_output():
    out = (
        "Stage 'fetch_data' didn't change, skipping\n"
        "Stage 'train_baseline@0' is cached - skipping run, checking out outputs\n"
        "Running stage 'plot':\n> python stages/plot.py\nRunning stage 'efficiency':\n"
    )
    assert jobs.stages_in(out) == (["plot", "efficiency"], ["fetch_data", "train_baseline@0"])


def test_the_server_binds_this_host_only_unless_told_and_proxies_artifacts():
    argv = server.server_command("postgresql+psycopg://u@db/mlflow", "/srv/artifacts")
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "--serve-artifacts" in argv and argv[argv.index("--artifacts-destination") + 1] == "/srv/artifacts"
    assert "--app-name" not in argv
    assert server.server_command("u", "a", host="0.0.0.0", auth=True)[-2:] == ["--app-name", "basic-auth"]


def test_the_basic_auth_settings_are_readable_by_the_server_only(tmp_path):
    path = server.auth_config(tmp_path, "admin", "a-long-password-1")
    assert path.stat().st_mode & 0o777 == 0o600
    assert "admin_password = a-long-password-1" in path.read_text()


def test_a_refused_login_is_one_line_that_says_where_credentials_go():
    exc = Exception("API request to endpoint /api/2.0/mlflow/runs/create failed with error code 401 != 200")
    line = track.describe_failure(exc, "http://127.0.0.1:5000")
    assert "refused the request: no or wrong credentials (401)" in line
    assert "MLFLOW_TRACKING_USERNAME" in line and "\n" not in line


def test_a_run_is_silent_from_its_last_heartbeat_and_one_without_heartbeats_is_never_judged():
    now = time.time()
    assert track.reap.silent_for({track.HEARTBEAT_TAG: str(int(now) - 700)}, now) == pytest.approx(700, abs=1)
    assert track.reap.silent_for({}, now) is None
    assert track.reap.silent_for({track.HEARTBEAT_TAG: "soon"}, now) is None


def dvc_object(cache, data: bytes) -> str:
    md5 = hashlib.md5(data).hexdigest()
    path = cache / "files" / "md5" / md5[:2] / md5[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return md5


def test_outputs_dvc_removed_come_back_from_its_cache_and_present_ones_are_left(tmp_path):
    cache = tmp_path / ".dvc" / "cache"
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    analytics = false\n")
    model, kept = dvc_object(cache, b"weights"), dvc_object(cache, b"old metrics")
    files = [
        {"relpath": "a.png", "md5": dvc_object(cache, b"png")},
        {"relpath": "sub/b.csv", "md5": dvc_object(cache, b"1,2")},
    ]
    manifest = json.dumps(files).encode()
    folder = hashlib.md5(manifest).hexdigest() + ".dir"
    (cache / "files" / "md5" / folder[:2]).mkdir(parents=True, exist_ok=True)
    (cache / "files" / "md5" / folder[:2] / folder[2:]).write_bytes(manifest)
    lock = {
        "schema": "2.0",
        "stages": {
            "train_baseline@0": {
                "cmd": "python stages/train_baseline.py --seed 0",
                "outs": [
                    {"path": "models/baseline/seed-0.pt", "md5": model},
                    {"path": "metrics/m.json", "md5": kept},
                    {"path": "results/plots", "md5": folder},
                ],
            }
        },
    }
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "m.json").write_bytes(b"new metrics")  # written before the failure: left alone
    argv = ["stages/train_baseline.py", "--seed", "0"]
    assert restore_outputs(tmp_path, ["stages/train_baseline.py", "--seed", "1"]) == []  # another stage's command
    assert restore_outputs(tmp_path, argv) == ["models/baseline/seed-0.pt", "results/plots"]
    assert (tmp_path / "models/baseline/seed-0.pt").read_bytes() == b"weights"
    assert (tmp_path / "results/plots/sub/b.csv").read_bytes() == b"1,2"
    assert (tmp_path / "metrics/m.json").read_bytes() == b"new metrics"
    (cache / "files" / "md5" / model[:2] / model[2:]).unlink()  # `dvc gc` took it: nothing to put back
    (tmp_path / "models/baseline/seed-0.pt").unlink()
    assert restore_outputs(tmp_path, argv) == []


def test_a_cache_elsewhere_is_found_through_dvcs_config(tmp_path):
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config.local").write_text(f"[cache]\n    dir = {tmp_path / 'shared-cache'}\n")
    md5 = dvc_object(tmp_path / "shared-cache", b"data")
    lock = {"stages": {"fetch_data": {"cmd": "python stages/fetch_data.py", "outs": [{"path": "d.pt", "md5": md5}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert restore_outputs(tmp_path, ["stages/fetch_data.py"]) == ["d.pt"]


def test_a_run_whose_heartbeat_stopped_is_marked_killed_from_any_host(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
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
