"""What the benchmarks share: a child process's wall time and peak RSS, a figure beside its target."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


@dataclass(frozen=True)
class Figure:
    """One measured figure: `value` in `unit`, `target` as text (e.g. "<= 150"), `ok` None when not judged."""

    bench: str
    what: str
    value: float | None
    unit: str
    target: str
    ok: bool | None
    note: str = ""

    def row(self) -> str:
        value = "-" if self.value is None else (f"{self.value:,.0f}" if abs(self.value) >= 100 else f"{self.value:.3g}")
        verdict = {True: "ok", False: "MISS", None: ""}[self.ok]
        return f"| {self.bench} | {self.what} | {value} {self.unit} | {self.target} | {verdict} | {self.note} |"


def table(figures: list[Figure]) -> str:
    head = "| bench | what | measured | target | | note |\n|---|---|---|---|---|---|"
    return "\n".join([head, *(f.row() for f in figures)])


def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.lower().startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cores ({cpu}), load average {load:.1f} at the start"


@dataclass(frozen=True)
class Child:
    returncode: int
    seconds: float
    peak_rss_mb: float  # the process's own peak (its children not included)
    output: str


def run_child(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path = REPO,
              stdout_to: Path | None = None) -> Child:
    """Run `argv`, wait for it with wait4: wall seconds and the peak RSS the kernel recorded for it."""
    started = time.perf_counter()
    out = open(stdout_to, "w") if stdout_to else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    try:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        errors = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if stdout_to:
            out.close()  # type: ignore[union-attr]
    return Child(returncode=process.returncode, seconds=time.perf_counter() - started,
                 peak_rss_mb=usage.ru_maxrss / 1024, output=errors)
