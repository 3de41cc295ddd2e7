"""A Job's body for the conformance suite: what `python -m jobs.train` / `jobs.finalize` leave in MLflow,
without training (two cores: a YOLO training per point would not fit the suite's few minutes).

`python -m tests.conformance.fake_job train|finalize`, with the Job's own environment (the rendered
manifest's: tracking URI, experiment, parent run, point, spec hash, attempt, phase). What each point does
is read from the JSON file named by SCRIPT_ENV: {"<point>": {"exit": [code of attempt 1, 2, ...],
"value": objective, "curve": [per-epoch values], "epoch_seconds": wall time of an epoch}}; a point not
named succeeds with value 0.5; LATE_KEY's entry, when given, is what a search trial numbered "from_trial"
or later does (its number read from its trial tag on the parent run: a search names its points as it asks
them). A train
attempt logs a child run of the parent run, tagged as the real Job tags it, with the objective and the
per-epoch curve (`epoch/<metric>`, step = epoch); between epochs it reads its run's tags and ends early,
FINISHED and tagged tp4.stopped_early, when the controller asked it to stop (as jobs.train does). Its
run ends FINISHED on exit code 0, FAILED otherwise. The finalizer tags the parent run with a decision
and logs decision.json beside it. An MLflow that cannot be reached is tried again for RETRY_SECONDS
(as jobs.common.connecting does), then the attempt exits 1.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import contract

SCRIPT_ENV = "TP4_CONFORMANCE_SCRIPT"
EPOCH_SECONDS_ENV = "TP4_CONFORMANCE_EPOCH_SECONDS"  # the wall time of one fake epoch (default 0)
RETRY_SECONDS = 60.0
LATE_KEY = "*late-search-trial"


def _script() -> dict[str, Any]:
    path = os.environ.get(SCRIPT_ENV)
    return json.loads(Path(path).read_text()) if path else {}


def _retrying(call: Any, *args: Any, **kwargs: Any) -> Any:
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        try:
            return call(*args, **kwargs)
        except MlflowException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def train() -> int:
    env = os.environ
    point = env[contract.ENV_POINT]
    attempt = int(env.get(contract.ENV_ATTEMPT, "1"))
    script = _script()
    what = script.get(point, {})
    mlflow = MlflowClient(env[contract.ENV_TRACKING_URI])
    experiment = _retrying(mlflow.get_experiment_by_name, env[contract.ENV_EXPERIMENT])
    if point not in script and LATE_KEY in script and env.get(contract.ENV_PHASE) == contract.PHASE_SEARCH:
        tags = _retrying(mlflow.get_run, env[contract.ENV_PARENT_RUN_ID]).data.tags
        number = int(json.loads(tags[contract.TAG_TRIAL_PREFIX + point])["number"])
        if number >= int(script[LATE_KEY]["from_trial"]):
            what = script[LATE_KEY]
    codes = what.get("exit", [0])
    code = int(codes[min(attempt, len(codes)) - 1])
    value = float(what.get("value", 0.5))
    curve = [float(v) for v in what.get("curve", [value])]
    run = _retrying(mlflow.create_run, experiment.experiment_id, tags={
        "mlflow.parentRunId": env[contract.ENV_PARENT_RUN_ID], contract.TAG_GRID: env[contract.ENV_GRID],
        contract.TAG_POINT: point, contract.TAG_ROLE: contract.ROLE_TRAIN,
        contract.TAG_SPEC_HASH: env[contract.ENV_SPEC_HASH], contract.TAG_ATTEMPT: str(attempt),
        contract.TAG_BACKEND: env[contract.ENV_BACKEND], contract.TAG_PHASE: env.get(contract.ENV_PHASE, "search")})
    run_id = run.info.run_id
    epoch_seconds = float(what.get("epoch_seconds", env.get(EPOCH_SECONDS_ENV, "0")))
    stopped = None
    for epoch, epoch_value in enumerate(curve, start=1):
        time.sleep(epoch_seconds)
        _retrying(mlflow.log_metric, run_id, f"epoch/{contract.METRIC_MAP50_95}", epoch_value, step=epoch)
        value = epoch_value
        if contract.TAG_STOP_REQUESTED in _retrying(mlflow.get_run, run_id).data.tags and epoch < len(curve):
            stopped = epoch
            break
    if code == 0:
        _retrying(mlflow.log_metric, run_id, contract.METRIC_MAP50_95, value)
        if stopped is not None:
            _retrying(mlflow.set_tag, run_id, contract.TAG_STOPPED_EARLY, str(stopped))
    else:
        print(f"error: point {point} fails on purpose with exit code {code}", flush=True)
    _retrying(mlflow.set_terminated, run_id, "FINISHED" if code == 0 else "FAILED")
    return code


def finalize() -> int:
    env = os.environ
    mlflow = MlflowClient(env[contract.ENV_TRACKING_URI])
    parent = env[contract.ENV_PARENT_RUN_ID]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "decision.json"
        path.write_text(json.dumps({"grid": env[contract.ENV_GRID], "decision": {"verdict": "YES"},
                                    "objective": {"metric": contract.METRIC_MAP50_95}}))
        _retrying(mlflow.log_artifact, parent, str(path), artifact_path=contract.ARTIFACT_REPORT_DIR)
    _retrying(mlflow.set_tag, parent, contract.TAG_DECISION, "YES")
    return 0


if __name__ == "__main__":
    sys.exit(train() if sys.argv[1:] == ["train"] else finalize())
