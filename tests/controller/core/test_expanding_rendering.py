"""Expansion, naming and rendering: every manifest a strictly valid Kubernetes 1.35 Job."""

from __future__ import annotations

import json
from pathlib import Path

import hypothesis.strategies as st
import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings

import contract
from contract.grid import load_grid
from controller.core import rendering
from controller.core.expanding import expand, format_value
from controller.core.rendering import RenderSettings, SecretRef, render_all, to_yaml, torch_threads, train_args
from controller.errors import InvalidInput
from tests.helpers.gridfiles import MD5, lab_grid, write_grid

KUBERNETES_VERSION = "1.35.0"
SETTINGS = RenderSettings(
    tracking_uri="http://mlflow:5000",
    backend="kubernetes",
    parent_run_id="abc123",
    extra_env={"AWS_ENDPOINT_URL": "http://minio:9000"},
    secret_env=(SecretRef("AWS_SECRET_ACCESS_KEY", "tp4-s3", "secret-key"),),
)


def load(tmp_path: Path, **changes):
    return load_grid(write_grid(tmp_path, lab_grid(**changes)))


def test_lab_grid_expands_to_eight_stable_names(tmp_path: Path) -> None:
    points = expand(load(tmp_path), dataset_md5=MD5)
    assert [p.name for p in points] == [
        "train-320-0.005-1",
        "train-320-0.005-42",
        "train-320-0.01-1",
        "train-320-0.01-42",
        "train-416-0.005-1",
        "train-416-0.005-42",
        "train-416-0.01-1",
        "train-416-0.01-42",
    ]
    assert len({p.spec_hash for p in points}) == 8
    again = expand(load(tmp_path), dataset_md5=MD5)
    assert [p.spec_hash for p in again] == [p.spec_hash for p in points]


def test_spec_hash_follows_what_determines_the_result(tmp_path: Path) -> None:
    base = {p.name: p.spec_hash for p in expand(load(tmp_path), dataset_md5=MD5)}
    other_data = {p.name: p.spec_hash for p in expand(load(tmp_path), dataset_md5="f" * 32 + ".dir")}
    grid = lab_grid()
    grid["train"]["epochs"] = 5
    more_epochs = {p.name: p.spec_hash for p in expand(load_grid(write_grid(tmp_path, grid)), dataset_md5=MD5)}
    assert all(base[n] != other_data[n] and base[n] != more_epochs[n] for n in base)


def test_values_format_for_names() -> None:
    assert [format_value(v) for v in (0.01, 0.005, 416, True, 1e-05)] == ["0.01", "0.005", "416", "true", "1e-05"]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("train-{imgsz}", "for both"),
        ("train-{imgsz}-{lr0}-{seed}-{momentum}", "momentum, which is not an axis"),
        ("Train_{imgsz}-{lr0}-{seed}", "not a valid Kubernetes Job name"),
        ("train-{imgsz}-{lr0}-{seed}-" + "x" * 60, "at most 63 characters"),
    ],
)
def test_bad_name_templates_are_refused(tmp_path: Path, template: str, message: str) -> None:
    grid = load(tmp_path, job={"name_template": template})
    with pytest.raises(InvalidInput, match=message):
        expand(grid, dataset_md5=MD5)


def test_train_args_carry_the_hyperparameters(tmp_path: Path) -> None:
    grid = load(tmp_path)
    point = expand(grid, dataset_md5=MD5)[-1]
    args = train_args(grid, point)
    pairs = dict(zip(args, args[1:], strict=False))  # each flag with the word after it
    assert pairs["--imgsz"] == "416" and pairs["--lr0"] == "0.01" and pairs["--seed"] == "42"
    assert pairs["--optimizer"] == "SGD" and pairs["--data"] == "data/tiny_coco/data.yaml"
    assert "nbs=8" in args and "warmup_epochs=0" in args and pairs["--device"] == "cpu"


def manifests(tmp_path: Path, **changes) -> list[dict]:
    grid = load(tmp_path, **changes)
    return render_all(grid, expand(grid, dataset_md5=MD5), SETTINGS, dataset_md5=MD5)


def test_every_manifest_validates_strictly(tmp_path: Path) -> None:
    gpu_job = {
        "resources": {"cpu": "4", "memory": "8Gi", "gpu": 1},
        "node_selector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "queue": "tp4-queue",
        "failure_budget": 2,
    }
    for variant in ({}, {"job": gpu_job}):
        rendered = manifests(tmp_path, **variant)
        assert len(rendered) == 9
        for manifest in rendered:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_a_bad_manifest_is_caught_by_the_validator(tmp_path: Path) -> None:
    manifest = manifests(tmp_path)[0]
    manifest["spec"]["backofLimit"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_labels_env_and_secrets(tmp_path: Path) -> None:
    train = manifests(tmp_path)[-2]
    labels = train["metadata"]["labels"]
    assert labels[contract.LABEL_GRID] == "lab" and labels[contract.LABEL_POINT] == "train-416-0.01-42"
    assert train["spec"]["template"]["metadata"]["labels"] == labels
    env = {e["name"]: e for e in train["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env[contract.ENV_PARENT_RUN_ID]["value"] == "abc123"
    assert env[contract.ENV_SPEC_HASH]["value"] == labels[contract.LABEL_SPEC_HASH]
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "tp4-s3", "key": "secret-key"}},
    }
    assert train["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [contract.EXIT_BAD_INPUT]


def test_gpu_points_get_limits_selectors_and_tolerations(tmp_path: Path) -> None:
    job = {
        "resources": {"cpu": "4", "memory": "8Gi", "gpu": 1},
        "node_selector": {"gpu": "a100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        "queue": "q",
    }
    rendered = manifests(tmp_path, job=job)
    train, finalize = rendered[0], rendered[-1]
    pod = train["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"gpu": "a100"} and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "--device" in pod["containers"][0]["args"] and "0" in pod["containers"][0]["args"]
    assert train["spec"]["suspend"] is True and train["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "q"
    final_pod = finalize["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in final_pod["containers"][0]["resources"]["limits"] and "nodeSelector" not in final_pod


def test_torch_threads_from_cpu_request() -> None:
    assert [torch_threads(c) for c in ("500m", "1", "2", "2500m")] == [1, 1, 2, 2]


def test_the_kind_workflow_grid_is_valid_from_the_project_root() -> None:
    """charts/tp4/ci/tiny-grid.yaml (make kind-e2e): its dataset path is relative to the project, not to the file."""
    from controller.submitting import prepare
    from tests.helpers.paths import REPO

    grid, points, md5 = prepare(grid_path=REPO / "charts" / "tp4" / "ci" / "tiny-grid.yaml", root=REPO)
    assert [p.name for p in points] == ["train-160-0.005", "train-160-0.01"]
    for manifest in render_all(grid, points, SETTINGS, dataset_md5=md5):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


# --- the fast path: each Job a filled-in skeleton, written by to_yaml -------------------------------------


GPU_QUEUE_JOB = {"resources": {"cpu": "4", "memory": "8Gi", "gpu": 1}, "node_selector": {"gpu": "a100"},
                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}], "queue": "q"}


def rendered_one_by_one(grid, settings: RenderSettings) -> list[dict]:
    """Each Job's template rendered with all its values and parsed back with YAML (what rendering did)."""
    reference = []
    for point in expand(grid, dataset_md5=MD5):
        context = {"name": point.name, "labels": {**rendering.labels(grid, role="train", point=point.name,
                                                                      spec_hash=point.spec_hash),
                                                   **rendering._queue_labels(grid.job)},
                   "params_json": rendering._tojson(point.params), "job": grid.job,
                   "command": ["python", "-m", "jobs.train"], "args": train_args(grid, point),
                   "env": rendering.job_env(grid, settings, dataset_md5=MD5, point=point)}
        reference.append(rendering._render("train-job.yaml.j2", context))
    return reference


@pytest.mark.parametrize("changes", [{}, {"job": GPU_QUEUE_JOB}], ids=["lab", "gpu-queue"])
def test_a_filled_skeleton_is_the_rendered_template(tmp_path: Path, changes: dict) -> None:
    grid = load(tmp_path, **changes)
    for render_settings in (SETTINGS, RenderSettings(tracking_uri="sqlite:///x.db", backend="local")):
        fast = render_all(grid, expand(grid, dataset_md5=MD5), render_settings, dataset_md5=MD5)[:-1]
        reference = rendered_one_by_one(grid, render_settings)
        assert fast == reference
        assert [json.dumps(m) for m in fast] == [json.dumps(m) for m in reference]  # the same key order too
    assert json.loads(fast[0]["metadata"]["annotations"]["tp4.io/params"]) == expand(grid, dataset_md5=MD5)[0].params


def test_each_job_is_a_copy_of_its_own(tmp_path: Path) -> None:
    first, second, *_ = manifests(tmp_path)
    first["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "1Ti"
    first["metadata"]["labels"]["x"] = "y"
    assert second["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] != "1Ti"
    assert "x" not in manifests(tmp_path)[0]["metadata"]["labels"]


def test_a_template_printing_a_per_job_value_inside_another_is_refused(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def render(template: str, context: dict) -> dict:
        return {"metadata": {"name": f"{context['name']}-x"}}

    monkeypatch.setattr(rendering, "_render", render)
    monkeypatch.setattr(rendering, "_skeletons", {})
    with pytest.raises(TypeError, match="inside another value"):
        rendering._skeleton("train-job.yaml.j2", load(tmp_path).job)


TRICKY = ["", " ", "a ", " a", "yes", "No", "ON", "off", "y", "N", "true", "False", "null", "Null", "~", "-", "--",
          "---", "...", "- x", "a: b", "a:", "a:b", "http://mlflow:5000/x?q=1&r=2", "#x", "x #y", "x#y", "1", "-1",
          "+1", "007", "0x1F", "0o7", "1_000", "1e3", "1.0e-05", ".5", ".inf", "-.inf", ".nan", "2001-12-14",
          "12:30:45", "@x", "`x", "!x", "&x", "*x", "%x", "{x}", "[x]", "x,y", "x, y", "'q'", '"dq"', "back\\slash",
          "=", "<<", "?", "? x", "|", ">", "é", "日本語", "😀", "\x7f", "\x00", "tab\tx", "new\nline", "\u2028",
          "\x85", "\ufeff", "--data", "-c", "-m", "/app", "_x", "lr0=0.01", "tp4-trainer:0.1.0", "nvidia.com/gpu"]


def test_to_yaml_reads_back_as_the_manifests(tmp_path: Path) -> None:
    tricky = {"strings": TRICKY, "keys": {s: s for s in TRICKY}, "nested": [[1, [2, []]], [{}], {"a": [{"b": {}}]}],
              "scalars": [0, -7, 10**20, 0.1, 1e-05, -2.5e20, 1.0, -0.0, True, False, None]}
    documents = [*manifests(tmp_path), tricky, {"int key": {1: "x"}}, {"inf": float("inf")}]
    text = to_yaml(documents)
    assert list(yaml.safe_load_all(text)) == documents
    assert list(yaml.load_all(text, Loader=rendering.SAFE_LOADER)) == documents
    assert sum(line == "kind: Job" for line in text.splitlines()) == 9


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20), min_size=1, max_size=5))
def test_to_yaml_reads_back_any_json_data(document: dict) -> None:
    assert yaml.safe_load(to_yaml([document])) == document
