"""Real MLflow stores for the fast tests: a migrated SQLite store copied instead of migrated
again, and a local HTTP server that refuses every request with one status (no mocks of MLflow).

``copy_migrated(db)``: MLflow's schema migration takes seconds, so each test process migrates
one empty store (its schema and MLflow's own Default experiment, nothing of prunelab's) and
copies that file where a test wants a new store; prunelab then creates its experiment there
as it would in a new store (tests/project.py does the same for the e2e copies).
``refusing_server(status)``: a tracking server's URI whose every request is answered
``status`` (401, 403 ...), so the real MLflow client raises its real error.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import http.server
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


@functools.cache
def _migrated() -> Path:
    from mlflow.tracking import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="prunelab-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    db = folder / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()  # migrates the schema
    return db


def copy_migrated(db: Path) -> Path:
    """A fresh, migrated, empty MLflow SQLite store at ``db``."""
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_migrated(), db)
    return db


@contextlib.contextmanager
def refusing_server(status: int) -> Iterator[str]:
    """The URI of an HTTP server on 127.0.0.1 that answers every request with ``status``."""

    class Refuse(http.server.BaseHTTPRequestHandler):
        def refuse(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PATCH = do_DELETE = refuse

        def log_message(self, *args, **kwargs) -> None:  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
