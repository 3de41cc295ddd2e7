"""Postgres from the binaries that the `pgserver` package ships (PostgreSQL 16.2), on TCP loopback.

pgserver's own `get_server()` listens on a Unix socket only; a tracking
server in a cluster reaches Postgres over TCP with a password, so the stack
runs the same binaries itself: `initdb` with scram-sha-256 for TCP clients
(trust only on the private Unix socket, used once to create the role), then
`postgres -h 127.0.0.1 -p PORT`. As root, Postgres refuses to run: it runs as
the unprivileged user `pgserver` (created if missing, as pgserver does).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg2

from devstack.processes import StartFailed, stop_process, wait_until

SYSTEM_USER = "pgserver"
SUPERUSER = "postgres"
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


def bin_path() -> Path:
    with warnings.catch_warnings():  # pgserver's import warns about XDG_RUNTIME_DIR; it is not used here
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def version() -> str:
    """e.g. 'postgres (PostgreSQL) 16.2'."""
    return subprocess.run([bin_path() / "postgres", "--version"], capture_output=True, text=True,
                          check=True).stdout.strip()


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    password: str
    pgdata: Path
    socket_dir: Path
    process: subprocess.Popen[bytes]

    def url(self, database: str) -> str:
        """A SQLAlchemy URL (psycopg2 named: SQLAlchemy 2.1 defaults `postgresql://` to psycopg 3)."""
        return (f"postgresql+psycopg2://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{self.host}:{self.port}/{database}")

    def connect(self, database: str) -> "psycopg2.extensions.connection":
        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                dbname=database)

    def stop(self) -> None:
        stop_process(self.process, sig=2)  # SIGINT: Postgres' "fast" shutdown


def _run_as() -> str | None:
    """The system user Postgres runs as: the current one, or `pgserver` for root."""
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists
    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(bin_path())
    return SYSTEM_USER


def _own(*, path: Path, user: str | None) -> None:
    if user is None:
        return
    import pwd

    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    from pgserver.utils import ensure_prefix_permissions

    ensure_prefix_permissions(path)  # the user must traverse the folders above it


def _initdb(*, pgdata: Path, user: str | None) -> None:
    pgdata.mkdir(parents=True)
    _own(path=pgdata, user=user)
    subprocess.run([bin_path() / "initdb", "-D", pgdata, "-U", SUPERUSER, "-E", "UTF8", "--no-sync",
                    "--auth-local=trust", "--auth-host=scram-sha-256"],
                   user=user, check=True, capture_output=True)


def _socket_dir(*, pgdata: Path, user: str | None) -> Path:
    if len(str(pgdata / ".s.PGSQL.65535")) < MAX_SOCKET_PATH:
        return pgdata
    folder = Path(tempfile.mkdtemp(prefix="tp4pg-"))
    _own(path=folder, user=user)
    return folder


def _can_connect(*, socket_dir: Path, port: int) -> bool:
    try:
        psycopg2.connect(host=str(socket_dir), port=port, user=SUPERUSER, dbname="postgres").close()
        return True
    except psycopg2.OperationalError:
        return False


def _create(*, socket_dir: Path, port: int, user: str, password: str, databases: tuple[str, ...]) -> None:
    connection = psycopg2.connect(host=str(socket_dir), port=port, user=SUPERUSER, dbname="postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE ROLE "{user}" LOGIN PASSWORD %s', (password,))
            for database in databases:
                cursor.execute(f'CREATE DATABASE "{database}" OWNER "{user}"')
    finally:
        connection.close()


def start_postgres(*, folder: Path, host: str, port: int, user: str, password: str,
                   databases: tuple[str, ...]) -> Postgres:
    """A fresh cluster in `folder/pgdata`, a login role `user` owning `databases`."""
    system_user = _run_as()
    pgdata = folder / "pgdata"
    _initdb(pgdata=pgdata, user=system_user)
    socket_dir = _socket_dir(pgdata=pgdata, user=system_user)
    log = folder / "postgres.log"
    with log.open("ab") as out:
        process = subprocess.Popen([bin_path() / "postgres", "-D", pgdata, "-h", host, "-p", str(port),
                                    "-k", socket_dir], user=system_user, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = Postgres(host=host, port=port, user=user, password=password, pgdata=pgdata, socket_dir=socket_dir,
                      process=process)
    try:
        wait_until(ready=lambda: _can_connect(socket_dir=socket_dir, port=port), process=process,
                   name="postgres", log=log, timeout_s=30)
        _create(socket_dir=socket_dir, port=port, user=user, password=password, databases=databases)
    except (StartFailed, psycopg2.Error):
        server.stop()
        raise
    return server
