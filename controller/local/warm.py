"""The controller's side of the warm start: Jobs forked from a process that imported their stack once.

A cold local Job is `python -m jobs.train ...` started afresh: seconds of imports
(MLflow and its SQLAlchemy store, ultralytics, torch) before it does anything.
`WarmStarter` starts one fork server per kubelet (`python -m` contract.WARM_START_MODULE;
its messages: contract.warm_start), in the kubelet's
environment, on the first Job it can serve, and asks it to fork each attempt.
The attempt is then what a cold start would be, bar the imports: the Job's
environment, working directory, log file, a session of its own, its pid and
start time recorded as before (controller.local.processes), stopped by the same
signals to its process group.

A Job starts cold, as before, when any of these holds: warm start is off
(contract.ENV_WARM_START=0 in the controller's environment, or an OS without
fork: only Linux is served); the command is not `python -m` one of
contract.WARM_START_JOB_MODULES (tests' and users' own commands); the Job's
environment differs from the server's on a variable read at import time
(contract.IMPORT_TIME_ENV_PREFIXES); the server failed to preload, is not
ready within `READY_TIMEOUT_S`, or has ended.

The attempt is the server's child, not ours: its exit status comes from the
server (an `Exited` message), or, should the server end first, from the
exit file the attempt writes as it ends (in its TMPDIR). An attempt killed
after its server ended leaves neither: it counts as exit code `LOST_EXIT_CODE`
(a failure, retried within the Job's backoffLimit). The server is started when
a submission begins (`prepare`), so it preloads while the parent run is made;
one not ready within `READY_TIMEOUT_S` is ended, and Jobs start cold.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import contract
from contract.warm_start import Answer, Exited, Ready, Reply, Request, decode_reply, encode
from controller.local import processes

READY_TIMEOUT_S = 120.0  # preloading takes ~5-10 s on 2 busy cores
CLOSE_TIMEOUT_S = 10.0
LOST_EXIT_CODE = 1


OFF = frozenset({"0", "false", "no", "off"})


def enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether the local executor may start Jobs warm here: Linux (fork), and not turned off
    (contract.ENV_WARM_START one of 0, false, no, off)."""
    env = os.environ if environ is None else environ
    return sys.platform.startswith("linux") and env.get(contract.ENV_WARM_START, "1").strip().lower() not in OFF


def import_time_env(env: dict[str, str]) -> dict[str, str]:
    """The variables of `env` that modules read when they are imported (contract.IMPORT_TIME_ENV_PREFIXES)."""
    return {k: v for k, v in env.items() if k.startswith(contract.IMPORT_TIME_ENV_PREFIXES)}


def job_module(command: list[str]) -> str | None:
    """The module of a `python -m MODULE ...` command that the server may run, else None."""
    if len(command) >= 3 and command[0] == sys.executable and command[1] == "-m" \
            and command[2] in contract.WARM_START_JOB_MODULES:
        return command[2]
    return None


class WarmProcess:
    """An attempt forked by the server: what the kubelet uses of subprocess.Popen (pid, poll, wait,
    returncode)."""

    def __init__(self, starter: WarmStarter, pid: int, args: list[str], exit_file: Path) -> None:
        self.starter = starter
        self.pid = pid
        self.args = args
        self.exit_file = exit_file
        identity = processes.identify(pid)
        self.started = identity.started if identity else None
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.starter.exit_code(self)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(0.05)
        return code


class WarmStarter:
    """One fork server for one kubelet, started on first use, ended by `close`."""

    def __init__(self, *, root: Path, env: Callable[[], dict[str, str]], log: Path) -> None:
        """`env`: the server's environment, read when it starts (the first Job it can serve)."""
        self.root = root
        self.server_env = env
        self.env: dict[str, str] | None = None  # the environment the server was started with
        self.log = log
        self.server: subprocess.Popen[bytes] | None = None
        self.reader: threading.Thread | None = None
        self.lock = threading.Condition()
        self.ready: bool | None = None  # None: not answered yet
        self.ready_by = 0.0  # time.monotonic() by which it must be ready, else it is ended
        self.problem = ""
        self.gone = False
        self.replies: dict[int, Answer] = {}
        self.exits: dict[int, int] = {}
        self.next_id = 0

    def start(self, *, command: list[str], env: dict[str, str], cwd: Path, log: Path) -> WarmProcess | None:
        """Fork the attempt `command` from the server; None when it must start cold (see the module)."""
        module = job_module(command)
        if module is None or not enabled():
            return None
        if self.env is None:
            self.env = self.server_env()
        if import_time_env(env) != import_time_env(self.env) or not self._ensure_ready():
            return None
        with self.lock:
            self.next_id += 1
            request_id = self.next_id
        exit_file = Path(env.get("TMPDIR") or log.parent) / f"{log.stem}.exit"
        request = Request(id=request_id, module=module, argv=command[3:], env=env, cwd=str(cwd), log=str(log),
                          exit_file=str(exit_file))
        if not self._send(request):
            return None
        # Once sent, the answer is awaited as long as the server lives: a Job it may have forked is
        # never started a second time, cold. (A server that ends between its fork and its answer
        # leaves a child nobody watches; it ends on its own, as any Job does.)
        reply = self._wait(lambda: self.replies.pop(request_id, None), timeout=None)
        if reply is None or reply.pid is None:
            if reply is not None and reply.error:
                self._note(f"Job started cold: {reply.error}")
            return None
        return WarmProcess(self, reply.pid, command, exit_file)

    def prepare(self) -> None:
        """Start the server now, without waiting for it (when warm start is on): it preloads while
        the controller does other work."""
        if enabled() and self.server is None and self.ready is None:
            self.env = self.server_env()
            self._launch()

    def exit_code(self, process: WarmProcess) -> int | None:
        """The attempt's exit status (-N: killed by signal N), None while it runs."""
        with self.lock:
            if process.pid in self.exits:
                return self.exits.pop(process.pid)
            if not self.gone:
                return None
        # The server has ended: an attempt still running is watched by its pid and start time; one
        # that ended left its exit code in its exit file (none: it was killed).
        if processes.alive(process.pid, process.started):
            return None
        try:
            return int(process.exit_file.read_text().strip())
        except (OSError, ValueError):
            return LOST_EXIT_CODE

    def close(self) -> None:
        """End the server (its stdin closed); attempts it forked go on. Idempotent."""
        server, self.server = self.server, None
        if server is None:
            return
        if self.ready is not True:  # still preloading: it would read its stdin only once done
            server.kill()
        if server.stdin:
            try:
                server.stdin.close()
            except OSError:
                pass
        try:
            server.wait(timeout=CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if self.reader:
            self.reader.join(timeout=CLOSE_TIMEOUT_S)
        if server.stdout:
            server.stdout.close()

    def _ensure_ready(self) -> bool:
        """Whether the server is ready, waiting for it until `ready_by` (once: a server not ready by
        then is ended, and every later Job starts cold)."""
        if self.server is None and self.ready is None:
            self._launch()
        ready = self._wait(lambda: self.ready, timeout=max(0.0, self.ready_by - time.monotonic()))
        if ready is None and not self.gone and self.server is not None:
            self._note(f"the warm-start server was not ready within {READY_TIMEOUT_S:g} s: Jobs start cold")
            self.server.kill()
            with self.lock:
                self.ready = False
        return bool(ready) and not self.gone

    def _launch(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.server = subprocess.Popen(
                [sys.executable, "-m", contract.WARM_START_MODULE], cwd=self.root, env=self.env or {},
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, **processes.popen_options())
        self.ready_by = time.monotonic() + READY_TIMEOUT_S
        self.reader = threading.Thread(target=self._read, args=(self.server.stdout,), name="tp4-warm-start",
                                       daemon=True)
        self.reader.start()

    def _send(self, message: Request) -> bool:
        server = self.server
        if server is None or server.stdin is None or self.gone:
            return False
        try:
            server.stdin.write(encode(message).encode())
            server.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def _wait(self, take: Any, *, timeout: float | None) -> Any:
        """`take()` once it is not None; None when the server ended or `timeout` seconds passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while (value := take()) is None and not self.gone:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self.lock.wait(left)
            return value

    def _note(self, text: str) -> None:
        """A line in the server's log (the Jobs' log folder, warm-start.log)."""
        try:
            with open(self.log, "a", encoding="utf-8") as log:
                log.write(f"tp4 controller: {text}\n")
        except OSError:
            pass

    def _read(self, answers: IO[bytes] | None) -> None:
        try:
            for line in answers or ():
                try:
                    message = decode_reply(line)
                except ValueError:
                    continue  # not an answer of this protocol
                with self.lock:
                    self._take(message)
                    self.lock.notify_all()
        except (OSError, ValueError):  # the pipe closed under us (close)
            pass
        finally:
            with self.lock:
                self.gone = True
                if self.ready is None:
                    self.ready = False
                self.lock.notify_all()

    def _take(self, message: Reply) -> None:
        if isinstance(message, Ready):
            self.ready = message.ready
            self.problem = message.error or ""
            if self.problem:
                self._note(f"the warm-start server could not preload, Jobs start cold: {self.problem}")
        elif isinstance(message, Exited):
            self.exits[message.pid] = message.exit
        else:
            self.replies[message.id] = message
