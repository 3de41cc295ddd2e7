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

.PHONY: help setup data demo test ui clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

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

test: $(STAMP)  ## run the tests (unit + integration against real servers)
	$(PY) -m pytest $(PYTEST_ARGS)

ui: $(STAMP)  ## open the MLflow UI on the embedded store (http://127.0.0.1:5000)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow server --workers 1 --host 127.0.0.1 --port 5000 \
	  --backend-store-uri sqlite:///$(CURDIR)/.tp4/mlflow.db --default-artifact-root $(CURDIR)/.tp4/mlartifacts

clean:  ## remove the embedded store, logs and reports (keeps the venv and the dataset)
	rm -rf .tp4/grids .tp4/mlflow.db .tp4/mlartifacts reports/*/
