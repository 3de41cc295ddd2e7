"""The container images (images/*): pins shared with pyproject.toml, built and run with a real Docker engine.

The static checks always run. The Docker checks need a reachable engine (Debian's docker.io:
`dockerd --bridge=none --iptables=false &`); without one they skip and say so. No registry is
reachable here, so they build FROM the local base image of images/build-base-image.sh (built
once if missing, which needs root and debootstrap), or FROM $TP4_BASE_IMAGE when set (e.g. the
default python:3.11.13-slim-bookworm where a registry is reachable). Every container runs on the
host's network namespace (loopback only), with a read-only root, no capabilities, as uid 1000.

The trainer image (torch: several GB) is built only with TP4_BUILD_TRAINER_IMAGE=1.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

IMAGES = REPO / "images"
CHART_FILES = REPO / "charts" / "tp4" / "files"
LOCAL_BASE = "tp4-base:bookworm-python3.11"
TAG = "0.1.0"
BUILD_TIMEOUT = 1800


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]:
        name, _, version = requirement.partition("==")
        pins[_normal(name)] = version.split(";")[0].strip()
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", re.sub(r"\[.*\]", "", name)).strip().lower()


def requirement_pins(image: str) -> dict[str, str]:
    pins = {}
    for line in (IMAGES / image / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and re.fullmatch(r"[0-9][0-9A-Za-z.+-]*", version), (
                f"images/{image}: {line!r} is not pinned with =="
            )
            pins[_normal(name)] = version
    return pins


# --- static: pins, users, base image, context ----------------------------------------------------


@pytest.mark.parametrize("image", ["controller", "mlflow", "trainer"])
def test_image_pins_equal_the_project_pins(image: str) -> None:
    project = pyproject_pins()
    aliases = {"mlflow-skinny": "mlflow"}  # the client-only distribution of the same release
    mismatched = {
        name: (version, project[aliases.get(name, name)])
        for name, version in requirement_pins(image).items()
        if aliases.get(name, name) in project and project[aliases.get(name, name)] != version
    }
    assert mismatched == {}, f"images/{image}/requirements.txt differs from pyproject.toml: {mismatched}"


def test_trainer_torch_versions_equal_the_project_pins() -> None:
    dockerfile = (IMAGES / "trainer" / "Dockerfile").read_text()
    project = pyproject_pins()
    assert re.search(rf"^ARG TORCH_VERSION={re.escape(project['torch'])}$", dockerfile, re.M)
    assert re.search(rf"^ARG TORCHVISION_VERSION={re.escape(project['torchvision'])}$", dockerfile, re.M)
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", dockerfile, re.M)


def test_the_controller_image_has_no_torch() -> None:
    assert not {"torch", "torchvision", "ultralytics", "dvc"} & set(requirement_pins("controller"))


@pytest.mark.parametrize("image", ["controller", "mlflow", "trainer"])
def test_dockerfiles_take_a_pinned_base_and_run_as_non_root(image: str) -> None:
    dockerfile = (IMAGES / image / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.M)
    assert base and re.search(r":[0-9][^@]*@sha256:[0-9a-f]{64}$", base.group(1)), (
        "BASE_IMAGE default must be tag@digest"
    )
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", dockerfile, re.M)
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users and users[-1] == "1000:1000"
    assert "latest" not in dockerfile


def test_build_context_sends_only_what_the_images_copy() -> None:
    rules = (REPO / ".dockerignore").read_text().splitlines()
    assert rules[1] == "*", "an allowlist: everything is ignored but what is named"
    assert not {"!.venv", "!.tp4", "!data/", "!tests/"} & set(rules)


# --- Docker ------------------------------------------------------------------------------------------


def docker(
    *args: str, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "DOCKER_BUILDKIT": "0", **(env or {})},
    )
    if check and done.returncode != 0:
        pytest.fail(
            f"docker {' '.join(args[:3])} … failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI: apt-get install docker.io, then start dockerd")
    done = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        pytest.skip(
            "no Docker engine reachable (start one: dockerd --bridge=none --iptables=false &): "
            f"{done.stderr.strip()[:200]}"
        )


@pytest.fixture(scope="session")
def base_image(docker_engine: None) -> str:
    if os.environ.get("TP4_BASE_IMAGE"):
        return os.environ["TP4_BASE_IMAGE"]
    if docker("image", "inspect", LOCAL_BASE, check=False).returncode != 0:
        if os.geteuid() != 0 or shutil.which("debootstrap") is None:
            pytest.skip(f"no {LOCAL_BASE} and it cannot be built here (needs root and debootstrap), nor TP4_BASE_IMAGE")
        done = subprocess.run(
            [str(IMAGES / "build-base-image.sh")], capture_output=True, text=True, timeout=BUILD_TIMEOUT, cwd=REPO
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return LOCAL_BASE


BUILD_SECONDS: dict[str, float] = {}


def build(image: str, tag: str, base: str, *build_args: str) -> str:
    reference = f"tp4-{image}:{tag}"
    started = time.monotonic()
    docker(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE_IMAGE={base}",
        *build_args,
        "-f",
        str(IMAGES / image / "Dockerfile"),
        "-t",
        reference,
        ".",
        timeout=BUILD_TIMEOUT,
    )
    BUILD_SECONDS[reference] = time.monotonic() - started
    print(f"built {reference} in {BUILD_SECONDS[reference]:.0f} s", file=sys.stderr)
    return reference


@pytest.fixture(scope="session")
def controller_image(base_image: str) -> str:
    return build("controller", TAG, base_image)


@pytest.fixture(scope="session")
def mlflow_image(base_image: str) -> str:
    return build("mlflow", TAG, base_image)


LOCKED_DOWN = [
    "--rm",
    "--network",
    "host",
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--user",
    "1000:1000",
    "-e",
    "HOME=/tmp",
]


def test_controller_image_runs_its_cli_without_torch(controller_image: str) -> None:
    done = docker("run", *LOCKED_DOWN, controller_image, "--help")
    assert "submit-grid" in done.stdout
    probe = (
        "import importlib.util, sys, controller.cli, controller.cluster.rbac; "
        "print([m for m in ('torch', 'torchvision', 'ultralytics') if importlib.util.find_spec(m)])"
    )
    assert docker("run", *LOCKED_DOWN, "--entrypoint", "python", controller_image, "-c", probe).stdout.strip() == "[]"
    config = docker("image", "inspect", controller_image, "--format", "{{.Config.User}}").stdout.strip()
    assert config == "1000:1000"
    size = int(docker("image", "inspect", controller_image, "--format", "{{.Size}}").stdout)
    # ~380 MB before Optuna (the search: with numpy, SQLAlchemy and Alembic) added ~90 MB; torch alone would add GBs
    assert size < 520e6, f"the controller image weighs {size / 1e6:.0f} MB"
    # the helm test's script imports the RBAC rules from the image
    script = docker(
        "run",
        *LOCKED_DOWN,
        "-v",
        f"{CHART_FILES}:/scripts:ro",
        "--entrypoint",
        "python",
        controller_image,
        "-c",
        "import runpy, sys; sys.argv=['x']; import py_compile; py_compile.compile('/scripts/check_controller.py', "
        "cfile='/tmp/c.pyc', doraise=True); from controller.cluster.rbac import CONTROLLER_RULES; "
        "print(len(CONTROLLER_RULES))",
    )
    from controller.cluster.rbac import CONTROLLER_RULES

    assert script.stdout.strip() == str(len(CONTROLLER_RULES))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_mlflow_image_serves_health_and_the_helm_test_passes(mlflow_image: str) -> None:
    port = _free_port()
    name = f"tp4-mlflow-test-{port}"
    docker(
        "run",
        "-d",
        "--name",
        name,
        *[a for a in LOCKED_DOWN if a != "--rm"],
        mlflow_image,
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        f"--port={port}",
        "--workers=1",
        "--backend-store-uri=sqlite:////tmp/mlflow.db",
        "--artifacts-destination=/tmp/artifacts",
        "--allowed-hosts=localhost:*,127.0.0.1:*,tp4-mlflow:*",
    )
    try:
        deadline, body = time.monotonic() + 120, ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as response:
                    body = response.read().decode()
                    break
            except OSError:
                if docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() != "true":
                    break
                time.sleep(1)
        assert body == "OK", docker("logs", name, check=False).stderr[-3000:]
        memory = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", name).stdout.split("/")[0].strip()
        print(f"mlflow server (1 worker, no job runner) uses {memory}", file=sys.stderr)
        # the chart's helm-test script, in the same image, as the test pod runs it
        check = docker(
            "run",
            *LOCKED_DOWN,
            "-v",
            f"{CHART_FILES}:/scripts:ro",
            "-e",
            f"MLFLOW_TRACKING_URI=http://127.0.0.1:{port}",
            mlflow_image,
            "python",
            "/scripts/check_mlflow.py",
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        versions = docker(
            "run",
            *LOCKED_DOWN,
            mlflow_image,
            "python",
            "-c",
            "import importlib.metadata as m; "
            "print(*(m.version(p) for p in ('mlflow', 'psycopg2-binary', 'boto3', 'flask-wtf')))",
        )
        mlflow_version, psycopg2_version, boto3_version, _ = versions.stdout.split()
        assert mlflow_version == pyproject_pins()["mlflow"]
        assert {"psycopg2-binary": psycopg2_version, "boto3": boto3_version} == {
            k: v for k, v in requirement_pins("mlflow").items() if k in ("psycopg2-binary", "boto3")
        }
    finally:
        docker("rm", "-f", name, check=False)


def test_mlflow_image_runs_the_bucket_hook(mlflow_image: str) -> None:
    """The hook's script needs boto3 from the image; against moto (which lets anonymous users in)
    it creates the buckets and then refuses them as public, as it must."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        done = docker(
            "run",
            *LOCKED_DOWN,
            "-v",
            f"{CHART_FILES}:/scripts:ro",
            "-e",
            f"AWS_ENDPOINT_URL=http://{host}:{port}",
            "-e",
            "AWS_DEFAULT_REGION=us-east-1",
            "-e",
            "AWS_ACCESS_KEY_ID=tp4-test",
            "-e",
            "AWS_SECRET_ACCESS_KEY=tp4-test-secret",
            "-e",
            "TP4_S3_WAIT_SECONDS=20",
            mlflow_image,
            "python",
            "/scripts/s3_buckets.py",
            "ensure",
            "tp4-dvc",
            check=False,
        )
        # (moto keeps its buckets per process, across servers: an earlier test may have created it)
        assert re.search(r"^tp4-dvc: (created|exists)$", done.stdout, re.M), done.stdout
        assert done.returncode == 1 and "tp4-dvc: anonymous access allowed" in done.stderr, done.stdout + done.stderr
    finally:
        server.stop()


TRAINER = pytest.mark.skipif(
    os.environ.get("TP4_BUILD_TRAINER_IMAGE") != "1",
    reason="the trainer image installs torch (7 GB, ~4 min here): set TP4_BUILD_TRAINER_IMAGE=1",
)


@pytest.fixture(scope="session")
def trainer_image(base_image: str) -> str:
    # Here only PyPI is reachable: the CUDA variant (torch from PyPI; it runs on the CPU too).
    variant = os.environ.get("TP4_TRAINER_VARIANT", "cuda")
    return build(
        "trainer",
        f"{TAG}-{variant}" if variant != "cpu" else TAG,
        base_image,
        "--build-arg",
        f"TORCH_VARIANT={variant}",
    )


@TRAINER
def test_trainer_image_imports_its_stack_at_the_pinned_versions(trainer_image: str) -> None:
    probe = (
        "import cv2, torch, torchvision, ultralytics, mlflow, dvc.api, jobs, contract; "
        "print(torch.__version__.split('+')[0], torchvision.__version__.split('+')[0], ultralytics.__version__, "
        "mlflow.__version__)"
    )
    done = docker("run", *LOCKED_DOWN, "-e", "YOLO_OFFLINE=true", trainer_image, "python", "-c", probe, timeout=300)
    pins = pyproject_pins()
    assert done.stdout.split()[-4:] == [pins["torch"], pins["torchvision"], pins["ultralytics"], pins["mlflow"]]
    assert (
        "--epochs"
        in docker("run", *LOCKED_DOWN, trainer_image, "python", "-m", "jobs.train", "--help", timeout=300).stdout
    )


@TRAINER
def test_trainer_image_trains_one_point_against_mlflow_and_s3_on_loopback(
    trainer_image: str, mlflow_image: str
) -> None:
    """One 1-epoch point in the trainer image, as its Job runs it (workdir /app read-only, /tmp and /workspace
    writable, uid 1000), logging to the MLflow image's server whose artifacts go to moto's S3."""
    import boto3
    import yaml
    from mlflow.tracking import MlflowClient
    from moto.server import ThreadedMotoServer

    dataset = REPO / "data" / "tiny_coco"
    weights = Path(os.environ.get("TP4_SHARED", REPO.parent / "shared")) / "weights" / "yolov5nu-coco-backbone.pt"
    if not (dataset / "data.yaml").is_file() or not weights.is_file():
        pytest.skip(f"needs the built dataset {dataset} (make data) and {weights}")
    md5 = yaml.safe_load((REPO / "data" / "tiny_coco.dvc").read_text())["outs"][0]["md5"]
    s3_server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3_server.start()
    host, s3_port = s3_server.get_host_and_port()
    s3_env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{s3_port}",
        "MLFLOW_S3_ENDPOINT_URL": f"http://{host}:{s3_port}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "tp4-test",
        "AWS_SECRET_ACCESS_KEY": "tp4-test-secret",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="tp4-test",
        aws_secret_access_key="tp4-test-secret",
    )
    if "tp4-mlflow-artifacts" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="tp4-mlflow-artifacts")
    port = _free_port()
    name = f"tp4-mlflow-train-{port}"
    env_args = [arg for key, value in s3_env.items() for arg in ("-e", f"{key}={value}")]
    docker(
        "run",
        "-d",
        "--name",
        name,
        *[a for a in LOCKED_DOWN if a != "--rm"],
        *env_args,
        mlflow_image,
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        f"--port={port}",
        "--workers=1",
        "--backend-store-uri=sqlite:////tmp/mlflow.db",
        "--artifacts-destination=s3://tp4-mlflow-artifacts",
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3).close()
                break
            except OSError:
                time.sleep(1)
        job_env = {
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
            "TP4_EXPERIMENT": "trainer-image-check",
            "TP4_POINT": "train-320-0.01-1",
            "TP4_BACKEND": "kubernetes",
            "TP4_IMAGE": trainer_image,
            "TP4_DATASET_PATH": "/data/tiny_coco",
            "TP4_DATASET_MD5": md5,
            "TP4_TORCH_THREADS": "2",
            "YOLO_OFFLINE": "true",
            "YOLO_CONFIG_DIR": "/tmp/ultralytics",
        }
        started = time.monotonic()
        done = docker(
            "run",
            *LOCKED_DOWN,
            "--tmpfs",
            "/workspace",
            "--workdir",
            "/app",
            "-v",
            f"{dataset}:/data/tiny_coco:ro",
            "-v",
            f"{weights}:/weights/backbone.pt:ro",
            *[arg for key, value in job_env.items() for arg in ("-e", f"{key}={value}")],
            trainer_image,
            "python",
            "-m",
            "jobs.train",
            "--data",
            "/data/tiny_coco/data.yaml",
            "--model",
            "/weights/backbone.pt",
            "--fallback-model",
            "yolov8n.yaml",
            "--epochs",
            "1",
            "--imgsz",
            "320",
            "--batch",
            "8",
            "--seed",
            "1",
            "--optimizer",
            "SGD",
            "--arg",
            "nbs=8",
            "--arg",
            "warmup_epochs=0",
            "--arg",
            "workers=0",
            "--device",
            "cpu",
            timeout=900,
            check=False,
        )
        print(f"one 1-epoch point in the trainer image: {time.monotonic() - started:.0f} s", file=sys.stderr)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        client = MlflowClient(f"http://127.0.0.1:{port}")
        (run,) = client.search_runs([client.get_experiment_by_name("trainer-image-check").experiment_id])
        assert run.info.status == "FINISHED" and "mAP50-95" in run.data.metrics
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="tp4-mlflow-artifacts").get("Contents", [])]
        assert any(k.endswith("weights/best.pt") for k in keys), keys
    finally:
        docker("rm", "-f", name, check=False)
        s3_server.stop()
