"""Comparing runs: the experiment opens on its runs, datasets are inputs, one table across experiments."""

import pytest
from stores import copy_migrated  # tests/ is on sys.path

from prunelab import track
from prunelab.cluster.postgres import free_port  # a port nothing listens on
from prunelab.errors import PrunelabError
from prunelab.track import compare


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A new, empty store (a copy of one migrated once: tests/stores.py); prunelab makes its experiment."""
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    copy_migrated(tmp_path / "mlruns" / "mlflow.db")
    from mlflow.tracking import MlflowClient

    return tmp_path, MlflowClient(track.tracking_uri())


def evaluate_run(monkeypatch, experiment, accuracy, params, data):
    monkeypatch.setenv("DVC_EXP_NAME", experiment)
    tags = track.run_tags("evaluate", dataset="toy", model="mlp", method="weight", sparsity=0.9)
    with track.start_run("evaluate", params={}, tags=tags, dataset=(data, "toy", "evaluation")):
        track.log_metrics(
            {
                "test_accuracy": accuracy,
                "oneshot_test_accuracy": accuracy - 0.1,
                "baseline_test_accuracy": 0.95,
                "accuracy_drop": 0.95 - accuracy,
                "sparsity_prunable": 0.9,
                "params": params,
                "nonzero_params": params // 10,
                "compression_ratio": 10.0,
                "param_reduction": 0.0,
            }
        )


def sweep_point(monkeypatch, experiment, method, k, accuracy, seed=0):
    monkeypatch.setenv("DVC_EXP_NAME", experiment)
    with track.start_run(f"sweep {method}", params={}, tags=track.run_tags("sweep", method=method)):
        with track.start_run(
            f"sweep {method} {k}",
            params={},
            nested=True,
            tags=track.run_tags("sweep", method=method, sparsity=k, seed=seed),
        ):
            track.log_metrics({"sparsity": k, "oneshot_test_accuracy": accuracy, "finetuned_test_accuracy": accuracy})


def test_experiment_is_a_model_training_experiment_and_runs_carry_their_dataset(store, monkeypatch, tmp_path):
    root, client = store
    data = root / "dataset.pt"
    data.write_bytes(b"prepared tensors")
    evaluate_run(monkeypatch, "workspace", 0.9, 1000, data)
    experiment = client.get_experiment_by_name("prunelab")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    (run,) = client.search_runs([experiment.experiment_id])
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.name == "toy" and inp.dataset.digest == track.file_digest(data)
    assert str(data) in inp.dataset.source and {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "evaluation"
    data.write_bytes(b"other tensors")  # the digest follows the data
    assert track.file_digest(data) != inp.dataset.digest


def test_an_old_store_gets_the_experiment_kind_tag(store):
    _, client = store
    import mlflow

    mlflow.set_tracking_uri(track.tracking_uri())
    mlflow.create_experiment("prunelab")  # as an older prunelab made it
    track.store._experiment_ids.clear()
    track.init_store()
    assert client.get_experiment_by_name("prunelab").tags["mlflow.experimentKind"] == "custom_model_development"


def test_comparison_table_has_one_row_per_experiment_the_latest_run_counting(store, monkeypatch):
    root, _ = store
    data = root / "dataset.pt"
    data.write_bytes(b"x")
    evaluate_run(monkeypatch, "sparse-90", 0.80, 2000, data)
    evaluate_run(monkeypatch, "sparse-90", 0.85, 2000, data)  # a rerun: it counts
    evaluate_run(monkeypatch, "workspace", 0.95, 2000, data)
    frame = compare.table(track.search_runs())
    assert frame["experiment"].tolist() == ["sparse-90", "workspace"]
    assert frame["test_accuracy"].tolist() == [0.85, 0.95]
    assert frame["params"].tolist() == [2000, 2000] and frame["nonzero_params"].tolist() == [200, 200]
    only = compare.table(track.search_runs(), ["workspace"])
    assert only["experiment"].tolist() == ["workspace"]
    md = compare.markdown(frame)
    assert md.splitlines()[0].startswith("| experiment | dataset | model | method |") and "| sparse-90 |" in md


def test_points_table_has_one_row_per_sweep_point(store, monkeypatch):
    for exp in ("a", "b"):
        for k, acc in ((0.0, 0.95), (0.9, 0.9)):
            sweep_point(monkeypatch, exp, "weight", k, acc)
    frame = compare.table(track.search_runs(), points=True)
    assert list(zip(frame["experiment"], frame["sparsity"])) == [("a", 0.0), ("a", 0.9), ("b", 0.0), ("b", 0.9)]
    assert frame["finetuned_test_accuracy"].tolist() == [0.95, 0.9, 0.95, 0.9]
    sweep_point(monkeypatch, "a", "weight", 0.9, 0.8, seed=1)  # another replicate is a row of its own
    frame = compare.table(track.search_runs(), ["a"], points=True)
    assert list(zip(frame["seed"], frame["sparsity"], frame["finetuned_test_accuracy"])) == [
        ("0", 0.0, 0.95),
        ("0", 0.9, 0.9),
        ("1", 0.9, 0.8),
    ]


def test_bad_names_and_an_empty_store_say_what_to_do(store, monkeypatch):
    root, _ = store
    with pytest.raises(PrunelabError, match=r"no prunelab runs yet: run `uv run dvc repro`"):
        compare.table(track.search_runs())
    data = root / "dataset.pt"
    data.write_bytes(b"x")
    evaluate_run(monkeypatch, "workspace", 0.9, 10, data)
    with pytest.raises(PrunelabError, match=r"no DVC experiment named 'r9' in the MLflow store; known: workspace"):
        compare.table(track.search_runs(), ["r9"])


def test_command_prints_and_writes_csv_and_markdown(store, monkeypatch, capsys):
    root, _ = store
    data = root / "dataset.pt"
    data.write_bytes(b"x")
    evaluate_run(monkeypatch, "workspace", 0.9, 10, data)
    compare.main(["--out", str(root / "reports" / "cmp")])
    out = capsys.readouterr().out
    assert "workspace" in out and "test_accuracy" in out
    assert (root / "reports/cmp.csv").read_text().startswith("experiment,dataset,model,method,sparsity,test_accuracy")
    assert (root / "reports/cmp.md").read_text().startswith("| experiment |")


def test_unreachable_store_is_one_line_in_seconds(monkeypatch):
    """prunelab's patience while a run starts (START_HTTP) is what bounds the wait: MLflow's own
    would retry for minutes. urllib3's backoff sleeps are recorded instead of slept (a closed port
    refuses at once, so they are all the time it would take), and their sum is the bound."""
    import time

    from urllib3.util import Retry

    backoffs: list[float] = []
    monkeypatch.setattr(Retry, "sleep", lambda retry, response=None: backoffs.append(retry.get_backoff_time()))
    for name in track.store.START_HTTP:  # what prunelab sets, not what this shell may have set
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(track.TrackingError, match=rf"tracking server http://127.0.0.1:{port} is unreachable"):
        track.search_runs()
    assert backoffs and sum(backoffs) + time.monotonic() - start < 30
