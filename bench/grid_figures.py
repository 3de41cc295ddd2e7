"""P3, P4, P5: figures of a finished local grid (after `make demo`: GRID=tp4-lab).

    python bench/grid_figures.py [GRID] [--root PROJECT] [--only p3,p4,p5]

P3  Job start to first batch: each train run's phase/first_batch_s (process start -> first training
    batch done, dataset verification included), mean and max over the grid's newest submission.
P4  the finalizer: its Job's last attempt, start to end, from the local executor's state.
P5  the tracking server: `python -m controller ui` (what make ui runs) on a free port; the bench asks
    the UI's pages and the API calls they make for the grid (experiments, runs, each run, its metric
    history and artifacts) and sums the RSS of every process of the server.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contract  # noqa: E402
from bench.job_breakdown import train_runs  # noqa: E402
from bench.measure import PYTHON, Figure, table  # noqa: E402


def p3(root: Path, grid: str) -> list[Figure]:
    runs = train_runs(root=root, grid=grid)
    marks = [r.data.metrics[contract.METRIC_FIRST_BATCH] for r in runs if contract.METRIC_FIRST_BATCH in r.data.metrics]
    if not marks:
        return [Figure("P3", "Job start -> first batch", None, "s", "<= 5", False,
                       f"no run of {grid} logged {contract.METRIC_FIRST_BATCH}")]
    mean = statistics.fmean(marks)
    return [Figure("P3", "Job start -> first batch (mean over the grid's Jobs)", mean, "s", "<= 5", mean <= 5,
                   f"{len(marks)} Jobs, max {max(marks):.1f} s")]


def p4(root: Path, grid: str) -> list[Figure]:
    from controller.local.state import load_state

    state = load_state(root, grid)
    finalizers = [j for j in state.jobs.values() if j.role == contract.ROLE_FINALIZE and j.attempts
                  and j.attempts[-1].finished]
    if not finalizers:
        return [Figure("P4", "finalizer", None, "s", "<= 30", False, f"no finished finalizer in {grid}'s state")]
    attempt = finalizers[0].attempts[-1]
    seconds = (attempt.finished or 0.0) - attempt.started
    return [Figure("P4", "finalizer Job, start to end (test-split evaluation included)", seconds, "s", "<= 30",
                   seconds <= 30, f"exit {attempt.exit_code}")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        raw = answer.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def serve_pages(base: str, grid: str) -> int:
    """What a browser asks for the grid's pages; the number of requests made."""
    api = f"{base}/ajax-api/2.0/mlflow"
    count = 0

    def get(path: str, body: dict[str, Any] | None = None) -> Any:
        nonlocal count
        count += 1
        return _get(path if path.startswith("http") else f"{api}/{path}", body)

    get(f"{base}/")
    experiments = get("experiments/search", {"max_results": 100})["experiments"]
    for experiment in experiments:
        runs = get("runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 1000,
                                   "filter": f"tags.`{contract.TAG_GRID}` = '{grid}'"}).get("runs", [])
        for run in runs:
            run_id = run["info"]["run_id"]
            get(f"runs/get?run_id={run_id}")
            get(f"artifacts/list?run_id={run_id}")
            for key in list(run["data"].get("metrics", []))[:5]:
                get(f"metrics/get-history?run_id={run_id}&metric_key={urllib.parse.quote(key['key'])}")
    return count


def p5(root: Path, grid: str) -> list[Figure]:
    import psutil

    port = _free_port()
    server = subprocess.Popen([PYTHON, "-m", "controller", "--root", str(root), "ui", "--port", str(port)],
                              cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _get(f"{base}/health")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    return [Figure("P5", "tracking server RSS", None, "GB", "<= 0.5", False,
                                   f"`controller ui` did not answer on {base}")]
                time.sleep(0.5)
        requests = serve_pages(base, grid)
        root_process = psutil.Process(server.pid)
        processes = [root_process, *root_process.children(recursive=True)]
        sizes = [(" ".join(p.cmdline()[1:4]), p.memory_info().rss / 2**20) for p in processes]
        rss = sum(mb for _, mb in sizes) / 2**10
    finally:
        for child in psutil.Process(server.pid).children(recursive=True):
            child.terminate()
        server.terminate()
        server.wait(timeout=30)
    return [Figure("P5", "`controller ui` RSS, all processes, after the grid's pages", rss, "GB", "<= 0.5",
                   rss <= 0.5, f"{requests} requests; " + ", ".join(f"{cmd}: {mb:.0f} MB" for cmd, mb in sizes))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", nargs="?", default="tp4-lab")
    parser.add_argument("--root", type=Path, default=Path.cwd())
    parser.add_argument("--only", default="p3,p4,p5")
    args = parser.parse_args()
    parts = {"p3": p3, "p4": p4, "p5": p5}
    figures: list[Figure] = []
    for part in args.only.split(","):
        if part not in parts:
            raise SystemExit(f"--only {part}: expected p3, p4 or p5")
        figures += parts[part](args.root.resolve(), args.grid)
    print(table(figures))
    print(json.dumps([vars(f) for f in figures]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
