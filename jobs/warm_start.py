"""`python -m jobs.warm_start`: the local executor's warm start (a fork server).

A train Job spends seconds before its first batch importing what every Job
imports again: MLflow with its SQLAlchemy store, ultralytics, torch and the
torch._dynamo that `torch.use_deterministic_algorithms` loads, plus MLflow's
map of the installed packages (read once per process to check a logged
model's requirements). This process pays that once per `submit-grid`, then
forks one child per Job attempt (POSIX fork: the child shares the imported
modules copy-on-write), so a Job starts already imported.

A child is the Job as `python -m MODULE ARGS` would run it, with the Job's
own environment (os.environ replaced), working directory, log file (stdout and
stderr; stdin /dev/null) and a session of its own (it leads its process group,
as a cold-started attempt does: controller.local.processes). It ends with the
module's exit code; killed by signal N, the exit status is -N (subprocess's
convention).

Only what is read at import time is shared: the environment this server was
started with must agree with the Job's on the variables modules read when
they are imported (contract.IMPORT_TIME_ENV_PREFIXES); the controller checks that
(controller.local.warm) and starts a Job cold otherwise. The standard library's
multiprocessing forkserver is not used: it is one per interpreter, started
with the environment of its first use (one project's YOLO_CONFIG_DIR for
every later one), and runs a function, not `python -m MODULE`.

Protocol: the messages of contract.warm_start, one JSON line each (requests on stdin from the
controller, replies on the stdout the server was started with): `Ready` once (then exit 1 when not
ready), an `Answer` per `Request` (the pid forked, or the error that kept it from forking: the Job then
starts cold), an `Exited` per child that ends; the child also writes its exit code to the request's
`exit_file` as it ends, read when the server is gone. End of stdin (the controller closed it or died)
ends the server; running children go on (adopted by init), as cold-started ones do.

This module sits above both Jobs (it runs them): jobs.common imports no Job.

A child ends as an interpreter does: non-daemon threads joined, atexit handlers
run, streams flushed; an uncaught KeyboardInterrupt ends it by SIGINT. What the
preloaded imports set in os.environ (ultralytics sets a few log levels) is in
its environment too, as a cold Job's imports would set it. Its process title
(`ps`, /proc/PID/cmdline) is the Job's command (setproctitle). Children of one
server share what was decided at import: ultralytics' settings and online
check, Python's hash seed, and the project's code as it was when the server
started (a file edited during a submission takes effect at the next one).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
import traceback
from typing import TextIO

import contract
from contract.warm_start import Answer, Exited, Ready, Reply, Request, decode_request, encode
from jobs.common.environment import configure_environment

# Imported once, here. The first four are what the entry points (contract.WARM_START_JOB_MODULES)
# import; the rest is what they import later, during every Job: ultralytics' model and trainer,
# torch's deterministic mode (torch._dynamo), MLflow's SQLAlchemy store and pyfunc flavour.
PRELOAD = ("jobs.train.cli", "jobs.train.job", "jobs.train.training", "jobs.finalize.cli",
           "ultralytics", "ultralytics.models.yolo", "torch._dynamo",
           "mlflow.store.tracking.sqlalchemy_store", "mlflow.pyfunc")
POLL_S = 0.1


def preload() -> None:
    """Import what the Jobs import, and warm MLflow's map of installed packages."""
    configure_environment()
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    # MLflow reads the metadata of every installed distribution the first time a model's requirements
    # are checked (log_model): a cache filled once here. A private name: without it, nothing is warmed.
    from mlflow.utils import requirements_utils

    warm = getattr(requirements_utils, "_init_modules_to_packages_map", None)
    if callable(warm):
        warm()


def run_child(request: Request, *, answers: int, added_env: dict[str, str]) -> int:
    """In the forked child: become the Job (`python -m module argv`), return its exit code. `answers`:
    the server's answer pipe, closed here (the controller sees it end when the server ends);
    `added_env`: what the preloaded imports set in the environment (a cold Job's imports set it too)."""
    import runpy
    import tempfile

    os.setsid()
    os.close(answers)
    # what a fresh interpreter has (SIGPIPE stays ignored, as Python sets it at start)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    log = os.open(request.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    for fd in (log, null):
        os.close(fd)
    print(f"tp4: warm start: forked by the warm-start server (pid {os.getppid()}), which imported "
          f"{request.module}'s stack once", flush=True)
    _set_title(["python", "-m", request.module, *request.argv])  # before environ changes: it moves it
    os.chdir(request.cwd)
    os.environ.clear()
    os.environ.update({**added_env, **request.env})
    tempfile.tempdir = None  # TMPDIR is the attempt's own
    sys.argv = [request.module, *request.argv]
    try:
        runpy.run_module(request.module, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        return _exit_code(stop.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        return -signal.SIGINT  # as an interpreter killed by an uncaught Ctrl-C: by SIGINT
    return 0


def _set_title(argv: list[str]) -> None:
    """`ps` and `pgrep -f jobs.train` show the Job's command, as for a cold start (setproctitle)."""
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(" ".join(argv))


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _finish_child(code: int, *, exit_file: str | None) -> None:
    """End the child as an interpreter ends: threads joined, atexit run, streams flushed; its exit
    code also written to `exit_file`, read by the controller should the server be gone by then. A
    negative code (killed by a signal) is raised as that signal."""
    import atexit

    try:
        shutdown = getattr(threading, "_shutdown", None)  # joins non-daemon threads, as Py_FinalizeEx does
        if callable(shutdown):
            shutdown()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        if exit_file:
            try:
                with open(exit_file, "w", encoding="ascii") as out:
                    out.write(str(code))
            except OSError:
                pass
        if code < 0:
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code & 0xFF)


class Server:
    """The loop: read requests, fork, reap, answer."""

    def __init__(self, answers: TextIO) -> None:
        self.answers = answers
        self.children: set[int] = set()
        self.pending = b""
        self.added_env: dict[str, str] = {}  # what the preloaded imports set in os.environ

    def send(self, message: Reply) -> None:
        self.answers.write(encode(message))
        self.answers.flush()

    def start(self, request: Request) -> None:
        """Fork the Job `request` asks for; answer its pid, or an error (the controller then starts it
        cold: nothing was forked)."""
        if request.module not in contract.WARM_START_JOB_MODULES:
            self.send(Answer(id=request.id, error=f"module {request.module!r} is not one of "
                             f"{contract.WARM_START_JOB_MODULES}"))
            return
        try:
            pid = os.fork()
        except OSError as error:  # EAGAIN (a process limit), ENOMEM: this Job starts cold
            self.send(Answer(id=request.id, error=f"fork: {error}"))
            return
        if pid == 0:  # the child: never returns to the loop
            code = 1
            try:
                code = run_child(request, answers=self.answers.fileno(), added_env=self.added_env)
            except BaseException:
                traceback.print_exc()
            finally:
                _finish_child(code, exit_file=request.exit_file)
        self.children.add(pid)
        self.send(Answer(id=request.id, pid=pid))

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send(Exited(pid=pid, exit=os.waitstatus_to_exitcode(status)))

    def request(self, line: bytes) -> None:
        try:
            request = decode_request(line)
        except ValueError as error:
            print(f"warm start: not a request ({error}): {line[:200]!r}", file=sys.stderr, flush=True)
            return
        self.start(request)

    def serve(self, requests: int) -> None:
        while True:
            readable, _, _ = select.select([requests], [], [], POLL_S)
            if readable:
                data = os.read(requests, 1 << 16)
                if not data:
                    return  # the controller is gone
                self.pending += data
                *lines, self.pending = self.pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        self.request(line)
            self.reap()


def main() -> int:
    # Answers go to the stdout this server was started with; what imports print goes to stderr.
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller stops this server by closing its stdin
    server = Server(answers)
    began = time.perf_counter()
    before = dict(os.environ)
    try:
        preload()
    except BaseException as error:  # noqa: BLE001 - reported, then the controller starts Jobs cold
        traceback.print_exc()
        server.send(Ready(ready=False, error=f"{type(error).__name__}: {error}"))
        return 1
    server.added_env = {k: v for k, v in os.environ.items() if before.get(k) != v}
    # A Python thread could hold a lock (logging's, the import lock) that a child would wait on for
    # ever. Native pools (OpenBLAS, jemalloc) have fork handlers of their own, as they must for the
    # fork()ed DataLoader workers every training already starts.
    threads = threading.active_count()
    if threads != 1:
        print(f"warm start: {threads} Python threads after preloading: forking is unsafe", file=sys.stderr)
        server.send(Ready(ready=False, error=f"{threads} Python threads after preloading: forking is unsafe"))
        return 1
    server.send(Ready(ready=True, seconds=round(time.perf_counter() - began, 3), threads=threads))
    server.serve(sys.stdin.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
