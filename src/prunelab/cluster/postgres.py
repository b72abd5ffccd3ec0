"""A throw-away PostgreSQL server in a folder: for trying the shared tracking server, tests and benchmarks.

A lab's real server is its own (``postgresql+psycopg://user:pass@db-host/mlflow``); this one
is the same PostgreSQL, started by ``initdb`` + ``pg_ctl`` in a folder of your choice,
listening on 127.0.0.1 only, with its socket in that folder. PostgreSQL refuses to run as
root, so under root it runs as the ``postgres`` user (Debian's package creates it), and
the folder is handed to that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from prunelab.errors import PrunelabError

# where Debian's postgresql package puts its server programs (one folder per major version)
DEBIAN_BIN = Path("/usr/lib/postgresql")
BIN_ENV = "PRUNELAB_PG_BIN"  # a folder with initdb, pg_ctl and postgres, if neither of the above


class PostgresError(PrunelabError):
    """No PostgreSQL server programs here, or the server did not start."""


def server_bin() -> Path:
    """The folder with ``initdb`` and ``pg_ctl``: $PRUNELAB_PG_BIN, Debian's newest, or the PATH's."""
    if os.environ.get(BIN_ENV):
        return Path(os.environ[BIN_ENV])
    versions = sorted(DEBIAN_BIN.glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    raise PostgresError(
        "no PostgreSQL server programs (initdb, pg_ctl) here: install them (Debian: "
        f"`apt-get install postgresql`), or set {BIN_ENV} to their folder"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user() -> tuple[int, int] | None:
    """(uid, gid) of the user PostgreSQL runs as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresError("PostgreSQL refuses to run as root and there is no `postgres` user to run it as") from None
    return user.pw_uid, user.pw_gid


class LocalPostgres:
    """``initdb`` in ``folder`` (once), ``start()`` on 127.0.0.1:``port``, ``stop()``; ``uri(db)`` for MLflow."""

    def __init__(self, folder: str | Path, port: int | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.data = self.folder / "pgdata"
        self.port = port or free_port()
        self.bin = server_bin()
        self.owner = _as_server_user()

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        def drop() -> None:
            if self.owner:
                os.setgid(self.owner[1])
                os.setuid(self.owner[0])

        out = subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]],
            preexec_fn=drop,
            capture_output=True,
            text=True,
            cwd=self.folder,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )
        if check and out.returncode != 0:
            raise PostgresError(f"{argv[0]} failed: {' '.join((out.stderr or out.stdout).split())[-400:]}")
        return out

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.owner:
            os.chown(self.folder, *self.owner)
        if not (self.data / "PG_VERSION").exists():
            # trust on 127.0.0.1 and the folder's socket: a throw-away server nobody else reaches
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> LocalPostgres:
        self.init()
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "server.log"), "-w", "start")
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def create_database(self, name: str, template: str | None = None) -> None:
        """CREATE DATABASE ``name`` unless it exists (psycopg over TCP).

        ``template``: a copy of that database (``CREATE DATABASE … TEMPLATE``), for example one
        that MLflow's schema was migrated into once: copying it takes a fraction of a second,
        the migration several.
        """
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
                ) as db:
                    if db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                        copy = f' TEMPLATE "{template}"' if template else ""
                        db.execute(f'CREATE DATABASE "{name}"{copy}')
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def uri(self, db: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
