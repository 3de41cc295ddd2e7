"""P2: the control plane at 10,000 points, no training.

    python bench/p2_scale.py [--points 10000] [--only render,local,cluster]

render   `python -m controller render` of a 10,000-point grid (--max-points): Jobs rendered per second, peak RSS.
local    the local executor's state store (controller/local/state.py) as the executor uses it: one
         save_state per step of what changed, each step ending one Job and starting the next, a snapshot
         at the start and the end; the cost (seconds, bytes written) of a grid of
         n points at n = N/80, N/40, N/20, the growth exponent of the total (1 = linear, 2 = quadratic)
         and the total projected to N points.
cluster  `python -m controller run` as a process against the tests' fake API server (real HTTP,
         tests/helpers/fake_kube.py): a Grid of N points (parallelism N) submitted; the bench marks
         each Job done as soon as it exists; API create calls per Job, Jobs created per second,
         the controller's peak RSS, the Grid status size at 1 % and at the end, and the time from
         the finalizer's end to the Grid's final status.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from bench.measure import PYTHON, REPO, Figure, run_child, table  # noqa: E402


def grid_file(folder: Path, points: int) -> Path:
    """The lab grid with lr0 x seed axes giving `points` points."""
    spec = yaml.safe_load((REPO / "grid.yaml").read_text())
    side = math.isqrt(points)
    if side * side != points:
        raise SystemExit(f"--points {points}: use a square (100 x 100 = 10,000)")
    spec.update(name=f"bench-{points}", experiment=f"bench-{points}")
    spec["axes"] = {"lr0": [round(0.001 + i * 0.0001, 4) for i in range(side)], "seed": list(range(1, side + 1))}
    spec["job"]["name_template"] = "train-{lr0}-{seed}"
    path = folder / f"grid-{points}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# --- render ------------------------------------------------------------------------------------


def bench_render(points: int, folder: Path) -> list[Figure]:
    grid = grid_file(folder, points)
    out = folder / "render.yaml"
    child = run_child([PYTHON, "-m", "controller", "render", str(grid), "--max-points", str(points)], stdout_to=out)
    if child.returncode != 0:
        return [Figure("P2", f"render {points:,} points", None, "", ">= 1,000 Jobs/s", False, child.output[-200:])]
    jobs = sum(1 for line in out.read_text().splitlines() if line == "kind: Job")
    rate = jobs / child.seconds
    return [Figure("P2", f"render {points:,} points: Jobs/s (whole command)", rate, "Jobs/s", ">= 1,000",
                   rate >= 1000, f"{jobs:,} Jobs in {child.seconds:.1f} s"),
            Figure("P2", "render: peak RSS", child.peak_rss_mb, "MB", "-", None,
                   f"{out.stat().st_size / 2**20:.0f} MB of YAML printed")]


# --- local state -----------------------------------------------------------------------------


def simulate_local(points: int, folder: Path) -> tuple[float, int]:
    """Seconds and bytes of save_state over a grid of `points` points run one Job at a time, each step
    saving what changed as the executor does (the Job that ended and the one that started; a snapshot
    at the start and at the end)."""
    from contract.grid import GridSpec
    from controller.core.expanding import expand
    from controller.core.reconciling import JobPhase
    from controller.core.rendering import RenderSettings, render_train_job
    from controller.local.state import GridState, JobRecord, save_state

    spec = yaml.safe_load(grid_file(folder, 10_000).read_text())
    side = math.isqrt(points)
    spec["axes"] = {"lr0": spec["axes"]["lr0"][:side], "seed": spec["axes"]["seed"][: points // side]}
    grid = GridSpec.model_validate(spec)
    settings = RenderSettings(tracking_uri="sqlite:///x.db", backend="local", parent_run_id="0" * 32)
    root = folder / f"local-{points}"
    state = GridState(grid=grid.name)
    started = time.perf_counter()
    written = save_state(root, state)
    seconds = time.perf_counter() - started
    previous: JobRecord | None = None
    for point in expand(grid, dataset_md5="0" * 32 + ".dir"):
        manifest = render_train_job(grid, point, settings, dataset_md5="0" * 32 + ".dir")
        changed = [point.name]
        if previous is not None:  # the previous step's Job ended
            previous.phase = JobPhase.SUCCEEDED
            changed.append(previous.name)
        previous = state.jobs[point.name] = JobRecord(name=point.name, grid=grid.name, spec_hash=point.spec_hash,
                                                      submission="0" * 32, role="train", manifest=manifest)
        started = time.perf_counter()
        written += save_state(root, state, changed=changed)
        seconds += time.perf_counter() - started
    started = time.perf_counter()
    written += save_state(root, state)
    return seconds + time.perf_counter() - started, written


def bench_local(points: int, folder: Path) -> list[Figure]:
    sizes = [points // 80, points // 40, points // 20]
    sizes = sorted({max(4 ** (i + 1), round(math.sqrt(s)) ** 2) for i, s in enumerate(sizes)})  # 3 distinct
    measured = [(n, *simulate_local(n, folder)) for n in sizes]
    (n1, t1, b1), (n2, t2, b2) = measured[0], measured[-1]
    exponent = math.log(t2 / t1) / math.log(n2 / n1)
    bytes_exponent = math.log(b2 / b1) / math.log(n2 / n1)
    projected = t2 * (points / n2) ** exponent
    detail = ", ".join(f"n={n}: {t:.2f} s, {b / 2**20:.1f} MB written" for n, t, b in measured)
    return [Figure("P2", "local state: growth exponent of save_state's total cost", exponent, "",
                   "<= 1.2 (linear)", exponent <= 1.2, f"{detail}; bytes written: exponent {bytes_exponent:.2f}"),
            Figure("P2", f"local state: save_state total projected to {points:,} points", projected, "s", "-", None,
                   f"{b2 / n2 / 2**10:.0f} KB written per Job at n={n2}; projected to {points:,} points: "
                   f"~{b2 * (points / n2) ** bytes_exponent / 2**20:,.0f} MB in all")]


# --- cluster ---------------------------------------------------------------------------------


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def bench_cluster(points: int, folder: Path, *, timeout: float, python: str = PYTHON) -> list[Figure]:
    import subprocess

    from controller.cluster.kube import GRIDS
    from controller.cluster.resource import grid_object
    from tests.helpers.cluster_harness import connect, grid_status, small_spec
    from tests.helpers.crd_schema import grid_validator
    from tests.helpers.fake_kube import FakeKube

    side = math.isqrt(points)
    spec = small_spec(name="scale", axes={"lr0": [round(0.001 + i * 0.0001, 4) for i in range(side)],
                                          "seed": list(range(1, side + 1))})
    spec["job"] = {"name_template": "train-{lr0}-{seed}", "parallelism": points}
    with FakeKube(grid_schema=grid_validator()) as kube:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'cluster-mlflow.db'}",
               "TP4_JOBS_TRACKING_URI": "http://tp4-mlflow:5000", "TP4_TRAINER_IMAGE": "tp4-trainer:0.1.0",
               "TP4_NAMESPACE": "default", "KUBECONFIG": str(kube.kubeconfig(folder)), "PYTHONPATH": str(REPO)}
        log = open(folder / "controller.log", "w")  # noqa: SIM115
        # The bench measures the controller, not the fake: the fake's strict OpenAPI validation (~12 ms
        # a Job, in this process) is off here; the tests keep it.
        kube.validate = lambda plural, obj: None  # type: ignore[method-assign]
        # Nor its Nagle delays: http.server sends headers and body apart, and without TCP_NODELAY every
        # answer waits for the client's delayed ACK (~40 ms a request).
        kube.server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        profile = os.environ.get("P2_PROFILE")  # a file: the controller runs under cProfile
        argv = [python, *(["-m", "cProfile", "-o", profile] if profile else []), "-m", "controller", "run"]
        controller = subprocess.Popen(argv, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
        done: set[str] = set()
        first_created: list[float] = []
        status_sizes: dict[str, int] = {}
        stop = threading.Event()

        def finish_new_jobs() -> None:  # the Job controller and kubelet: every Job ends at once, succeeded
            while not stop.is_set():
                with kube.cond:
                    names = [name for (plural, _, name) in kube.objects if plural == "jobs" and name not in done]
                for name in names:
                    if not first_created:
                        first_created.append(time.perf_counter())
                    kube.finish_job(name)
                    done.add(name)
                time.sleep(0.05)

        finisher = threading.Thread(target=finish_new_jobs, daemon=True)
        try:
            # the controller imports, opens its MLflow store and takes its Lease (and lists Grids and Jobs)
            lease_deadline = time.perf_counter() + 60

            def leased() -> bool:
                with kube.cond:
                    return any(plural == "leases" for (plural, _, _) in kube.objects)

            while time.perf_counter() < lease_deadline and controller.poll() is None and not leased():
                time.sleep(0.1)
            time.sleep(1)
            idle_rss = rss_mb(controller.pid) if controller.poll() is None else math.nan
            submitted = time.perf_counter()
            connect(kube).create(GRIDS, grid_object(spec=spec, namespace="default",
                                                    submitted_at="2026-01-01T00:00:00Z"))
            finisher.start()
            deadline = submitted + timeout
            all_created = finalizer_done = ended = None
            while time.perf_counter() < deadline and controller.poll() is None:
                status = grid_status(kube, "scale")
                train_jobs = len([n for n in list(done) if n.startswith("train-")])
                succeeded = (status.get("counts") or {}).get("succeeded", 0)
                if succeeded >= max(1, points // 100) and "1%" not in status_sizes:
                    status_sizes["1%"] = len(json.dumps(status))
                if all_created is None and train_jobs >= points:
                    all_created = time.perf_counter()
                if finalizer_done is None and any(n.startswith("finalize-") for n in list(done)):
                    finalizer_done = time.perf_counter()
                if status.get("phase") in ("Succeeded", "Failed") and finalizer_done is not None:
                    ended = time.perf_counter()
                    status_sizes["end"] = len(json.dumps(status))
                    break
                time.sleep(0.05)
            rss = peak_rss_mb(controller.pid) if controller.poll() is None else math.nan
        finally:
            stop.set()
            controller.send_signal(signal.SIGTERM)
            try:
                controller.wait(timeout=30)
            except subprocess.TimeoutExpired:
                controller.kill()
            log.close()
        posts = len([r for r in kube.sent("POST", "/jobs")])
        jobs = len([k for k in kube.objects if k[0] == "jobs"])
    figures = [Figure("P2", f"cluster {points:,} points: API create calls per Job", posts / max(jobs, 1), "",
                      "1.0", posts == jobs, f"{posts:,} POSTs for {jobs:,} Jobs")]
    if all_created is None or ended is None:
        figures.append(Figure("P2", "cluster: grid reconciled to its end", None, "", f"< {timeout:.0f} s", False,
                              f"not within {timeout:.0f} s: {len(done):,} Jobs seen; see {folder}/controller.log"))
    if all_created is not None:
        rate = points / (all_created - submitted)
        figures.append(Figure("P2", "cluster: Jobs created per second (submit -> last train Job)", rate, "Jobs/s",
                              ">= 1,000", rate >= 1000, f"{all_created - submitted:.1f} s for {points:,}"))
    figures.append(Figure("P2", "cluster: controller peak RSS (VmHWM)", rss, "MB", "<= 150",
                          rss <= 150 if math.isfinite(rss) else False,
                          f"{idle_rss:.0f} MB before the Grid (imports, MLflow store, Lease); "
                          f"{(rss - idle_rss) * 1024 / points:.1f} KB a point over that; "
                          f"python: {'this one' if python == PYTHON else python}"))
    if "1%" in status_sizes and "end" in status_sizes:
        figures.append(Figure("P2", "cluster: Grid status size at 1 % / at the end", status_sizes["end"], "bytes",
                              "constant", status_sizes["end"] <= 2 * status_sizes["1%"],
                              f"{status_sizes['1%']:,} B at 1 %"))
    if ended is not None and finalizer_done is not None:
        figures.append(Figure("P2", "cluster: finalizer Job ended -> Grid final status", ended - finalizer_done, "s",
                              "-", None, f"whole grid {ended - submitted:.1f} s"))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--only", default="render,local,cluster")
    parser.add_argument("--timeout", type=float, default=900, help="seconds the cluster grid may take")
    parser.add_argument("--controller-python", default=PYTHON,
                        help="cluster: the interpreter that runs the controller, e.g. a virtual environment "
                        "built from images/controller/requirements.txt (the controller image's packages: "
                        "mlflow-skinny, no pandas); default: this one")
    args = parser.parse_args()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="tp4-bench-p2-") as tmp:
        folder = Path(tmp)
        for part in args.only.split(","):
            started = time.perf_counter()
            if part == "render":
                figures += bench_render(args.points, folder)
            elif part == "local":
                figures += bench_local(args.points, folder)
            elif part == "cluster":
                figures += bench_cluster(args.points, folder, timeout=args.timeout, python=args.controller_python)
            else:
                raise SystemExit(f"--only {part}: expected render, local or cluster")
            print(f"[p2 {part}: {time.perf_counter() - started:.0f} s]", file=sys.stderr, flush=True)
    print(table(figures))
    print(json.dumps([vars(f) for f in figures]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
