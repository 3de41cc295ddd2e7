"""Where the stack's secrets may be, and where they may not.

Secrets (passwords, S3 secret keys, the CSRF key) travel only through a
child's environment or a file only its owner reads, never a command line or
a log. Every secret the stack creates or receives is registered with its
`Redactor`; every line a server prints (and the supervisor's own output) is
written to its log through it, so a secret a child prints anyway (an error
that echoes a connection string, say) reaches the log as `***`.

Private files are created 0600 (`write_private`) in a 0700 folder
(`private_folder`); logs are 0600 too (`open_log`). `python -m devstack down`
removes the private files (envfile.clear_state).
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO
from urllib.parse import quote

REDACTED = "***"
PRIVATE_DIR = "private"  # in the stack folder: basic_auth.ini, credentials.json
MIN_SECRET_CHARS = 8  # shorter values (a user name, "s3") would redact ordinary words


class Redactor:
    """The set of secrets of one stack; `redact(text)` replaces each (and its URL-quoted form) by `***`.

    Secrets are added before the process that could print them starts; reading while another
    thread adds is safe (the set is replaced, never mutated in place)."""

    def __init__(self) -> None:
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, *values: str) -> None:
        """Register secrets (values shorter than MIN_SECRET_CHARS are refused: ValueError)."""
        for value in values:
            if len(value) < MIN_SECRET_CHARS:
                raise ValueError(f"a secret of {len(value)} characters cannot be redacted reliably")
        with self._lock:
            self._secrets = self._secrets | {form for v in values for form in (v, quote(v, safe=""))}

    def new_password(self) -> str:
        """A random password (24 URL-safe characters: MLflow wants 12 at least), registered."""
        password = secrets.token_urlsafe(18)
        self.add(password)
        return password

    @property
    def secrets(self) -> frozenset[str]:
        """Every registered secret, plain and URL-quoted."""
        return self._secrets

    def redact(self, text: str) -> str:
        for value in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(value, REDACTED)
        return text


def private_folder(path: Path) -> Path:
    """`path` as a folder only its owner may list or enter (0700), created if missing."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(*, path: Path, text: str) -> None:
    """A file only its owner reads or writes (0600), even if it existed with another mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def open_log(path: Path) -> BinaryIO:
    """A log opened for appending, readable by its owner only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


def copy_redacted(*, lines: Iterable[bytes], out: BinaryIO, redactor: Redactor) -> None:
    """Each line, redacted, to `out` (flushed per line: a log read while the server runs is current)."""
    for line in lines:
        out.write(redactor.redact(line.decode(errors="replace")).encode())
        out.flush()


def pump(*, stream: IO[bytes], log: Path, redactor: Redactor) -> threading.Thread:
    """A daemon thread copying `stream` (a child's stdout) into `log`, redacted, until end of file."""

    def run() -> None:
        with stream, open_log(log) as out:
            copy_redacted(lines=iter(stream.readline, b""), out=out, redactor=redactor)

    thread = threading.Thread(target=run, name=f"log {log.name}", daemon=True)
    thread.start()
    return thread


@contextmanager
def redacted_output(redactor: Redactor) -> Iterator[None]:
    """This process's stdout and stderr (file descriptors 1 and 2, so also what C code, child
    processes and logging handlers bound earlier write) go through `redactor` to where stdout
    went before (for `serve`: devstack.log); both restored, and the pipe drained, on exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    read_end, write_end = os.pipe()
    thread = threading.Thread(target=_copy_fd, args=(read_end, saved_out, redactor), daemon=True,
                              name="redacted output")
    thread.start()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_err)
        thread.join(timeout=10)  # EOF once no process holds the pipe's write end


def _copy_fd(read_end: int, out_fd: int, redactor: Redactor) -> None:
    with os.fdopen(read_end, "rb") as stream, os.fdopen(out_fd, "wb") as out:
        copy_redacted(lines=iter(stream.readline, b""), out=out, redactor=redactor)
