"""MLflow logging into a temporary SQLite store, found through DVC_ROOT as in queued experiments."""

import os
import socket
import sqlite3
import subprocess
import sys

import pytest
from stores import copy_migrated  # tests/ is on sys.path

from prunelab import paths, track
from prunelab.cluster.postgres import free_port  # a port nothing listens on


@pytest.fixture
def new_root(tmp_path, monkeypatch):
    """A workspace with no store yet: prunelab creates it (folder, schema, experiment) on first use."""
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PRUNELAB_MLFLOW_EXPERIMENT", raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-test")
    from mlflow.tracking import MlflowClient

    yield tmp_path, lambda: MlflowClient(track.tracking_uri())


@pytest.fixture
def store(new_root):
    """The same with a migrated empty store in place (a copy: no migration per test)."""
    copy_migrated(new_root[0] / "mlruns" / "mlflow.db")
    return new_root


def runs(client):
    exp = client.get_experiment_by_name("prunelab")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def test_store_lives_in_the_main_repo_named_by_dvc_root(new_root):
    root, _ = new_root
    assert paths.mlruns_dir() == root / "mlruns"
    assert track.tracking_uri() == f"sqlite:///{root}/mlruns/mlflow.db"


def test_run_logs_params_tags_history_and_artifacts(new_root):
    root, client = new_root  # the store is created from nothing by the run
    artifact = root / "metrics.json"
    artifact.write_text("{}")
    history = [{"epoch": 1, "val_loss": 0.9}, {"epoch": 2, "val_loss": 0.5}]
    with track.start_run(
        "finetune",
        params={"finetune": {"lr": 0.01, "epochs": 2}},
        tags=track.run_tags("finetune", method="weight", sparsity=0.9),
    ):
        track.log_history(history)
        track.log_metrics({"test_accuracy": 0.97})
        track.log_artifacts([artifact])
    (run,) = runs(client())
    assert run.info.status == "FINISHED"
    assert run.data.params == {"finetune.lr": "0.01", "finetune.epochs": "2"}
    tags = run.data.tags
    assert tags["stage"] == "finetune" and tags["dvc_exp"] == "exp-test"
    assert tags["method"] == "weight" and tags["sparsity"] == "0.9" and "git_commit" in tags
    steps = [(m.step, m.value) for m in client().get_metric_history(run.info.run_id, "val_loss")]
    assert steps == [(1, 0.9), (2, 0.5)]
    assert run.data.metrics["test_accuracy"] == 0.97
    assert [a.path for a in client().list_artifacts(run.info.run_id)] == ["metrics.json"]
    assert (root / "mlruns" / "artifacts").is_dir()


def test_a_failing_stage_marks_its_run_failed(store):
    _, client = store
    with pytest.raises(RuntimeError):
        with track.start_run("train_baseline", params={}, tags=track.run_tags("train_baseline")):
            raise RuntimeError("boom")
    (run,) = runs(client())
    assert run.info.status == "FAILED"


def test_nested_point_runs_belong_to_their_stage_run(store):
    _, client = store
    with track.start_run("sweep weight", params={}, tags=track.run_tags("sweep")) as parent:
        for k in (0.5, 0.9):
            with track.start_run(
                f"sweep weight {k}", params={"sparsity": k}, tags=track.run_tags("sweep", sparsity=k), nested=True
            ):
                track.log_metrics({"oneshot_test_accuracy": 1 - k})
    found = runs(client())
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent]
    assert len(found) == 3 and len(children) == 2
    assert all(r.info.status == "FINISHED" for r in found)


def test_an_interrupted_stage_marks_its_run_and_its_points_killed(store):
    _, client = store
    with pytest.raises(KeyboardInterrupt):
        with track.start_run("sweep weight", params={}, tags=track.run_tags("sweep")):
            with track.start_run("sweep weight 0.5", params={}, tags=track.run_tags("sweep"), nested=True):
                raise KeyboardInterrupt
    assert [r.info.status for r in runs(client())] == ["KILLED", "KILLED"]


def test_runs_record_their_owner_and_orphans_of_dead_processes_are_marked_killed(store, capsys):
    import subprocess
    import sys

    _, client = store
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with track.start_run("train_baseline", params={}, tags=track.run_tags("train_baseline")) as alive_id:
        pass
    experiment = track.init_store()
    orphan = client().create_run(
        experiment, run_name="finetune", tags={**track.process_tags(), track.PID_TAG: dead.stdout.strip()}
    )
    client().create_run(experiment, run_name="prune", tags=track.process_tags())  # this process: alive
    client().create_run(
        experiment,
        run_name="other host",  # not ours to judge
        tags={**track.process_tags(), track.HOST_TAG: "elsewhere", track.PID_TAG: "1"},
    )
    assert client().get_run(alive_id).data.tags[track.PID_TAG] == str(__import__("os").getpid())
    assert track.reap_dead_runs(experiment) == [orphan.info.run_id]
    status = {r.info.run_name: r.info.status for r in runs(client())}
    assert status == {"train_baseline": "FINISHED", "finetune": "KILLED", "prune": "RUNNING", "other host": "RUNNING"}
    reaped = f"marked 1 run(s) KILLED (process {dead.stdout.strip()} of {socket.gethostname()} is gone): finetune"
    assert reaped in capsys.readouterr().err


def failure(monkeypatch, uri: str) -> str:
    """What prunelab says when it opens the store at ``uri`` (the first thing a stage does)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(track.TrackingError) as err:
        with track.start_run("prune", params={}, tags={}):
            pass
    message = str(err.value)
    assert "\n" not in message
    return message


# Each failure below is real: MLflow's own client meets a closed port or SQLite's own refusal,
# so a change in the text MLflow or SQLite give shows here (the stages' view: test_faults).


def test_an_unreachable_server_is_one_line_naming_the_cause(new_root, monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"
    # refused at once, no backoff to sit through (how long prunelab's own patience is: test_compare)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert failure(monkeypatch, uri).startswith(
        f"tracking server {uri} is unreachable (Connection refused): start it, or unset MLFLOW_TRACKING_URI"
    )


def test_a_read_only_store_is_one_line_saying_to_make_it_writable(store, monkeypatch):
    root, _ = store
    # SQLite opens the file read-only (root ignores file modes; test_faults uses chattr +i)
    uri = f"sqlite:///file:{root / 'mlruns' / 'mlflow.db'}?mode=ro&uri=true"
    assert failure(monkeypatch, uri).startswith(f"tracking store {uri} is read-only: make it writable again")


def test_a_locked_store_is_one_line_naming_the_lock(store, monkeypatch):
    root, _ = store
    db = root / "mlruns" / "mlflow.db"
    holder = sqlite3.connect(db)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a write
    try:
        message = failure(monkeypatch, f"sqlite:///{db}?timeout=0.2")  # SQLite's busy wait: 0.2 s, not 5
    finally:
        holder.rollback()
        holder.close()
    assert message.startswith(f"tracking store sqlite:///{db}?timeout=0.2 is locked by another process")


def test_an_unknown_store_failure_is_one_line_with_its_outermost_reason():
    """Anything describe_failure does not recognise: the first exception's reason, on one line."""
    try:
        raise RuntimeError("outer wrapper") from ValueError("something new\nwith detail")
    except RuntimeError as exc:
        message = track.describe_failure(exc, "sqlite:///x.db")
    assert message.startswith("tracking store sqlite:///x.db failed: outer wrapper") and "\n" not in message


def test_ctrl_c_during_a_store_call_is_delivered_after_it():
    import os
    import signal

    reached_the_end = False
    # as in a terminal (a shell's background job starts with SIGINT ignored, and then so does this process)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with track.store._signals_held():
                os.kill(os.getpid(), signal.SIGINT)  # arrives "inside the database write"
                reached_the_end = True
        assert reached_the_end  # the write finished; the interrupt came right after it
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_importing_the_tracking_package_turns_mlflow_telemetry_off_first():
    """In a clean process, with nothing set: mlflow sees telemetry off however prunelab is entered."""
    code = "import os, prunelab.track.reap; print(os.environ['MLFLOW_DISABLE_TELEMETRY'], os.environ['DO_NOT_TRACK'])"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["true", "true"]
