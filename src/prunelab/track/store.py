"""The MLflow store: where it is, creating it once, and its failures as one line.

Store: ``sqlite:///<repo root>/mlruns/mlflow.db`` with artifacts under ``<repo root>/mlruns/``.
The repo root comes from DVC_ROOT when set, so queued and temporary experiments log to
the main repository, not to their throw-away copy. MLFLOW_TRACKING_URI overrides the
store and PRUNELAB_MLFLOW_EXPERIMENT the experiment name ("prunelab").

Faults: while a run starts, MLflow's HTTP client gets a short timeout and few retries
(``START_HTTP``), so a store that is down, read-only or locked costs seconds, and any
failure of the store is reported as one line (``TrackingError``, via ``store_errors``).
Ctrl-C and SIGTERM wait until a store call returns, so they never break MLflow's session.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
from collections.abc import Iterator

import mlflow

from prunelab import atomic, paths
from prunelab.errors import PrunelabError

DEFAULT_EXPERIMENT = "prunelab"
# MLflow's HTTP client while a run starts: ~2 s to give up on a dead server instead of ~4 min
# (its defaults: 7 retries, 120 s timeout). Variables you set yourself win.
START_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
# MLflow 3 opens an experiment on its GenAI overview unless it is marked as model training
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


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
            return mlflow.create_experiment(
                experiment_name(), artifact_location=(mlruns / "artifacts").as_uri(), tags=EXPERIMENT_TAGS
            )
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
    previous = {
        s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)
    }
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
    except Exception as exc:  # mlflow, SQLAlchemy, requests: whatever the store raised
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
        cause = next(
            (
                c
                for c in (
                    "Connection refused",
                    "timed out",
                    "Name or service not known",
                    "No route to host",
                    "Failed to establish",
                )
                if c in text
            ),
            None,
        )
        if cause or "Max retries exceeded" in text:
            return (
                f"tracking server {uri} is unreachable ({cause or 'no answer'}): start it, or unset "
                f"MLFLOW_TRACKING_URI to log to the local store {local}"
            )
    if "readonly database" in text or "read-only" in text or "Read-only file system" in text:
        return (
            f"tracking store {uri} is read-only: make it writable again (e.g. `chattr -i` or `chmod u+w` "
            "on the database file), or set MLFLOW_TRACKING_URI to a writable store"
        )
    if "database is locked" in text:
        return (
            f"tracking store {uri} is locked by another process: wait for it to finish, "
            "or set MLFLOW_TRACKING_URI to another store"
        )
    if "unable to open database file" in text or "Permission denied" in text:
        return (
            f"tracking store {uri} cannot be opened (permissions, or a missing folder): fix them, "
            "or set MLFLOW_TRACKING_URI to a store you can write"
        )
    return f"tracking store {uri} failed: {atomic.reason(first_exc)}"
