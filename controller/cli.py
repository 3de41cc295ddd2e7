"""`python -m controller ...`: parse the command line, call one function, print, exit."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console

import contract
from contract.grid import DEFAULT_MAX_POINTS
from controller import submitting
from controller.backend import BACKENDS, open_backend
from controller.baseline import add_arguments as add_baseline_arguments
from controller.errors import InvalidInput, NameClash
from controller.output import OUTPUTS, print_manifests
from controller.submitting import NotFound

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
ENV_BACKEND = contract.ENV_BACKEND


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
                       help="the cluster's namespace (default: $TP4_NAMESPACE, the kubeconfig context's, "
                       "in a pod its own)")
    group.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    group.add_argument("--context", default=default, help="kubeconfig context (default: its current-context)")


def backend(args: argparse.Namespace) -> str:
    """--backend; else kubernetes when a cluster option was given; else $TP4_BACKEND; else local."""
    if args.backend:
        return args.backend
    if args.namespace or args.kubeconfig or args.context:
        return "kubernetes"
    return os.environ.get(ENV_BACKEND) or "local"


def _command(commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, *,
             help: str) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=help)
    _target(command, top=False)
    return command


def _max_points(command: argparse.ArgumentParser) -> None:
    command.add_argument("--max-points", type=int, default=DEFAULT_MAX_POINTS, metavar="N",
                         help=f"refuse a grid of more than N points (default {DEFAULT_MAX_POINTS:,}): a typo in "
                         "an axis must not start millions of Jobs; raise it for a grid that really is larger")


def _output(command: argparse.ArgumentParser, *, default: str) -> None:
    command.add_argument("-o", "--output", choices=OUTPUTS, default=None,
                         help=f"json or yaml (every column, parseable), name (job/NAME lines), wide (default: "
                         f"{default})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m controller", description="tp4: YOLO experiment grids as Jobs.",
                                     epilog="exit codes: 0 done, 1 failed or not found (a grid, Job or report that "
                                     "does not exist), 2 bad input (a flag, a value, a grid file), 130 interrupted; "
                                     "docs/cli.md")
    parser.add_argument("--version", action="version", version=f"tp4 {contract.CODE_VERSION}")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project folder (default: current directory)")
    _target(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True)

    submit = _command(commands, "submit-grid", help="run every point of a grid, then its finalizer")
    submit.add_argument("grid", type=Path, help="grid file, e.g. grid.yaml")
    submit.add_argument("--parallelism", type=int, help="Jobs at once (default: grid's job.parallelism, else the CPU "
                        "count locally, every point on a cluster)")
    submit.add_argument("--weights", help="override model.weights (a name, a path, an s3:// URI or an "
                        "architecture .yaml)")
    _max_points(submit)
    submit.add_argument("--no-wait", dest="wait", action="store_false",
                        help="kubernetes: return once the Grid is written instead of following it")

    render = commands.add_parser("render", help="print the Job manifests of a grid (validates it)")
    render.add_argument("grid", type=Path)
    _max_points(render)
    _output(render, default="the manifests as YAML; wide: a table of the Jobs and their arguments")

    status = _command(commands, "status", help="a table of the grid's points")
    status.add_argument("grid", nargs="?", help="grid name or file (default: every grid)")
    _output(status, default="a table; wide: also each Job's role, submission, MLflow run and start")
    status.add_argument("--show-obsolete", action="store_true",
                        help="also the Jobs of an earlier submission that the grid no longer has (marked obsolete)")

    logs = _command(commands, "logs", help="the log of a Job's latest attempt")
    logs.add_argument("job", help="Job name, e.g. train-416-0.01-42 or job/train-416-0.01-42 (as status -o name "
                      "prints it)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the Job ends")
    logs.add_argument("--attempt", type=int, help="attempt N (1-based), counted over every submission whose log "
                      "is kept (default: the latest)")

    report = _command(commands, "report", help="the decision summary and where the report is")
    report.add_argument("grid", help="grid name or file")

    finalize = _command(commands, "finalize", help="run the finalizer of a grid's latest submission again "
                        "(same parent run) and print its decision")
    finalize.add_argument("grid", help="grid name or file")
    finalize.add_argument("--no-wait", dest="wait", action="store_false",
                          help="kubernetes: return once the finalize Job is created again")

    delete = _command(commands, "delete", help="delete a grid: its running Jobs stopped, its state and logs "
                      "removed (a cluster: the Grid, its Jobs and pods); its report and MLflow runs kept")
    delete.add_argument("grid", help="grid name or file")
    delete.add_argument("--purge-runs", action="store_true", help="also delete the grid's MLflow runs (parent "
                        "runs, points, finalizers; not the baseline's)")

    _command(commands, "run", help="kubernetes: the controller's reconcile loop (what the chart's Deployment runs)")

    demo = commands.add_parser("demo", help="the whole lab: build the dataset if missing, run the lab grid, "
                               "print the report's path (make demo without make)")
    demo.add_argument("--grid", type=Path, default=Path("grid.yaml"), help="grid file (default: grid.yaml)")
    demo.add_argument("--source", default=None, help="COCO128 source when the dataset is built (default: "
                      "$TP4_COCO128_SOURCE, else ../shared/datasets/coco128, else the official URL)")
    demo.add_argument("--weights", default=None, help="override model.weights (default: ../shared's "
                      "COCO-pretrained backbone when present)")

    baseline = commands.add_parser("baseline", help="the lab's baseline run (handout step 5): one train Job with the "
                                   "grid's recipe and weights, in its experiment, never counted as a grid point")
    add_baseline_arguments(baseline)

    ui = commands.add_parser("ui", help="the MLflow UI on this project's runs (what make ui runs)")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=_port, default=os.environ.get("UI_PORT", "5000"),
                    help="the UI's port (default: $UI_PORT, else 5000)")

    data = commands.add_parser("data", help="the dataset").add_subparsers(dest="data_command", required=True)
    build = data.add_parser("build", help="build data/tiny_coco from COCO128")
    build.add_argument("--source", default=None, help="coco128.zip URL, a local zip or folder "
                       "(default: $TP4_COCO128_SOURCE, else the official URL)")
    build.add_argument("--out", type=Path, default=Path("data/tiny_coco"))
    build.add_argument("--seed", type=int, default=None,
                       help="the split's seed (default: tinycoco's, 100: COCO128 gives 40/10/10)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console, errors = Console(), Console(stderr=True)
    try:
        return _dispatch(args, console)
    except (InvalidInput, NameClash) as error:
        errors.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except NotFound as error:
        errors.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        errors.print("[yellow]interrupted:[/] Jobs stopped, their runs marked KILLED", highlight=False)
        return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace, console: Console) -> int:
    root = args.root.resolve()
    if args.command == "render":
        text = submitting.render_grid(grid_path=args.grid, root=root, max_points=args.max_points)
        print(print_manifests(text, args.output), end="")
        return 0
    if args.command == "data":
        return submitting.build_dataset(source=args.source, out=args.out, seed=args.seed)
    if args.command == "ui":
        from controller.ui import serve

        return serve(root=root, host=args.host, port=args.port, console=console)
    if args.command == "demo":
        from controller.demo import run_demo

        grid = args.grid if args.grid.is_absolute() else root / args.grid
        return run_demo(root=root, grid=grid, source=args.source, weights=args.weights, console=console)
    if args.command == "baseline":
        from controller.baseline import command

        return command(args, root=root, console=console)
    kind = "kubernetes" if args.command == "run" else backend(args)
    target = open_backend(kind=kind, root=root, namespace=args.namespace or os.environ.get("TP4_NAMESPACE"),
                          kubeconfig=args.kubeconfig, context=args.context)
    if args.command == "submit-grid":
        return target.submit_grid(grid_path=args.grid, weights=args.weights, parallelism=args.parallelism,
                                  wait=args.wait, console=console, max_points=args.max_points)
    if args.command == "status":
        return target.show_status(grid=args.grid, console=console, output=args.output,
                                  show_obsolete=args.show_obsolete)
    if args.command == "logs":
        return target.show_logs(job=args.job, follow=args.follow, attempt=args.attempt)
    if args.command == "report":
        return target.show_report(grid=args.grid, console=console)
    if args.command == "finalize":
        return target.finalize_grid(grid=args.grid, wait=args.wait, console=console)
    if args.command == "delete":
        return target.delete_grid(grid=args.grid, console=console, purge_runs=args.purge_runs)
    if args.command == "run":
        return target.run_controller()
    raise AssertionError(args.command)


def _port(text: str) -> int:
    """A TCP port (1-65535), from --port or $UI_PORT; argparse reports anything else as bad input (exit 2)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535)")
    return port


if __name__ == "__main__":
    sys.exit(main())
