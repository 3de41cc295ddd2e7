"""A small kubelet and Job controller for one machine.

It runs the container command, args and env of a rendered batch/v1 Job
manifest as a local process, with the Job controller's rules: backoffLimit
retries, activeDeadlineSeconds, podFailurePolicy exit codes. One log file per
attempt and submission (`<job>.<submission>.<attempt>.log`, created exclusively:
never overwritten). Processes lead a process group of their own (a session on
POSIX, CREATE_NEW_PROCESS_GROUP on Windows: controller.local.processes), so
Ctrl-C or a closed terminal reaches the controller only, which then stops each
group with SIGTERM, then SIGKILL (Windows: CTRL_BREAK_EVENT, then its process
tree killed). Each attempt records its pid and start time, so a controller started
later can tell whether it still runs (controller.local.processes), and gets its
own TMPDIR under .tp4/tmp, removed when the attempt ends. On Linux, a train or
finalize Job is forked from a server that imported their stack once
(controller.local.warm: a warm start, the same process otherwise); any other
command, or any Job the server cannot serve, is started cold as above.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import contract
from controller.core.reconciling import CONFIGURATION_FAILURE, JobPhase
from controller.local import processes
from controller.local.state import Attempt, JobRecord, safe_child
from controller.local.warm import WarmProcess, WarmStarter

STOP_GRACE_SECONDS = 15.0


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]["containers"][0]


def fail_job_exit_codes(manifest: dict[str, Any]) -> set[int]:
    """Exit codes that a podFailurePolicy FailJob rule turns into an immediate failure."""
    codes: set[int] = set()
    for rule in manifest["spec"].get("podFailurePolicy", {}).get("rules", []):
        on_codes = rule.get("onExitCodes")
        if rule.get("action") == "FailJob" and on_codes and on_codes.get("operator") == "In":
            codes.update(on_codes["values"])
    return codes


def process_env(manifest: dict[str, Any], *, base: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """The pod's environment; a secretKeyRef is read from the controller's own
    environment under the same variable name (there are no Secrets locally)."""
    env = dict(base)
    for item in _container(manifest).get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}) and item["name"] in base:
            env[item["name"]] = base[item["name"]]
    env.update(overrides)
    return env


def process_command(manifest: dict[str, Any]) -> list[str]:
    container = _container(manifest)
    command = list(container.get("command", [])) + list(container.get("args", []))
    if command and command[0] in ("python", "python3"):
        command[0] = sys.executable  # the image's python is this project's interpreter here
    return command


class LocalKubelet:
    """Starts, watches, retries and stops the processes of local Jobs."""

    def __init__(self, *, root: Path, logs_dir: Path, threads_per_job: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.logs_dir = logs_dir
        self.threads_per_job = threads_per_job
        self.clock = clock
        self.processes: dict[str, subprocess.Popen[bytes] | WarmProcess] = {}
        self.warm = WarmStarter(root=root, env=self.base_env, log=logs_dir / "warm-start.log")

    def local_settings(self) -> dict[str, str]:
        """What this machine sets in place of the manifest's values, as a node would: the torch threads of the
        cores shared by the Jobs running at once (the manifest's are its CPU request on a node of its own), and
        the ultralytics settings folder inside the project (the manifest's, /tmp/ultralytics, is the
        container's own /tmp; here it would be the machine's). `start` writes any value it replaces at the top
        of the attempt's log."""
        threads = str(self.threads_per_job)
        return {contract.ENV_TORCH_THREADS: threads, "OMP_NUM_THREADS": threads,
                "YOLO_CONFIG_DIR": str(self.root / contract.EMBEDDED_DIR / "ultralytics"), "PYTHONUNBUFFERED": "1"}

    def base_env(self) -> dict[str, str]:
        """The environment every attempt starts from: the controller's with local_settings (the warm-start
        server imports the Jobs' stack in it); each Job's manifest adds its own (process_env)."""
        return {**os.environ, **self.local_settings()}

    def close(self) -> None:
        """End the warm-start server (the attempts it forked go on)."""
        self.warm.close()

    def start(self, job: JobRecord) -> None:
        number = len(job.attempts) + 1
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = new_log(self.logs_dir, job=job.name, submission=job.submission, attempt=number)
        tmp = attempt_tmp(self.root, str(log_path))
        tmp.mkdir(parents=True, exist_ok=True)
        local = self.local_settings()
        rendered = process_env(job.manifest, base={}, overrides={})
        replaced = [f"{name}={rendered[name]} -> {value}" for name, value in local.items()
                    if name in rendered and rendered[name] != value]
        if replaced:  # said, not silent: the manifest is the cluster's, these are this machine's
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"tp4 local kubelet: {', '.join(replaced)} (controller/local/kubelet.py: local_settings)\n")
        env = process_env(job.manifest, base=dict(os.environ), overrides={
            **local, contract.ENV_ATTEMPT: str(number), "TMPDIR": str(tmp)})
        command = process_command(job.manifest)
        process: subprocess.Popen[bytes] | WarmProcess | None = self.warm.start(
            command=command, env=env, cwd=self.root, log=log_path)
        if process is None:  # a cold start
            with open(log_path, "ab") as log:
                process = subprocess.Popen(command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, **processes.popen_options())
        self.processes[job.name] = process
        identity = processes.identify(process.pid)
        job.attempts.append(Attempt(number=number, log=str(log_path), started=self.clock(), pid=process.pid,
                                    process_started=identity.started if identity else None))
        job.phase = JobPhase.RUNNING

    def poll(self, job: JobRecord) -> bool:
        """Update a running job from its process; True when it changed phase."""
        process = self.processes.get(job.name)
        if process is None:
            return False
        deadline = job.manifest["spec"].get("activeDeadlineSeconds")
        code = process.poll()
        if code is None:
            if deadline and job.started and self.clock() - job.started > deadline:
                self._stop(job.name)
                self._finish(job, process.returncode, JobPhase.FAILED, "DeadlineExceeded")
                return True
            return False
        del self.processes[job.name]
        return self._settle(job, code)

    def _settle(self, job: JobRecord, code: int) -> bool:
        if code == 0:
            self._finish(job, code, JobPhase.SUCCEEDED, "")
            return True
        if code in fail_job_exit_codes(job.manifest):
            self._finish(job, code, JobPhase.FAILED, CONFIGURATION_FAILURE)
            return True
        if len(job.attempts) <= job.manifest["spec"].get("backoffLimit", 6):
            self._finish_attempt(job, code, "Error")
            self.start(job)
            return False
        self._finish(job, code, JobPhase.FAILED, "BackoffLimitExceeded")
        return True

    def _finish_attempt(self, job: JobRecord, code: int | None, reason: str) -> None:
        attempt = job.attempts[-1]
        attempt.finished, attempt.exit_code, attempt.reason = self.clock(), code, reason
        remove_attempt_tmp(self.root, attempt)

    def _finish(self, job: JobRecord, code: int | None, phase: JobPhase, reason: str) -> None:
        self._finish_attempt(job, code, reason)
        job.phase = phase

    def _stop(self, name: str) -> None:
        process = self.processes.pop(name)
        if not still_ours(process):
            process.wait()
            return
        processes.terminate_group(process.pid)
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            if still_ours(process):
                processes.kill_group(process.pid)
            process.wait()

    def stop(self, job: JobRecord, *, reason: str) -> None:
        """Stop a running job's process group (SIGTERM, then SIGKILL) and mark it failed."""
        if job.name in self.processes:
            process = self.processes[job.name]
            self._stop(job.name)
            self._finish(job, process.returncode, JobPhase.FAILED, reason)

    def stop_all(self, jobs: dict[str, JobRecord], *, reason: str) -> list[str]:
        """Stop every running process at once; returns the jobs stopped."""
        running = [name for name in self.processes if name in jobs]
        for name in running:
            if still_ours(self.processes[name]):
                processes.terminate_group(self.processes[name].pid)
        for name in running:
            self.stop(jobs[name], reason=reason)
        return running


def still_ours(process: subprocess.Popen[bytes] | WarmProcess) -> bool:
    """Whether `process` still runs under its pid, so that signalling that pid's group reaches it. A
    warm attempt is reaped by the warm-start server as soon as it ends: its pid may then be reused,
    so its start time is checked too (a cold one stays a zombie of ours until polled)."""
    if process.poll() is not None:
        return False
    return not isinstance(process, WarmProcess) or processes.alive(process.pid, process.started)


def attempt_tmp(root: Path, log: str) -> Path:
    """The attempt's TMPDIR, `.tp4/tmp/<its log's stem>`: what a job writes to temporary folders stays
    in the project, and what a killed one leaves there is removed when its attempt ends."""
    return safe_child(root / contract.EMBEDDED_DIR / "tmp", Path(log).stem)


def remove_attempt_tmp(root: Path, attempt: Attempt) -> None:
    shutil.rmtree(attempt_tmp(root, attempt.log), ignore_errors=True)


def new_log(logs_dir: Path, *, job: str, submission: str, attempt: int) -> Path:
    """A new, empty log file for one attempt of one submission, never an existing one:
    `<job>.<submission[:12]>.<attempt>.log` (then `-2`, `-3`, ... should that name exist)."""
    stem = f"{job}.{submission[:12] or 'local'}.{attempt}"
    for suffix in ("", *(f"-{n}" for n in range(2, 1000))):
        path = safe_child(logs_dir, f"{stem}{suffix}.log")
        try:
            with open(path, "xb"):
                return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{logs_dir}: no free log name for {stem}")
