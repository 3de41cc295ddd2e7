"""`python -m controller ...`: parse the command line, call one function, print, exit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from controller import inspecting, submitting
from controller.errors import InvalidInput, NameClash
from tinycoco.errors import DatasetError

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m controller", description="tp4: YOLO experiment grids as Jobs.")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project folder (default: current directory)")
    commands = parser.add_subparsers(dest="command", required=True)

    submit = commands.add_parser("submit-grid", help="run every point of a grid, then its finalizer")
    submit.add_argument("grid", type=Path, help="grid file, e.g. grid.yaml")
    submit.add_argument("--parallelism", type=int, help="Jobs at once (default: grid's job.parallelism, else the CPU count)")
    submit.add_argument("--weights", help="override model.weights (a name, a path, an s3:// URI or an architecture .yaml)")

    render = commands.add_parser("render", help="print the Job manifests of a grid (validates it)")
    render.add_argument("grid", type=Path)

    status = commands.add_parser("status", help="a table of the grid's points")
    status.add_argument("grid", nargs="?", help="grid name or file (default: every grid)")

    logs = commands.add_parser("logs", help="the log of a Job's latest attempt")
    logs.add_argument("job", help="Job name, e.g. train-416-0.01-42")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the Job ends")
    logs.add_argument("--attempt", type=int, help="an earlier attempt (1-based)")

    report = commands.add_parser("report", help="the decision summary and where the report is")
    report.add_argument("grid", help="grid name or file")

    data = commands.add_parser("data", help="the dataset").add_subparsers(dest="data_command", required=True)
    build = data.add_parser("build", help="build data/tiny_coco from COCO128")
    build.add_argument("--source", default=None, help="coco128.zip URL, a local zip or folder "
                       "(default: $TP4_COCO128_SOURCE, else the official URL)")
    build.add_argument("--out", type=Path, default=Path("data/tiny_coco"))
    build.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console()
    try:
        return _dispatch(args, console)
    except (InvalidInput, NameClash, DatasetError) as error:
        console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/] Jobs stopped, their runs marked KILLED", highlight=False)
        return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace, console: Console) -> int:
    root = args.root.resolve()
    if args.command == "submit-grid":
        return submitting.submit_grid(grid_path=args.grid, root=root, parallelism=args.parallelism,
                                      weights=args.weights, console=console)
    if args.command == "render":
        print(submitting.render_grid(grid_path=args.grid, root=root), end="")
        return 0
    if args.command == "status":
        return inspecting.show_status(root=root, grid=args.grid, console=console)
    if args.command == "logs":
        return inspecting.show_logs(root=root, job=args.job, follow=args.follow, attempt=args.attempt)
    if args.command == "report":
        return inspecting.show_report(root=root, grid=args.grid, console=console)
    if args.command == "data":
        return submitting.build_dataset(source=args.source, out=args.out, seed=args.seed, console=console)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
