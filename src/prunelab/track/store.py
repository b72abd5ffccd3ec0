"""The MLflow store: where it is, creating it once, and its failures as one line.

Store: ``sqlite:///<repo root>/mlruns/mlflow.db`` with artifacts under ``<repo root>/mlruns/``.
The repo root comes from DVC_ROOT when set, so queued and temporary experiments log to
the main repository, not to their throw-away copy. MLFLOW_TRACKING_URI overrides the
store and PRUNELAB_MLFLOW_EXPERIMENT the experiment name ("prunelab").

A shared tracking server (``MLFLOW_TRACKING_URI=http://...``, see ``prunelab.cluster.server``)
keeps the artifacts itself (proxied), and its experiment is created race-free: many
workers starting at once each create-or-get it, a duplicate-key refusal meaning another
one won (``_get_or_create``).

Faults: while a run starts, MLflow's HTTP client gets a short timeout and few retries
(``START_HTTP``), so a store that is down, read-only or locked costs seconds; during a
stage it retries for about 30 s (``STAGE_HTTP``), so a server restart loses nothing and a
longer outage fails the stage. Any failure of the store is reported as one line
(``TrackingError``, via ``store_errors``), a refused login included. Ctrl-C and SIGTERM
wait until a store call returns, so they never break MLflow's session.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import time
from collections.abc import Iterator

from prunelab import atomic, paths
from prunelab.errors import PrunelabError

DEFAULT_EXPERIMENT = "prunelab"
# MLflow's HTTP client while a run starts: ~6 s to give up on a dead server instead of ~4 min
# (its defaults: 7 retries, 120 s timeout). urllib3 waits 0, 2, 4 ... s between tries.
# Variables you set yourself win.
START_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
# ...and once the stage works: 0 + 2 + 4 + 8 + 16 s of retries ride out a server restart (about
# 15 s here) without losing a metric; a longer outage fails the stage instead of hanging it
STAGE_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
# MLflow 3 opens an experiment on its GenAI overview unless it is marked as model training
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


class TrackingError(PrunelabError):
    """The tracking store cannot be used: unreachable, read-only, locked or broken."""


def local_uri() -> str:
    """The default store: SQLite in the workspace's mlruns/."""
    return f"sqlite:///{paths.mlruns_dir() / 'mlflow.db'}"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or local_uri()


def is_server(uri: str) -> bool:
    """A tracking server that other hosts share (it keeps the artifacts, and runs send heartbeats)."""
    return uri.startswith(("http://", "https://"))


def experiment_name() -> str:
    return os.environ.get("PRUNELAB_MLFLOW_EXPERIMENT", DEFAULT_EXPERIMENT)


_experiment_ids: dict[tuple[str, str], str] = {}


def init_store() -> str:
    """Create the store and the experiment once, under a file lock; return the experiment id.

    Two queue workers starting at once would otherwise race the SQLite schema migration.
    """
    import mlflow  # about a second: paid by the process that logs, when it starts its run

    key = (tracking_uri(), experiment_name())
    if key in _experiment_ids:
        mlflow.set_tracking_uri(key[0])
        return _experiment_ids[key]
    with store_errors():
        _experiment_ids[key] = _create_store()
    return _experiment_ids[key]


def _create_store() -> str:
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if is_server(uri):  # the server keeps the artifacts (proxied) and its database serialises the creation
        return _get_or_create(artifact_location=None)
    mlruns = paths.mlruns_dir()
    mlruns.mkdir(parents=True, exist_ok=True)
    with open(mlruns / ".init.lock", "w") as lock:  # SQLite's schema migration is not safe to race
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _get_or_create(artifact_location=(mlruns / "artifacts").as_uri())


def _already_exists(exc: Exception) -> bool:
    text = str(exc)
    return getattr(exc, "error_code", "") == "RESOURCE_ALREADY_EXISTS" or any(
        s in text for s in ("RESOURCE_ALREADY_EXISTS", "already exists", "duplicate key", "UniqueViolation")
    )


def _get_or_create(artifact_location: str | None, tries: int = 5) -> str:
    """The experiment's id, creating it if no one has; a worker that loses the race reads the winner's."""
    import mlflow

    name = experiment_name()
    for attempt in range(tries):
        exp = mlflow.get_experiment_by_name(name)
        if exp is not None:
            for key, value in EXPERIMENT_TAGS.items():  # a store made by an older prunelab
                if exp.tags.get(key) != value:
                    mlflow.tracking.MlflowClient().set_experiment_tag(exp.experiment_id, key, value)
            return exp.experiment_id
        try:
            return mlflow.create_experiment(name, artifact_location=artifact_location, tags=EXPERIMENT_TAGS)
        except Exception as exc:
            if not _already_exists(exc) or attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))  # created by another worker, maybe not yet visible to us
    raise AssertionError("unreachable")


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
    for k, v in (START_HTTP if starting else STAGE_HTTP).items():
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
    local = local_uri()
    if is_server(uri) and ("error code 401" in text or "not authenticated" in text):
        return (
            f"tracking server {uri} refused the request: no or wrong credentials (401). Set MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD in the environment (never in params.yaml or git)"
        )
    if is_server(uri) and ("error code 403" in text or "Permission denied" in text):
        who = os.environ.get("MLFLOW_TRACKING_USERNAME", "this user")
        return (
            f"tracking server {uri} refused the request: {who} may not write to experiment {experiment_name()!r} "
            "(403): ask the server's admin for EDIT permission"
        )
    if is_server(uri):
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
