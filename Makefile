# driftguard — the README's commands. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LOCAL_DIR ?= .local
PYTEST_ARGS ?=

.PHONY: venv controlplane lint test-unit test-integration test local-up local-down

## venv: create .venv and install driftguard with its dev tools (re-run when pyproject.toml changes)
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

## controlplane: find or build kube-apiserver, etcd and kubectl (cached in ~/.cache/driftguard)
controlplane: venv
	$(PY) -m driftguard.controlplane

## lint: ruff, mypy --strict, import contracts
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

## test-integration: against a real control plane (or DRIFTGUARD_TEST_KUBECONFIG's cluster)
test-integration: venv $(if $(DRIFTGUARD_TEST_KUBECONFIG),,controlplane)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test: lint test-unit test-integration

local-up: venv controlplane
	$(VENV)/bin/driftguard local up --dir $(LOCAL_DIR)

local-down: venv
	$(VENV)/bin/driftguard local down --dir $(LOCAL_DIR)
