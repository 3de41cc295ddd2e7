"""`python -m jobs.finalize`: rank a finished grid, write and log its decision report.

Exit codes: 0 when the report was written (a NO decision included); 2 when
running it again cannot help: the grid spec (the parent run or its grid.json)
is missing or bad, the tracking credentials are refused, or MLflow answers
that a request is bad or names something that does not exist (the finalize
Job's podFailurePolicy then fails it at once, without retries); 1 on any
other failure (the server unreachable or failing, the test evaluation),
which a retry may pass, including a failed model registration after the
report was written. A champion whose version, run or weights are gone is no
failure: the decision proceeds as with no champion.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

import contract
from jobs.common.environment import configure_environment
from jobs.common.errors import BadInput
from jobs.finalize.finalizing import Options, Outcome, deterministic, finalize
from jobs.finalize.gridrules import GridSpecError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobs.finalize", description=__doc__.splitlines()[0])
    parser.add_argument("--parent-run-id", default=os.environ.get(contract.ENV_PARENT_RUN_ID),
                        help=f"the grid's parent MLflow run (default: ${contract.ENV_PARENT_RUN_ID})")
    parser.add_argument("--reports-dir", default=os.environ.get(contract.ENV_REPORTS_DIR, "reports"),
                        help=f"where reports/<grid>/ is written (default: ${contract.ENV_REPORTS_DIR} or ./reports)")
    parser.add_argument("--tracking-uri", default=None,
                        help=f"MLflow tracking URI (default: ${contract.ENV_TRACKING_URI}, else the embedded store)")
    parser.add_argument("--data", default=None,
                        help=f"dataset folder for the test split (default: ${contract.ENV_DATASET_PATH}, "
                             "else the grid's dataset.path)")
    parser.add_argument("--no-test-eval", action="store_true", help="do not evaluate the candidate on the test split")
    parser.add_argument("--no-register", action="store_true", help="do not log, register or alias a model")
    return parser.parse_args(argv)


def summary(outcome: Outcome) -> str:
    candidate = outcome.candidate
    lines = [f"grid {outcome.grid}: decision {outcome.verdict}"
             + (f" (failed gates: {', '.join(outcome.failed_gates)})" if outcome.failed_gates else "")]
    if candidate is not None:
        lines.append(f"candidate: {candidate.point} (run {candidate.run_id})")
    lines.append("test split: " + ("evaluated" if outcome.test.evaluated else f"not evaluated ({outcome.test.reason})"))
    registry = outcome.registry
    if registry and not registry.get("error"):
        lines.append(f"registry: {registry.get('name')} v{registry.get('version')} @challenger"
                     + (" @champion" if registry.get("champion_moved") else ""))
    lines += [f"error: {e}" for e in outcome.errors]
    lines.append(f"report: {outcome.report_dir / 'decision.md'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    configure_environment()  # before ultralytics is imported (the test-split evaluation)
    args = parse_args(argv)
    if not args.parent_run_id:
        print(f"error: --parent-run-id or ${contract.ENV_PARENT_RUN_ID} is required", file=sys.stderr)
        return contract.EXIT_BAD_INPUT
    from jobs.common.tracking import make_client

    options = Options(parent_run_id=args.parent_run_id, reports_dir=Path(args.reports_dir),
                      evaluate_test=not args.no_test_eval, register=not args.no_register,
                      data_path=args.data or os.environ.get(contract.ENV_DATASET_PATH))
    try:
        outcome = finalize(client=make_client(uri=args.tracking_uri), options=options)
    except GridSpecError as exc:
        print("error: bad grid spec:\n" + "\n".join(f"  {p}" for p in exc.problems), file=sys.stderr)
        return contract.EXIT_BAD_INPUT
    except BadInput as exc:  # e.g. wrong tracking credentials: retrying cannot help
        print(f"error: {exc}", file=sys.stderr)
        return contract.EXIT_BAD_INPUT
    except Exception as exc:  # the Job's log must say why, in one line at the end
        traceback.print_exc()
        again = "retrying cannot help" if deterministic(exc) else "a retry may pass"
        print(f"error: finalizer failed ({again}): {type(exc).__name__}: {exc}", file=sys.stderr)
        return contract.EXIT_BAD_INPUT if deterministic(exc) else contract.EXIT_FAILED
    print(summary(outcome))
    return exit_code(outcome)


def exit_code(outcome: Outcome) -> int:
    """0 without errors; else 1 when a retry may pass, 2 when every error is deterministic."""
    if not outcome.errors:
        return contract.EXIT_OK
    return contract.EXIT_FAILED if outcome.retryable else contract.EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
