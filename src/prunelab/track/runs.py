"""MLflow logging: the only module that imports mlflow.

Store: ``sqlite:///<repo root>/mlruns/mlflow.db`` with artifacts under ``<repo root>/mlruns/``.
The repo root comes from DVC_ROOT when set, so queued and temporary experiments log to
the main repository, not to their throw-away copy. MLFLOW_TRACKING_URI overrides the
store and PRUNELAB_MLFLOW_EXPERIMENT the experiment name ("prunelab").

Faults: a run is started before a stage computes anything, with a short HTTP timeout and
few retries (``START_HTTP``), so a store that is down, read-only or locked costs seconds
and no work, and is reported as one line (``TrackingError``). Every run records the host
and process that own it; a stage that finds RUNNING runs of this host whose process is
gone marks them KILLED. A run interrupted by Ctrl-C or SIGTERM ends KILLED, a run whose
stage fails ends FAILED.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prunelab import atomic, paths
from prunelab.errors import PrunelabError

# No network from this project: never send telemetry.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow  # noqa: E402
from mlflow.entities import Metric  # noqa: E402

DEFAULT_EXPERIMENT = "prunelab"
# MLflow's HTTP client while a run starts: ~2 s to give up on a dead server instead of ~4 min
# (its defaults: 7 retries, 120 s timeout). Variables you set yourself win.
START_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
              "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
# MLflow 3 opens an experiment on its GenAI overview unless it is marked as model training
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
# tags that say which process owns a run (see reap_dead_runs)
HOST_TAG, PID_TAG, STARTED_TAG = "prunelab.host", "prunelab.pid", "prunelab.process_start"


class TrackingError(PrunelabError):
    """The tracking store cannot be used: unreachable, read-only, locked or broken."""


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
    with store_errors():
        _experiment_ids[key] = _create_store()
    return _experiment_ids[key]


def _create_store() -> str:
    mlruns = paths.mlruns_dir()
    mlruns.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri())
    with open(mlruns / ".init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        exp = mlflow.get_experiment_by_name(experiment_name())
        if exp is None:
            return mlflow.create_experiment(experiment_name(), artifact_location=(mlruns / "artifacts").as_uri(),
                                            tags=EXPERIMENT_TAGS)
        for key, value in EXPERIMENT_TAGS.items():  # a store made by an older prunelab
            if exp.tags.get(key) != value:
                mlflow.tracking.MlflowClient().set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id


# MLflow's SQL store logs every database error with its traceback before raising it; the
# error is reported once, as one line, by store_errors
_DB_LOGGER = logging.getLogger("mlflow.store.db.utils")


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Defer Ctrl-C and SIGTERM during a store call; they are delivered as soon as it returns.

    An interrupt raised inside a database write leaves MLflow's session broken, and then
    the run could not even be marked KILLED. Masking the signals is not enough: one that
    arrived just before has its Python handler run at the next bytecode, possibly inside
    the write. So the handlers themselves are swapped for one that only records.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)  # raises KeyboardInterrupt, or stage.py's SystemExit for SIGTERM
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), caught[0])


@contextlib.contextmanager
def store_errors(starting: bool = True) -> Iterator[None]:
    """Any failure of the store as one ``TrackingError`` line; while ``starting``, short HTTP patience.

    Signals are held for the duration (``_signals_held``).
    """
    with _signals_held(), _store_errors(starting):
        yield


@contextlib.contextmanager
def _store_errors(starting: bool) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in START_HTTP}
    if starting:
        for k, v in START_HTTP.items():
            os.environ.setdefault(k, v)
    level = _DB_LOGGER.level
    _DB_LOGGER.setLevel(logging.CRITICAL)
    try:
        yield
    except PrunelabError:
        raise
    except Exception as exc:  # noqa: BLE001  (mlflow, SQLAlchemy, requests: whatever the store raised)
        raise TrackingError(describe_failure(exc, tracking_uri())) from None
    finally:
        _DB_LOGGER.setLevel(level)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def describe_failure(exc: BaseException, uri: str) -> str:
    """One line: what is wrong with the store at ``uri`` and what to do about it."""
    chain, seen, first_exc = [], set(), exc
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    text = " ".join(" ".join(chain).split())
    local = f"sqlite:///{paths.mlruns_dir() / 'mlflow.db'}"
    if uri.startswith(("http://", "https://")):
        cause = next((c for c in ("Connection refused", "timed out", "Name or service not known",
                                  "No route to host", "Failed to establish") if c in text), None)
        if cause or "Max retries exceeded" in text:
            return (f"tracking server {uri} is unreachable ({cause or 'no answer'}): start it, or unset "
                    f"MLFLOW_TRACKING_URI to log to the local store {local}")
    if "readonly database" in text or "read-only" in text or "Read-only file system" in text:
        return (f"tracking store {uri} is read-only: make it writable again (e.g. `chattr -i` or `chmod u+w` "
                "on the database file), or set MLFLOW_TRACKING_URI to a writable store")
    if "database is locked" in text:
        return (f"tracking store {uri} is locked by another process: wait for it to finish, "
                "or set MLFLOW_TRACKING_URI to another store")
    if "unable to open database file" in text or "Permission denied" in text:
        return (f"tracking store {uri} cannot be opened (permissions, or a missing folder): fix them, "
                "or set MLFLOW_TRACKING_URI to a store you can write")
    return f"tracking store {uri} failed: {atomic.reason(first_exc)}"


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot; Linux), so a reused PID is not taken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of stat, counted after the command name


def process_tags() -> dict[str, str]:
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), STARTED_TAG: _process_start(pid) or ""}


def _alive(pid: str | None, started: str | None) -> bool:
    if not pid or not pid.isdigit():
        return True  # no owner recorded: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    now = _process_start(int(pid))
    return not (started and now and now != started)


def reap_dead_runs(experiment_id: str) -> list[str]:
    """Mark KILLED every RUNNING run of this host whose process is gone (SIGKILL, power loss); return their names."""
    client = mlflow.tracking.MlflowClient()
    host = socket.gethostname().replace("'", "")
    runs = client.search_runs([experiment_id], max_results=1000,
                              filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'")
    dead = [r for r in runs if not _alive(r.data.tags.get(PID_TAG), r.data.tags.get(STARTED_TAG))]
    for r in dead:
        client.set_terminated(r.info.run_id, "KILLED")
    if dead:
        names = ", ".join(sorted({r.info.run_name or r.info.run_id for r in dead}))
        pids = ", ".join(sorted({r.data.tags[PID_TAG] for r in dead}))
        print(f"tracking: marked {len(dead)} run(s) KILLED whose process (pid {pids}) is gone: {names}",
              file=sys.stderr)
    return [r.info.run_id for r in dead]


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
              nested: bool = False, dataset: tuple[str | Path, str, str] | None = None) -> Iterator[str]:
    """A run that ends FINISHED, FAILED if the block raises, KILLED if it is interrupted; yields its id.

    Starting it checks the store (see the module docstring): call it before computing.
    ``dataset`` = (path, name, context) records the file the run reads (``log_dataset``).
    """
    experiment = init_store()
    with store_errors():
        if not nested:
            reap_dead_runs(experiment)
        run = mlflow.start_run(run_name=run_name, experiment_id=experiment, nested=nested,
                               tags={**tags, **process_tags()})
        try:
            if params:
                mlflow.log_params({k: _param_value(v) for k, v in flatten(params).items()})
            if dataset is not None:
                log_dataset(*dataset)
        except BaseException:
            _end("FAILED")
            raise
    try:
        yield run.info.run_id
    except Exception:
        _end("FAILED")
        raise
    except BaseException:  # KeyboardInterrupt (Ctrl-C), SystemExit (SIGTERM, see stage.py)
        _end("KILLED")
        raise
    with store_errors(starting=False):
        mlflow.end_run("FINISHED")


def _end(status: str) -> None:
    """End the active run while an error or interrupt unwinds: a store that fails now must not
    hide the reason (the run stays RUNNING, and the next stage marks it KILLED)."""
    with contextlib.suppress(Exception), store_errors(starting=False):  # quiet: the reason is already on its way
        mlflow.end_run(status)


def _param_value(value: Any) -> Any:
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else value


def log_metrics(metrics: Mapping[str, float | None], step: int | None = None) -> None:
    """Log the numbers; a None (say, target_sparsity of a threshold-pruned model) is no metric."""
    with store_errors(starting=False):
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None}, step=step)


def log_child(run_name: str, *, params: Mapping[str, Any], tags: Mapping[str, str], values: Mapping[str, Any],
              history: list[Mapping[str, float]] | None = None,
              dataset: tuple[str | Path, str, str] | None = None) -> None:
    """A finished nested run (a sweep point, an IMP level): its numeric ``values``, and per-epoch ``history``."""
    with start_run(run_name, params=params, tags=tags, nested=True, dataset=dataset):
        log_metrics({k: v for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)})
        if history:
            log_history(history)


def log_history(history: list[Mapping[str, float]], prefix: str = "") -> None:
    """Per-epoch metrics in one batch, each at step = epoch."""
    now = int(time.time() * 1000)
    metrics = [Metric(f"{prefix}{k}", float(v), now, int(rec["epoch"]))
               for rec in history for k, v in rec.items() if k != "epoch"]
    _log_batch(metrics)


def _log_batch(metrics: list[Metric]) -> None:
    """Metrics into the active run, 1000 per call (the store's per-call limit)."""
    client = mlflow.tracking.MlflowClient()
    run_id = mlflow.active_run().info.run_id
    with store_errors(starting=False):
        for start in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[start:start + 1000])


def log_artifacts(files: list[str | Path], artifact_path: str | None = None) -> None:
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


def log_dataset(path: str | Path, name: str, context: str = "training") -> None:
    """Record the prepared dataset as an MLflow dataset input of the active run.

    Name (``data.name``), digest (the file's MD5, DVC's hash of it) and source (the file)
    fill the runs table's Dataset column and make the dataset filter work.
    """
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are the local-file source
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(Path(path).resolve()))
    dataset = MetaDataset(source, name=name, digest=file_digest(path))
    with store_errors(starting=False):
        mlflow.log_input(dataset, context=context)


def log_curves(rows: list[Mapping[str, Any]]) -> None:
    """The sweep's curves (``report.curves``: means over seeds) as metric histories:
    ``curve/<method>/<regime>_test_accuracy`` at step = k in tenths of a percent (925 is k = 92.5 %),
    and ``..._std`` beside each with several seeds. MLflow's chart view draws each as accuracy
    against k, and selecting several plot runs overlays their curves."""
    now = int(time.time() * 1000)
    metrics = [Metric(f"curve/{r['method']}/{r['regime']}_test_{what}{suffix}", float(r[what + suffix]), now,
                      round(r["sparsity"] * 1000))
               for r in rows for what in ("accuracy", "loss")
               for suffix in ("", "_std") if suffix == "" or r["seeds"] > 1]
    _log_batch(metrics)


def log_table(rows: list[Mapping[str, Any]], columns: list[str], artifact_file: str) -> None:
    """Rows as an MLflow table artifact (shown as a table in the run's artifacts)."""
    import pandas as pd

    with store_errors(starting=False):
        mlflow.log_table(pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns),
                         artifact_file=artifact_file)


def search_runs(filter_string: str = ""):
    """Every run of the experiment matching ``filter_string``, as MLflow's pandas DataFrame
    (``params.*``, ``metrics.*``, ``tags.*`` columns); None when the store has no such experiment."""
    mlflow.set_tracking_uri(tracking_uri())
    with store_errors():
        exp = mlflow.get_experiment_by_name(experiment_name())
        if exp is None:
            return None
        return mlflow.search_runs([exp.experiment_id], filter_string=filter_string, output_format="pandas",
                                  order_by=["attributes.start_time DESC"])


def log_model(model, name: str, input_example) -> None:
    """Log a PyTorch model in MLflow's format, with a signature from ``input_example``."""
    import mlflow.pytorch
    import torch

    requirements = [f"torch=={torch.__version__.split('+')[0]}"]
    with store_errors(starting=False):
        mlflow.pytorch.log_model(model, name=name, input_example=input_example, pip_requirements=requirements)
