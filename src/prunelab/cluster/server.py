"""The shared MLflow tracking server: its command, and starting one (with a local PostgreSQL if asked).

Every host logs to it by ``MLFLOW_TRACKING_URI=http://HOST:PORT`` alone. Runs and metrics go
to the PostgreSQL backend store; artifacts are proxied (``--serve-artifacts``): clients
upload to and download from the server, which keeps them under ``--artifacts-destination``
(a folder, or ``s3://...``), so no host needs the artifact store's credentials.

    python -m prunelab.cluster.server FOLDER [--port 5000] [--host 127.0.0.1] [--auth]
        [--backend-store-uri postgresql+psycopg://USER@DB-HOST/mlflow] [--artifacts-destination URI]

Without ``--backend-store-uri`` it starts a PostgreSQL of its own in FOLDER/postgres
(``postgres.LocalPostgres``). It binds 127.0.0.1 unless ``--host`` says otherwise.
``--auth`` turns on MLflow's basic-auth app; the admin's name and password come from the
environment (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD), never from a file in git,
and its CSRF key from MLFLOW_FLASK_SERVER_SECRET_KEY (else one made and kept in FOLDER).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prunelab.cluster.postgres import LocalPostgres, free_port
from prunelab.errors import PrunelabError

USER_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
SECRET_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"  # basic auth's CSRF key; several servers must share one


class ServerError(PrunelabError):
    """The tracking server did not start."""


def server_command(
    backend_uri: str, artifacts: str, *, host: str = "127.0.0.1", port: int = 5000, workers: int = 4, auth: bool = False
) -> list[str]:
    """``mlflow server`` with a backend store, proxied artifacts, the address it binds, and basic auth if asked."""
    argv = [
        "mlflow", "server",
        "--backend-store-uri", backend_uri,
        "--serve-artifacts", "--artifacts-destination", artifacts,
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    return argv + (["--app-name", "basic-auth"] if auth else [])


def auth_config(folder: Path, user: str, password: str) -> Path:
    """MLflow's basic-auth settings, written for the server only (mode 600; its own user store in ``folder``)."""
    path = folder / "basic_auth.ini"
    text = (
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{folder / 'basic_auth.db'}\n"
        f"admin_username = {user}\nadmin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    return _private(path, text)


def _secret_key(folder: Path) -> str:
    """The basic-auth app's CSRF key: made once and kept in ``folder`` (mode 600), so a restart keeps sessions."""
    path = folder / "flask_secret_key"
    if not path.exists():
        _private(path, secrets.token_hex(32))
    return path.read_text().strip()


def _private(path: Path, text: str) -> Path:
    """``text`` in a file only its owner can read: created with mode 600, never wider for a moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


class TrackingServer:
    """``mlflow server`` as a child process group: ``start()`` waits until it answers, ``stop()`` ends it."""

    def __init__(
        self,
        folder: str | Path,
        backend_uri: str,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        workers: int = 2,
        auth: bool = False,
        artifacts: str | None = None,
    ) -> None:
        self.folder = Path(folder).resolve()
        self.port = port or free_port()
        self.host, self.auth = host, auth
        self.folder.mkdir(parents=True, exist_ok=True)
        self.argv = server_command(
            backend_uri,
            artifacts or str(self.folder / "artifacts"),
            host=host,
            port=self.port,
            workers=workers,
            auth=auth,
        )
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://{'127.0.0.1' if self.host in ('0.0.0.0', '::') else self.host}:{self.port}"

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        if self.auth:
            user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
            if not user or not password:
                raise ServerError(f"--auth needs the admin's name and password in {USER_ENV} and {PASSWORD_ENV}")
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config(self.folder, user, password))
            if not env.get(SECRET_ENV):  # CSRF protection needs a key that survives restarts
                env[SECRET_ENV] = _secret_key(self.folder)
        return env

    def start(self, timeout: float = 120) -> TrackingServer:
        log = open(self.folder / "server.log", "ab")  # the child keeps its own descriptor
        self.proc = subprocess.Popen(
            self.argv, env=self._env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.folder
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.folder / "server.log").read_text(errors="replace")[-600:]
                raise ServerError(f"mlflow server exited {self.proc.returncode}: {' '.join(tail.split())}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except urllib.error.HTTPError as exc:
                if exc.code in (401, 403):  # basic auth guards even /health: it answers, so it is up
                    return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"mlflow server did not answer on {self.uri} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # workers left behind by a killed master
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> TrackingServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _stop(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m prunelab.cluster.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the server's folder: its log, artifacts, and PostgreSQL if started")
    parser.add_argument("--backend-store-uri", help="your PostgreSQL (default: start one in FOLDER/postgres)")
    parser.add_argument("--artifacts-destination", help="where the server keeps artifacts (default FOLDER/artifacts)")
    parser.add_argument("--host", default="127.0.0.1", help="the interface to bind (default 127.0.0.1: this host only)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4, help="server processes (each has its own database pool)")
    parser.add_argument("--auth", action="store_true", help="MLflow's basic-auth app; admin from the environment")
    args = parser.parse_args(argv)
    if args.auth and not (os.environ.get(USER_ENV) and os.environ.get(PASSWORD_ENV)):
        raise ServerError(f"--auth needs the admin's name and password in {USER_ENV} and {PASSWORD_ENV}")
    signal.signal(signal.SIGTERM, _stop)  # a service manager's stop: the same clean shutdown as Ctrl-C
    db = None
    if not args.backend_store_uri:
        db = LocalPostgres(args.folder / "postgres").start()
        db.create_database("mlflow")
        args.backend_store_uri = db.uri("mlflow")
    server = TrackingServer(
        args.folder,
        args.backend_store_uri,
        host=args.host,
        port=args.port,
        workers=args.workers,
        auth=args.auth,
        artifacts=args.artifacts_destination,
    )
    try:
        server.start()
        print(f"tracking server on {server.uri} (backend {args.backend_store_uri}); on every host:", flush=True)
        print(f"  export MLFLOW_TRACKING_URI={server.uri}", flush=True)
        print(f"  the runs: {server.uri}/#/experiments?workflowType=machine_learning", flush=True)
        print("Ctrl-C (or SIGTERM) stops it.", flush=True)
        server.proc.wait()
        raise ServerError(f"mlflow server exited {server.proc.returncode}; its log: {args.folder / 'server.log'}")
    except KeyboardInterrupt:
        print("stopping the tracking server" + (" and its PostgreSQL" if db else ""), flush=True)
    finally:
        server.stop()
        if db is not None:
            db.stop()


if __name__ == "__main__":
    from prunelab import cli

    cli.run(main)
