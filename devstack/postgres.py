"""Postgres from the binaries that the `pgserver` package ships (PostgreSQL 16.2), on TCP loopback.

pgserver's own `get_server()` listens on a Unix socket only; a tracking
server in a cluster reaches Postgres over TCP with a password, so the stack
runs the same binaries itself: `initdb` with scram-sha-256 for TCP clients
(trust only on the private Unix socket, used once to create the role), then
`postgres -h 127.0.0.1 -p PORT`. As root, Postgres refuses to run: it runs as
the unprivileged user `pgserver` (created if missing, as pgserver does).

No password on a command line or in a log: the superuser's password reaches
`initdb` in a 0600 file (`--pwfile`, in a 0700 folder removed right after),
every connection, the Unix socket's included, authenticates with
scram-sha-256, and the login role is created with its SCRAM verifier
(`psycopg2.extensions.encrypt_password`), so even a statement Postgres logs
holds no password. Postgres' output reaches postgres.log through the stack's
Redactor.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg2
from psycopg2.extensions import encrypt_password

from devstack.private import Redactor, private_folder, write_private
from devstack.processes import StartFailed, start_logged, stop_process, wait_until

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

    def connect(self, database: str) -> psycopg2.extensions.connection:
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


def _initdb(*, pgdata: Path, user: str | None, password: str) -> None:
    """A cluster whose superuser has `password` (read from a 0600 file that `user` owns, removed after)."""
    pgdata.mkdir(parents=True)
    _own(path=pgdata, user=user)
    folder = private_folder(Path(tempfile.mkdtemp(prefix="tp4pw-")))
    try:
        pwfile = folder / "pwfile"
        write_private(path=pwfile, text=password + "\n")
        _own(path=folder, user=user)
        _own(path=pwfile, user=user)
        done = subprocess.run([bin_path() / "initdb", "-D", pgdata, "-U", SUPERUSER, "-E", "UTF8", "--no-sync",
                               f"--pwfile={pwfile}", "--auth=scram-sha-256"],
                              user=user, capture_output=True, text=True)
        if done.returncode != 0:
            raise StartFailed(f"initdb exited with code {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _socket_dir(*, pgdata: Path, user: str | None) -> Path:
    if len(str(pgdata / ".s.PGSQL.65535")) < MAX_SOCKET_PATH:
        return pgdata
    folder = Path(tempfile.mkdtemp(prefix="tp4pg-"))
    _own(path=folder, user=user)
    return folder


def _superuser(*, socket_dir: Path, port: int, password: str) -> psycopg2.extensions.connection:
    return psycopg2.connect(host=str(socket_dir), port=port, user=SUPERUSER, password=password, dbname="postgres")


def _can_connect(*, socket_dir: Path, port: int, password: str) -> bool:
    try:
        _superuser(socket_dir=socket_dir, port=port, password=password).close()
        return True
    except psycopg2.OperationalError:
        return False


def _create(*, socket_dir: Path, port: int, superuser_password: str, user: str, password: str,
            databases: tuple[str, ...]) -> None:
    connection = _superuser(socket_dir=socket_dir, port=port, password=superuser_password)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            verifier = encrypt_password(password, user, connection, "scram-sha-256")  # hashed here, not by the server
            cursor.execute(f'CREATE ROLE "{user}" LOGIN PASSWORD %s', (verifier,))
            for database in databases:
                cursor.execute(f'CREATE DATABASE "{database}" OWNER "{user}"')
    finally:
        connection.close()


def start_postgres(*, folder: Path, host: str, port: int, user: str, password: str,
                   databases: tuple[str, ...], redactor: Redactor) -> Postgres:
    """A fresh cluster in `folder/pgdata`, a login role `user` owning `databases`
    (the superuser gets a password of its own, registered with `redactor` and then forgotten)."""
    system_user = _run_as()
    pgdata = folder / "pgdata"
    superuser_password = redactor.new_password()
    redactor.add(password)
    _initdb(pgdata=pgdata, user=system_user, password=superuser_password)
    socket_dir = _socket_dir(pgdata=pgdata, user=system_user)
    log = folder / "postgres.log"
    process = start_logged([bin_path() / "postgres", "-D", pgdata, "-h", host, "-p", str(port), "-k", socket_dir],
                           user=system_user, log=log, redactor=redactor)
    server = Postgres(host=host, port=port, user=user, password=password, pgdata=pgdata, socket_dir=socket_dir,
                      process=process)
    try:
        wait_until(ready=lambda: _can_connect(socket_dir=socket_dir, port=port, password=superuser_password),
                   process=process, name="postgres", log=log, timeout_s=30)
        _create(socket_dir=socket_dir, port=port, superuser_password=superuser_password, user=user,
                password=password, databases=databases)
    except (StartFailed, psycopg2.Error):
        server.stop()
        raise
    return server
