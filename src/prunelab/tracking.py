"""MLflow logging: the only module that imports mlflow.

Store: ``sqlite:///<repo root>/mlruns/mlflow.db`` with artifacts under ``<repo root>/mlruns/``.
The repo root comes from DVC_ROOT when set, so queued and temporary experiments log to
the main repository, not to their throw-away copy. MLFLOW_TRACKING_URI overrides the
store and PRUNELAB_MLFLOW_EXPERIMENT the experiment name ("prunelab").
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prunelab import paths

# No network from this project: never send telemetry.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow  # noqa: E402
from mlflow.entities import Metric  # noqa: E402

DEFAULT_EXPERIMENT = "prunelab"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{paths.mlruns_dir() / 'mlflow.db'}"


def experiment_name() -> str:
    return os.environ.get("PRUNELAB_MLFLOW_EXPERIMENT", DEFAULT_EXPERIMENT)


_experiment_ids: dict[tuple[str, str], str] = {}


def init_store() -> str:
    """Create the store and the experiment once, under a file lock; return the experiment id.

    Two queue workers starting at once would otherwise race the SQLite schema migration.
    """
    key = (tracking_uri(), experiment_name())
    if key in _experiment_ids:
        mlflow.set_tracking_uri(key[0])
        return _experiment_ids[key]
    _experiment_ids[key] = _create_store()
    return _experiment_ids[key]


def _create_store() -> str:
    mlruns = paths.mlruns_dir()
    mlruns.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri())
    with open(mlruns / ".init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        exp = mlflow.get_experiment_by_name(experiment_name())
        if exp is not None:
            return exp.experiment_id
        return mlflow.create_experiment(experiment_name(), artifact_location=(mlruns / "artifacts").as_uri())


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
def start_run(run_name: str, *, params: Mapping[str, Any], tags: Mapping[str, str],
              nested: bool = False) -> Iterator[str]:
    """A run that ends FINISHED, or FAILED if the block raises; yields its run id."""
    with mlflow.start_run(run_name=run_name, experiment_id=init_store(), nested=nested,
                          tags=dict(tags)) as run:
        if params:
            mlflow.log_params({k: _param_value(v) for k, v in flatten(params).items()})
        yield run.info.run_id


def _param_value(value: Any) -> Any:
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else value


def log_metrics(metrics: Mapping[str, float | None], step: int | None = None) -> None:
    """Log the numbers; a None (say, target_sparsity of a threshold-pruned model) is no metric."""
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None}, step=step)


def log_history(history: list[Mapping[str, float]], prefix: str = "") -> None:
    """Per-epoch metrics in one batch, each at step = epoch."""
    now = int(time.time() * 1000)
    metrics = [Metric(f"{prefix}{k}", float(v), now, int(rec["epoch"]))
               for rec in history for k, v in rec.items() if k != "epoch"]
    client = mlflow.tracking.MlflowClient()
    run_id = mlflow.active_run().info.run_id
    for start in range(0, len(metrics), 1000):  # the store's per-call limit
        client.log_batch(run_id, metrics=metrics[start:start + 1000])


def log_artifacts(files: list[str | Path], artifact_path: str | None = None) -> None:
    for f in files:
        if Path(f).exists():
            mlflow.log_artifact(str(f), artifact_path=artifact_path)


def log_model(model, name: str, input_example) -> None:
    """Log a PyTorch model in MLflow's format, with a signature from ``input_example``."""
    import mlflow.pytorch
    import torch

    requirements = [f"torch=={torch.__version__.split('+')[0]}"]
    mlflow.pytorch.log_model(model, name=name, input_example=input_example,
                             pip_requirements=requirements)
