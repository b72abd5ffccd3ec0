"""A stage's MLflow run and what it logs: tags, params, metrics, histories, artifacts, dataset, model.

A run is started before a stage computes anything, and starting it checks the store (see
``store``), so a store that is down, read-only or locked costs seconds and no work. A
stage's run first marks KILLED the runs of dead processes (see ``reap``). A run interrupted
by Ctrl-C or SIGTERM ends KILLED, a run whose stage fails ends FAILED.

In a multi-process stage only rank 0 logs: on the other ranks every function here that
would write to the store does nothing (``start_run`` yields None), so a stage's code is
the same at any world size and it still has one run.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prunelab.parallel import is_writer
from prunelab.track import startup
from prunelab.track.reap import Heartbeat, process_tags, reap_dead_runs
from prunelab.track.store import experiment_name, init_store, is_server, store_errors, tracking_uri


def _writer_only(log):
    """``log`` on rank 0 (or in a plain process); nothing on the other ranks."""

    @functools.wraps(log)
    def logged(*args, **kwargs):
        return log(*args, **kwargs) if is_writer() else None

    return logged


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def run_tags(stage: str, **extra: Any) -> dict[str, str]:
    commit = git_commit()
    tags = {
        "stage": stage,
        "dvc_exp": os.environ.get("DVC_EXP_NAME", "workspace"),
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
    }
    tags.update({k: str(v) for k, v in extra.items() if v is not None})
    return tags


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


@contextlib.contextmanager
def start_run(
    run_name: str,
    *,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    nested: bool = False,
    dataset: tuple[str | Path, str, str] | None = None,
) -> Iterator[str | None]:
    """A run that ends FINISHED, FAILED if the block raises, KILLED if it is interrupted; yields its id.

    Starting it checks the store (see the module docstring): call it before computing.
    ``dataset`` = (path, name, context) records the file the run reads (``log_dataset``).
    On ranks other than 0 there is no run: it yields None.
    """
    if not is_writer():
        startup.release()
        yield None
        return
    import mlflow  # in each function that uses it: the other ranks never pay its import (about 1 s)

    experiment = init_store()
    beats = not nested and is_server(tracking_uri())  # other hosts judge from it whether this one is alive
    with store_errors():
        if not nested:
            reap_dead_runs(experiment)
        run = mlflow.start_run(
            run_name=run_name, experiment_id=experiment, nested=nested, tags={**tags, **process_tags(beats)}
        )
        try:
            if params:
                flat = flatten(params)  # a list is logged as its items joined by commas
                mlflow.log_params(
                    {k: ",".join(map(str, v)) if isinstance(v, list | tuple) else v for k, v in flat.items()}
                )
            if dataset is not None:
                log_dataset(*dataset)
        except BaseException:
            _end("FAILED")
            raise
    startup.release()  # the stage's imports are done: its work starts here
    heartbeat = Heartbeat(run.info.run_id).start() if beats else None
    try:
        yield run.info.run_id
    except Exception:
        _end("FAILED")
        raise
    except BaseException:  # KeyboardInterrupt (Ctrl-C), SystemExit (SIGTERM, see stage.py)
        _end("KILLED")
        raise
    finally:
        if heartbeat is not None:
            heartbeat.stop()
    with store_errors(starting=False):
        mlflow.end_run("FINISHED")


def _end(status: str) -> None:
    """End the active run while an error or interrupt unwinds: a store that fails now must not
    hide the reason (the run stays RUNNING, and the next stage marks it KILLED)."""
    import mlflow

    with contextlib.suppress(Exception), store_errors(starting=False):  # quiet: the reason is already on its way
        mlflow.end_run(status)


@_writer_only
def log_metrics(metrics: Mapping[str, float | None], step: int | None = None) -> None:
    """Log the numbers; a None (say, target_sparsity of a threshold-pruned model) is no metric."""
    import mlflow

    with store_errors(starting=False):
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None}, step=step)


@_writer_only
def log_child(
    run_name: str,
    *,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    values: Mapping[str, Any],
    history: list[Mapping[str, float]] | None = None,
    dataset: tuple[str | Path, str, str] | None = None,
) -> None:
    """A finished nested run (a sweep point, an IMP level): its numeric ``values``, and per-epoch ``history``."""
    with start_run(run_name, params=params, tags=tags, nested=True, dataset=dataset):
        log_metrics({k: v for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)})
        if history:
            log_history(history)


@_writer_only
def log_history(history: list[Mapping[str, float]], prefix: str = "") -> None:
    """Per-epoch metrics in one batch, each at step = epoch."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(f"{prefix}{k}", float(v), now, int(rec["epoch"]))
        for rec in history
        for k, v in rec.items()
        if k != "epoch"
    ]
    _log_batch(metrics)


def _log_batch(metrics: list) -> None:
    """mlflow Metrics into the active run, 1000 per call (the store's per-call limit)."""
    import mlflow

    client = mlflow.tracking.MlflowClient()
    run_id = mlflow.active_run().info.run_id
    with store_errors(starting=False):
        for start in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[start : start + 1000])


@_writer_only
def log_artifacts(files: list[str | Path], artifact_path: str | None = None) -> None:
    import mlflow

    with store_errors(starting=False):
        for f in files:
            if Path(f).exists():
                mlflow.log_artifact(str(f), artifact_path=artifact_path)


_digests: dict[tuple[str, float, int], str] = {}


def file_digest(path: str | Path) -> str:
    """The MD5 of a file, as DVC records it in dvc.lock (so the digest changes exactly when the data does)."""
    import hashlib

    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_mtime, stat.st_size)
    if key not in _digests:
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _digests[key] = digest.hexdigest()
    return _digests[key]


@_writer_only
def log_dataset(path: str | Path, name: str, context: str = "training") -> None:
    """Record the prepared dataset as an MLflow dataset input of the active run.

    Name (``data.name``), digest (the file's MD5, DVC's hash of it) and source (the file)
    fill the runs table's Dataset column and make the dataset filter work.
    """
    import warnings

    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are the local-file source
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(Path(path).resolve()))
    dataset = MetaDataset(source, name=name, digest=file_digest(path))
    with store_errors(starting=False):
        mlflow.log_input(dataset, context=context)


@_writer_only
def log_curves(rows: list[Mapping[str, Any]]) -> None:
    """The sweep's curves (``report.curves``: means over seeds) as metric histories:
    ``curve/<method>/<regime>_test_accuracy`` at step = k in tenths of a percent (925 is k = 92.5 %),
    and ``..._std`` beside each with several seeds. MLflow's chart view draws each as accuracy
    against k, and selecting several plot runs overlays their curves."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(
            f"curve/{r['method']}/{r['regime']}_test_{what}{suffix}",
            float(r[what + suffix]),
            now,
            round(r["sparsity"] * 1000),
        )
        for r in rows
        for what in ("accuracy", "loss")
        for suffix in ("", "_std")
        if suffix == "" or r["seeds"] > 1
    ]
    _log_batch(metrics)


@_writer_only
def log_table(rows: list[Mapping[str, Any]], columns: list[str], artifact_file: str) -> None:
    """Rows as an MLflow table artifact (shown as a table in the run's artifacts)."""
    import mlflow
    import pandas as pd

    with store_errors(starting=False):
        mlflow.log_table(
            pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns), artifact_file=artifact_file
        )


def search_runs(filter_string: str = ""):
    """Every run of the experiment matching ``filter_string``, as MLflow's pandas DataFrame
    (``params.*``, ``metrics.*``, ``tags.*`` columns); None when the store has no such experiment."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    with store_errors():
        exp = mlflow.get_experiment_by_name(experiment_name())
        if exp is None:
            return None
        return mlflow.search_runs(
            [exp.experiment_id],
            filter_string=filter_string,
            output_format="pandas",
            order_by=["attributes.start_time DESC"],
        )


@_writer_only
def log_model(model, name: str, input_example) -> None:
    """Log a PyTorch model in MLflow's format, with a signature from ``input_example``."""
    import mlflow.pytorch
    import torch

    requirements = [f"torch=={torch.__version__.split('+')[0]}"]
    with store_errors(starting=False):
        mlflow.pytorch.log_model(model, name=name, input_example=input_example, pip_requirements=requirements)
