"""`python -m controller ...`: parse the command line, call one function, print, exit."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from controller.local import inspecting
from controller import submitting
from controller.errors import InvalidInput, NameClash, Problem

if TYPE_CHECKING:
    from controller.cluster.kube.requesting import Api

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
BACKENDS = ("local", "kubernetes")
ENV_BACKEND = "TP4_BACKEND"


def _target(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Where grids run: accepted before or after the command (a command's copy never overrides the top's)."""
    default = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("where grids run")
    group.add_argument("--backend", choices=BACKENDS, default=default,
                       help=f"local processes, or a Kubernetes cluster (default: kubernetes when a cluster option "
                       f"below is given, else ${ENV_BACKEND}, else local)")
    group.add_argument("--kube", dest="backend", action="store_const", const="kubernetes", default=default,
                       help="short for --backend kubernetes")
    group.add_argument("-n", "--namespace", default=default,
                       help="the cluster's namespace (default: $TP4_NAMESPACE, the kubeconfig context's, in a pod its own)")
    group.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    group.add_argument("--context", default=default, help="kubeconfig context (default: its current-context)")


def backend(args: argparse.Namespace) -> str:
    """--backend; else kubernetes when a cluster option was given; else $TP4_BACKEND; else local."""
    if args.backend:
        return args.backend
    if args.namespace or args.kubeconfig or args.context:
        return "kubernetes"
    return os.environ.get(ENV_BACKEND) or "local"


def _command(commands: argparse._SubParsersAction, name: str, **kwargs: str) -> argparse.ArgumentParser:
    command = commands.add_parser(name, **kwargs)
    _target(command, top=False)
    return command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m controller", description="tp4: YOLO experiment grids as Jobs.")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project folder (default: current directory)")
    _target(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True)

    submit = _command(commands, "submit-grid", help="run every point of a grid, then its finalizer")
    submit.add_argument("grid", type=Path, help="grid file, e.g. grid.yaml")
    submit.add_argument("--parallelism", type=int, help="Jobs at once (default: grid's job.parallelism, else the CPU "
                        "count locally, every point on a cluster)")
    submit.add_argument("--weights", help="override model.weights (a name, a path, an s3:// URI or an architecture .yaml)")
    submit.add_argument("--no-wait", dest="wait", action="store_false",
                        help="kubernetes: return once the Grid is written instead of following it")

    render = commands.add_parser("render", help="print the Job manifests of a grid (validates it)")
    render.add_argument("grid", type=Path)

    status = _command(commands, "status", help="a table of the grid's points")
    status.add_argument("grid", nargs="?", help="grid name or file (default: every grid)")

    logs = _command(commands, "logs", help="the log of a Job's latest attempt")
    logs.add_argument("job", help="Job name, e.g. train-416-0.01-42")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the Job ends")
    logs.add_argument("--attempt", type=int, help="an earlier attempt (1-based)")

    report = _command(commands, "report", help="the decision summary and where the report is")
    report.add_argument("grid", help="grid name or file")

    delete = _command(commands, "delete", help="kubernetes: delete a Grid (its Jobs and pods with it)")
    delete.add_argument("grid", help="grid name or file")

    _command(commands, "run", help="kubernetes: the controller's reconcile loop (what the chart's Deployment runs)")

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
    except (InvalidInput, NameClash) as error:
        console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/] Jobs stopped, their runs marked KILLED", highlight=False)
        return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace, console: Console) -> int:
    root = args.root.resolve()
    if args.command not in ("render", "data") and (backend(args) == "kubernetes" or args.command == "run"):
        return _dispatch_cluster(args, console, root)
    if args.command == "delete":
        raise InvalidInput([Problem("delete", "is for grids on a cluster (--backend kubernetes); a local grid's "
                                    "state is .tp4/grids/<grid>/")])
    if args.command == "submit-grid" and not args.wait:
        raise InvalidInput([Problem("--no-wait", "is for a cluster (--backend kubernetes): a local grid runs "
                                    "in this process")])
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
        return submitting.build_dataset(source=args.source, out=args.out, seed=args.seed)
    raise AssertionError(args.command)


def _dispatch_cluster(args: argparse.Namespace, console: Console, root: Path) -> int:
    from controller.cluster import commands as cluster  # the local backend never loads the Kubernetes adapter

    api = cluster.open_api(kubeconfig=args.kubeconfig, context=args.context,
                           namespace=args.namespace or os.environ.get("TP4_NAMESPACE"))
    try:
        return _cluster_command(args, console, root, api)
    except cluster.UNREACHABLE as error:
        raise InvalidInput([Problem(f"the API server {api.connection.server}", str(error))]) from error


def _cluster_command(args: argparse.Namespace, console: Console, root: Path, api: "Api") -> int:
    from controller.cluster import commands as cluster

    if args.command == "submit-grid":
        return cluster.submit_grid(api=api, grid_path=args.grid, weights=args.weights, parallelism=args.parallelism,
                                   wait=args.wait, console=console)
    if args.command == "status":
        return cluster.show_status(api=api, grid=args.grid, console=console)
    if args.command == "logs":
        return cluster.show_logs(api=api, job=args.job, follow=args.follow, attempt=args.attempt)
    if args.command == "report":
        return cluster.show_report(api=api, grid=args.grid, console=console)
    if args.command == "delete":
        return cluster.delete_grid(api=api, grid=args.grid, console=console)
    if args.command == "run":
        return cluster.run_controller(api=api, root=root)
    raise InvalidInput([Problem(args.command, "runs locally only: drop --backend kubernetes")])


if __name__ == "__main__":
    sys.exit(main())
