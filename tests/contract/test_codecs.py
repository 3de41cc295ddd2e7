"""Each fact that crosses the controller/Job boundary has one encoder and one decoder in contract/: what one
side writes, the other reads back unchanged; what is not one of them is refused by name."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

import contract
from contract.credentials import credentials_problem
from contract.grid_resource import GRID
from contract.train_flags import TrainFlags
from contract.trial import TrialTag, decode_trial, trial_tags
from contract.warm_start import Answer, Exited, Ready, Request, decode_reply, decode_request, encode


def test_the_train_flags_the_controller_writes_are_what_the_job_reads() -> None:
    from jobs.train.cli import options_from

    flags = TrainFlags(data="data/tiny/data.yaml", model="w.pt", fallback_model="yolov8n.yaml", exp_name="exp",
                       device="cpu", arguments={"imgsz": 160, "lr0": 0.02, "seed": 3, "epochs": 1,
                                                "optimizer": "AdamW", "nbs": 16, "cos_lr": True, "mosaic": 0.5})
    options = options_from(flags.to_argv())
    assert (options.data, options.model, options.fallback_model, options.exp_name, options.device) == \
        ("data/tiny/data.yaml", "w.pt", "yolov8n.yaml", "exp", "cpu")
    assert options.train_args() == {**flags.arguments, "batch": 8, "device": "cpu"}


def test_the_rendered_manifest_carries_the_contract_flags() -> None:
    argv = TrainFlags(data="d/data.yaml", model="m", fallback_model="f", exp_name="e", device="0",
                      arguments={"nbs": 8, "imgsz": 320, "amp": False}).to_argv()
    assert argv == ["--data", "d/data.yaml", "--model", "m", "--fallback-model", "f", "--exp-name", "e",
                    "--device", "0", "--imgsz", "320", "--arg", "amp=false", "--arg", "nbs=8"]


def test_a_trial_tag_reads_back_and_a_bad_one_is_named() -> None:
    trial = TrialTag(name="train-1", number=4, params={"lr0": 0.01}, phase=contract.PHASE_CONFIRM, spec_hash="ab")
    key, value = trial.tag()
    assert decode_trial(key, value) == trial
    found, problems = trial_tags({key: value, contract.TAG_TRIAL_PREFIX + "x": '{"number": true}', "other": "1"})
    assert found == [trial]
    assert problems == [f"tag {contract.TAG_TRIAL_PREFIX}x: must be JSON {{number, params, phase, spec_hash}}, "
                        "got '{\"number\": true}'"]
    with pytest.raises(ValueError, match="must be JSON"):
        decode_trial(key, value.replace(contract.PHASE_CONFIRM, "warmup"))


@pytest.mark.parametrize("reply", [Ready(ready=True, seconds=1.5, threads=1), Ready(ready=False, error="boom"),
                                   Answer(id=3, pid=123), Answer(id=4, error="fork: EAGAIN"),
                                   Exited(pid=123, exit=-15)])
def test_warm_start_replies_read_back(reply: Ready | Answer | Exited) -> None:
    line = encode(reply)
    assert line.endswith("\n") and line.count("\n") == 1
    assert decode_reply(line) == reply


def test_a_warm_start_request_reads_back_and_garbage_is_refused() -> None:
    request = Request(id=1, module="jobs.train", argv=["--epochs", "1"], env={"A": "1"}, cwd="/p", log="/p/l",
                      exit_file="/p/l.exit")
    assert decode_request(encode(request)) == request
    for line in ('{"id": "1"}', "[1]", "not json", '{"pid": 1}'):
        with pytest.raises(ValueError):
            decode_request(line)
    with pytest.raises(ValueError):
        decode_reply('{"pid": 1}')


@pytest.mark.parametrize("name", ["../x", "/x", "a/../../b", "..", "plain-name.v2"])
def test_an_experiments_artifacts_stay_inside_the_store_folder(tmp_path: Path, name: str) -> None:
    location = contract.artifact_location(f"sqlite:///{tmp_path}/mlflow.db", name)
    assert location is not None
    folder = Path(url2pathname(urlparse(location).path))
    assert folder.parent == (tmp_path / contract.ARTIFACTS_DIR).resolve()
    assert (folder.name == name) == (name == "plain-name.v2")
    assert contract.artifact_location("http://mlflow:5000", name) is None


def test_two_names_never_share_a_folder() -> None:
    assert contract.artifact_folder("../x") != contract.artifact_folder("/x")


def test_credentials_in_a_uri_are_one_rule() -> None:
    problem = credentials_problem("http://u:secret@host:5000")
    assert problem is not None and "host:5000" in problem.message and "secret" not in problem.message
    assert credentials_problem("sqlite:////tmp/a@b/mlflow.db") is None


def test_the_grid_identity() -> None:
    assert GRID.api_version == "tp4.io/v1alpha1" and GRID.name == "grids.tp4.io"
    assert GRID.is_kind_of({"apiVersion": "tp4.io/v1alpha1", "kind": "Grid"})
    assert not GRID.is_kind_of({"apiVersion": "batch/v1", "kind": "Job"})
