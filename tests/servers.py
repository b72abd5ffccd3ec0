"""A real PostgreSQL and `mlflow server` on 127.0.0.1 for the cluster tests (no mocks).

``postgres_for_module`` starts a throw-away PostgreSQL in a folder under /tmp (the postgres
user must reach it) and migrates MLflow's schema once into a template database;
``start_server`` gives each `mlflow server` a copy of it (CREATE DATABASE … TEMPLATE: a
copy, not a migration). Outside CI a machine without PostgreSQL's server programs skips
these tests and says why; in CI (CI=true) they fail.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from project import sh

from prunelab.cluster.postgres import LocalPostgres, PostgresError
from prunelab.cluster.server import TrackingServer

MIGRATED = "mlflow_migrated"


def postgres_for_module() -> Iterator[LocalPostgres]:
    folder = Path(tempfile.mkdtemp(prefix="prunelab-pg-"))
    folder.chmod(0o755)
    try:
        db = LocalPostgres(folder / "pg").start()
    except PostgresError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run these against a real PostgreSQL: {exc}")
        pytest.skip(f"no PostgreSQL server here: {exc}")
    try:
        db.create_database(MIGRATED)
        sh(folder, "mlflow", "db", "upgrade", db.uri(MIGRATED))
        yield db
    finally:
        db.stop()
        shutil.rmtree(folder, ignore_errors=True)


def start_server(postgres: LocalPostgres, folder: Path, db: str, **kw) -> TrackingServer:
    postgres.create_database(db, template=MIGRATED)
    return TrackingServer(folder, postgres.uri(db), workers=2, **kw).start()


def client(srv: TrackingServer):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=srv.uri)


def all_runs(srv: TrackingServer, experiment: str = "prunelab") -> list:
    c = client(srv)
    exp = c.get_experiment_by_name(experiment)
    return [] if exp is None else c.search_runs([exp.experiment_id], max_results=5000)
