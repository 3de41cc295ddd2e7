"""`make bench`: P1-P5 in one table, the targets beside the figures, the machine in the header.

    python bench/run_all.py [--grid tp4-lab] [--points 10000] [--cluster-points 10000] [--with-p1] [--with-p6]

P3-P5 read a finished local grid (--grid, default tp4-lab: `make demo` first); P2 needs nothing;
P1 runs the bare loop and a grid of its own (many minutes on 2 cores): only with --with-p1;
P6 (bench/p6_search.py: TPE and median stopping against the lab grid, 3 repetitions): only with --with-p6.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import grid_figures, p2_scale  # noqa: E402
from bench.measure import PYTHON, REPO, Figure, machine, table  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="tp4-lab")
    parser.add_argument("--points", type=int, default=10_000, help="P2 render and local state")
    parser.add_argument("--cluster-points", type=int, default=10_000, help="P2 against the fake API server")
    parser.add_argument("--cluster-timeout", type=float, default=1800)
    parser.add_argument("--with-p1", action="store_true")
    parser.add_argument("--with-p6", action="store_true", help="the search benchmark (an hour of training)")
    args = parser.parse_args()
    header = f"tp4 benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}"
    figures: list[Figure] = []
    if args.with_p1:
        import subprocess

        subprocess.run([PYTHON, str(REPO / "bench" / "p1_lab_vs_loop.py")], check=False)
    if args.with_p6:
        import subprocess

        subprocess.run([PYTHON, str(REPO / "bench" / "p6_search.py")], check=False)
    with tempfile.TemporaryDirectory(prefix="tp4-bench-") as tmp:
        folder = Path(tmp)
        for name, run in (
            ("P2 render", lambda: p2_scale.bench_render(args.points, folder)),
            ("P2 local state", lambda: p2_scale.bench_local(args.points, folder)),
            ("P2 cluster", lambda: p2_scale.bench_cluster(args.cluster_points, folder,
                                                          timeout=args.cluster_timeout)),
            ("P3", lambda: grid_figures.p3(REPO, args.grid)),
            ("P4", lambda: grid_figures.p4(REPO, args.grid)),
            ("P5", lambda: grid_figures.p5(REPO, args.grid)),
        ):
            started = time.perf_counter()
            figures += run()
            print(f"[{name}: {time.perf_counter() - started:.0f} s]", file=sys.stderr, flush=True)
    threads = os.environ.get("TP4_TORCH_THREADS", "cores / parallel Jobs")
    print(f"\n{header}\ntrain Jobs' torch threads: {threads} (threads per Job x Jobs = cores)\n")
    print(table(figures))
    if not args.with_p1:
        print("\nP1 not run (minutes of training): python bench/p1_lab_vs_loop.py, or make bench BENCH_ARGS=--with-p1")
    if not args.with_p6:
        print("P6 not run (an hour of training): python bench/p6_search.py, or make bench BENCH_ARGS=--with-p6")
    return 0


if __name__ == "__main__":
    sys.exit(main())
