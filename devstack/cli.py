"""`python -m devstack up|down|env|serve`: the production-like stack for a developer.

`up` starts `serve` in the background (its own session, log in
<folder>/devstack.log), waits until the stack is ready and prints the
environment to export; `down` stops it; `env` prints the environment again;
`serve` runs the stack in the foreground until Ctrl-C or SIGTERM. The stack is
ephemeral: `down` discards runs, artifacts and the dataset pushed to it.

No secret is printed by `up` nor written to a log: `up` prints the
non-secret part of the environment and where the rest is (stack.env, and
private/credentials.json for the Postgres and MLflow admin passwords, both
0600); everything `serve` and its servers print goes through the stack's
Redactor. `env` prints the whole environment, secrets included, on request
(for `eval`). `down` removes stack.env, stack.json, the private folder and
the Postgres data.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from devstack.envfile import (
    CREDENTIALS_FILE,
    ENV_FILE,
    alive,
    clear_state,
    discard,
    export_lines,
    read_state,
    write_state,
)
from devstack.private import Redactor, open_log, redacted_output
from devstack.processes import log_tail
from devstack.stack import TRACKING_DB, Stack, StackConfig, start_stack
from devstack.versions import versions

DEFAULT_FOLDER = Path(".tp4/stack")
UP_TIMEOUT_S = 240.0
DOWN_TIMEOUT_S = 60.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help=f"stack folder (default {DEFAULT_FOLDER})")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("up", "start the stack in the background and print its environment"),
                       ("serve", "run the stack in the foreground until Ctrl-C")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--auth", action="store_true", help="MLflow's basic-auth app (a user and a password)")
        command.add_argument("--allowed-hosts", default="", help="extra Host headers MLflow accepts (comma-separated)")
    commands.add_parser("down", help="stop the stack and discard its data")
    commands.add_parser("env", help="print the environment of the running stack")
    return parser


def _running_pid(folder: Path) -> int | None:
    state = read_state(folder)
    pid = int(state["pids"].get("devstack", 0)) if state else 0
    return pid if pid and alive(pid) else None


def serve(*, config: StackConfig) -> int:
    """Start, publish the state files, wait for a signal, stop, discard the data and the private files.
    What this process and its servers print goes through the stack's Redactor."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    redactor = Redactor()
    with redacted_output(redactor):
        try:
            discard(config.folder)  # ephemeral: a fresh cluster every time
            stack = start_stack(config, redactor=redactor)
            try:
                info = stack_info(stack)
                write_state(config.folder, env=stack.client_env(), pids={"devstack": os.getpid(), **stack.pids()},
                            info=info, credentials=stack_credentials(stack))
                print(f"stack ready: {info}", flush=True)
                done.wait()
            finally:
                clear_state(config.folder)
                stack.stop()
                discard(config.folder)
        except BaseException:  # printed here, while the output is still redacted
            traceback.print_exc()
            return 1
    return 0


def stack_info(stack: Stack) -> dict[str, str]:
    """Addresses and versions, for a person: no secret (the passwords are in `stack_credentials`)."""
    assert stack.s3 is not None and stack.postgres is not None
    credentials = stack.config.private / CREDENTIALS_FILE
    info = {"mlflow UI": stack.tracking_uri, "S3 endpoint": stack.s3.endpoint,
            "postgres": f"{stack.redactor.redact(stack.postgres.url(TRACKING_DB))}  (password in {credentials})",
            "versions": ", ".join(f"{k} {v}" for k, v in versions().items())}
    if stack.admin is not None:
        info["mlflow admin"] = f"{stack.admin.username}  (password in {credentials})"
    info["dataset"] = (f"dvc push -r {stack.config.dvc_remote}  (s3://{stack.config.dvc_bucket}, "
                       "with the environment below)")
    return info


def stack_credentials(stack: Stack) -> dict[str, str]:
    """What a person may need to log in by hand: the Postgres URL with its password, the MLflow admin."""
    assert stack.postgres is not None
    found = {"postgres": stack.postgres.url(TRACKING_DB)}
    if stack.admin is not None:
        found |= {"mlflow_admin_username": stack.admin.username, "mlflow_admin_password": stack.admin.password}
    return found


def up(*, folder: Path, argv: list[str]) -> int:
    if pid := _running_pid(folder):
        print(f"a stack already runs from {folder} (pid {pid}): `python -m devstack down` first", file=sys.stderr)
        return 1
    folder.mkdir(parents=True, exist_ok=True)
    clear_state(folder)
    log = folder / "devstack.log"
    with open_log(log) as out:
        process = subprocess.Popen([sys.executable, "-m", "devstack", "--folder", str(folder), "serve", *argv],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    deadline = time.monotonic() + UP_TIMEOUT_S
    while not (folder / ENV_FILE).is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            print(f"the stack did not start (log {log}):\n{log_tail(log)}", file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(_summary(folder))
    return 0


def _summary(folder: Path) -> str:
    """What `up` prints: addresses, versions, the environment less its secrets, and where those are."""
    state = read_state(folder) or {}
    info = "\n".join(f"#   {k}: {v}" for k, v in state.get("info", {}).items())
    exports = export_lines({str(k): str(v) for k, v in state.get("exports", {}).items()})
    secret = ", ".join(str(name) for name in state.get("secret_names", []))
    return (f"# the tp4 production-like stack is up; versions and addresses:\n{info}\n"
            f"# the environment: source {folder / ENV_FILE}  (or: eval \"$(python -m devstack env)\"); it holds\n"
            f"{exports}# and the secrets {secret} (not shown)\n")


def down(*, folder: Path) -> int:
    state = read_state(folder)
    if state is None:
        print(f"no stack runs from {folder}")
        return 0
    pids = {name: int(pid) for name, pid in state["pids"].items()}
    supervisor = pids.pop("devstack", 0)
    if supervisor and alive(supervisor):
        os.kill(supervisor, signal.SIGTERM)
        deadline = time.monotonic() + DOWN_TIMEOUT_S
        while alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.2)
    for pid in pids.values():  # left behind only if the supervisor was killed hard
        if alive(pid):
            os.killpg(pid, signal.SIGTERM)
    discard(folder)
    print(f"stack in {folder} stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    folder = args.folder.resolve()
    if args.command == "down":
        return down(folder=folder)
    if args.command == "env":
        if _running_pid(folder) is None:
            print(f"no stack runs from {folder}: `python -m devstack up`", file=sys.stderr)
            return 1
        print((folder / ENV_FILE).read_text(), end="")
        return 0
    options = ["--auth"] if args.auth else []
    options += ["--allowed-hosts", args.allowed_hosts] if args.allowed_hosts else []
    if args.command == "up":
        return up(folder=folder, argv=options)
    hosts = tuple(h for h in args.allowed_hosts.split(",") if h)
    return serve(config=StackConfig(folder=folder, auth=args.auth, allowed_hosts=hosts))
