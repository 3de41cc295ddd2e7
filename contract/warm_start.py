"""The warm-start protocol between the local kubelet (controller.local.warm) and its fork server
(contract.WARM_START_MODULE, jobs.warm_start).

One JSON object per line: the controller writes `Request`s to the server's stdin; the server answers on its
stdout with `Ready` once (preloaded, or not: then it exits 1), an `Answer` per request (the pid forked, or
why nothing was forked: the Job then starts cold), and an `Exited` per child that ends. `encode` writes any
of them; `decode_request` and `decode_reply` read them back, ValueError for a line of no such message.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Request:
    """controller -> server: fork `python -m module *argv` with `env` (the whole environment), in `cwd`,
    stdout and stderr appended to `log`; the child writes its exit code to `exit_file` as it ends."""

    id: int
    module: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    log: str
    exit_file: str | None = None


@dataclass(frozen=True)
class Ready:
    """server -> controller, once: preloaded in `seconds` with `threads` Python threads alive (1: fork is
    safe), or not (`ready` false, `error` says why)."""

    ready: bool
    seconds: float | None = None
    threads: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Answer:
    """server -> controller, per request `id`: the child's `pid`, or the `error` that kept it from forking."""

    id: int
    pid: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Exited:
    """server -> controller: child `pid` ended with `exit` (-N: killed by signal N)."""

    pid: int
    exit: int


Reply = Ready | Answer | Exited


def encode(message: Request | Reply) -> str:
    """One line of the protocol (newline included); a None field is left out."""
    return json.dumps({k: v for k, v in asdict(message).items() if v is not None}) + "\n"


def _object(line: str | bytes) -> dict[str, Any]:
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object: {data!r}")
    return data


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer, got {value!r}")
    return value


def decode_request(line: str | bytes) -> Request:
    """A request line as the server reads it; ValueError when it is not one."""
    data = _object(line)
    argv, env = data.get("argv"), data.get("env")
    strings = (data.get("module"), data.get("cwd"), data.get("log"))
    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv) and isinstance(env, dict)
            and all(isinstance(s, str) for s in strings)):
        raise ValueError("a request is {id, module, argv, env, cwd, log, exit_file}")
    exit_file = data.get("exit_file")
    return Request(id=_int(data, "id"), module=str(data["module"]), argv=list(argv),
                   env={str(k): str(v) for k, v in env.items()}, cwd=str(data["cwd"]), log=str(data["log"]),
                   exit_file=exit_file if isinstance(exit_file, str) else None)


def decode_reply(line: str | bytes) -> Reply:
    """A line of the server's answers as the controller reads it; ValueError when it is none of them."""
    data = _object(line)
    error = data.get("error")
    error = None if error is None else str(error)
    if "ready" in data:
        seconds, threads = data.get("seconds"), data.get("threads")
        return Ready(ready=data["ready"] is True, seconds=float(seconds) if seconds is not None else None,
                     threads=_int(data, "threads") if threads is not None else None, error=error)
    if "exit" in data:
        return Exited(pid=_int(data, "pid"), exit=_int(data, "exit"))
    if "id" in data:
        return Answer(id=_int(data, "id"), pid=_int(data, "pid") if "pid" in data else None, error=error)
    raise ValueError(f"not a warm-start reply: {data!r}")
