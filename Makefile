# driftguard — the README's commands. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV ?= .venv
# An optimised interpreter like the image's (Debian's python3, the real-cluster image's base): the webhook benchmarks
# serve from .venv-release on it, since this machine's pyenv build (no --enable-optimizations) costs ~1.5x the CPU.
RELEASE_PYTHON ?= /usr/bin/python3
RELEASE_VENV ?= .venv-release
PY := $(VENV)/bin/python
LOCAL_DIR ?= .local
CLUSTER_DIR ?= .cluster
PYTEST_ARGS ?=

.PHONY: venv controlplane tools test-tools lint test-unit test-integration test-cluster cluster-up cluster-down test local-up local-down demo demo-down manifests chart \
	bench image kind-up deploy undeploy

## venv: create .venv and install driftguard with its dev tools (re-run when pyproject.toml changes)
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

## venv-release: $(RELEASE_VENV), driftguard (no dev tools) on $(RELEASE_PYTHON), for the webhook benchmarks' server
.PHONY: venv-release
venv-release: $(RELEASE_VENV)/.installed
$(RELEASE_VENV)/.installed: pyproject.toml
	$(RELEASE_PYTHON) -c 'import ensurepip' 2>/dev/null \
		|| { echo "$(RELEASE_PYTHON) cannot make a venv: apt-get install python3-venv, or set RELEASE_PYTHON"; exit 1; }
	$(RELEASE_PYTHON) -m venv $(RELEASE_VENV)
	$(RELEASE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RELEASE_VENV)/bin/python -m pip install --quiet -e .
	touch $@

## controlplane: find or build kube-apiserver, etcd and kubectl (cached in ~/.cache/driftguard)
controlplane: venv
	$(PY) -m driftguard.local.controlplane

## tools: kustomize, helm and jsonnet (the renderers), built from tools/ into ~/.cache/driftguard/tools-v1
tools: venv
	$(PY) -m driftguard.local.controlplane tools

## test-tools: the tools only tests run (the CNCF distribution registry), built from tools/ into ~/.cache/driftguard/tools-v1
test-tools: venv
	$(PY) -m driftguard.local.controlplane test-tools

## lint: ruff, mypy --strict (the packages and bench/), import contracts
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

## test-integration: against a real control plane (or DRIFTGUARD_TEST_KUBECONFIG's cluster)
test-integration: venv tools test-tools $(if $(DRIFTGUARD_TEST_KUBECONFIG),,controlplane)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

## test-cluster: the real-cluster tier (root on Linux; skipped otherwise, a failure with CI=true)
test-cluster: venv controlplane tools
	$(PY) -m pytest tests/cluster $(PYTEST_ARGS)

test: lint test-unit test-integration test-cluster

## cluster-up: a real single-node Kubernetes cluster on this machine (root, Linux), with the image loaded
cluster-up: venv controlplane
	$(VENV)/bin/driftguard cluster up --dir $(CLUSTER_DIR)
	$(VENV)/bin/driftguard cluster image --dir $(CLUSTER_DIR)

## cluster-down: stop it and restore the host as cluster-up found it
cluster-down: venv
	$(VENV)/bin/driftguard cluster down --dir $(CLUSTER_DIR)

local-up: venv controlplane tools
	$(VENV)/bin/driftguard local up --dir $(LOCAL_DIR)

local-down: venv
	$(VENV)/bin/driftguard local down --dir $(LOCAL_DIR)

## demo: the whole story locally (control plane, webhook, reconciler, a git repo); leaves it running
demo: local-up
	$(VENV)/bin/driftguard local demo --dir $(LOCAL_DIR)

## demo-down: stop what `make demo` started
demo-down: local-down

## manifests: regenerate manifests/webhook-configurations.yaml from webhook/registration.py, then the chart
manifests: venv
	$(PY) -m driftguard.install > manifests/webhook-configurations.yaml
	$(PY) -m driftguard.install.chart charts/driftguard

## chart: regenerate the Helm chart charts/driftguard/ from manifests/ (a unit test checks it is current)
chart: venv
	$(PY) -m driftguard.install.chart charts/driftguard

## bench: every benchmark under bench/, each printing its figures
bench: bench-webhook bench-flood bench-reconciler

## bench-reconciler: the reconciler's benchmarks, one command each (each starts its own control plane)
.PHONY: bench-reconciler
bench-reconciler: venv controlplane tools
	$(PY) bench/bench_reconciler_latency.py
	$(PY) bench/bench_reconciler_drift.py
	$(PY) bench/bench_perimeter.py
	$(PY) bench/bench_projects.py
	$(PY) bench/bench_sync.py
	$(PY) bench/bench_reconciler_sync.py --objects 1000
	$(PY) bench/bench_reconciler_sync.py --objects 10000
	$(PY) bench/bench_render.py --objects 10000
	$(PY) bench/bench_verify.py

## bench-tools: wrk, the webhook benchmarks' load generator (apt-get; without it they use a Python client)
.PHONY: bench-tools
bench-tools:
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk) \
		|| echo "wrk not installed: bench/bench_webhook.py falls back to its Python client"

## bench-webhook: /validate over TLS (wrk) beside the Go floor, API-server write latency, fuzz
.PHONY: bench-webhook
bench-webhook: venv venv-release controlplane bench-tools bench-admission
	$(PY) bench/bench_webhook.py --server-venv $(RELEASE_VENV)
	$(PY) bench/fuzz_webhook.py
	$(PY) bench/bench_ignore.py

## bench-admission: API-server write latency: none / Go floor / CEL / driftguard from one API server
.PHONY: bench-admission
bench-admission: venv venv-release controlplane
	$(PY) bench/bench_admission_latency.py -n 300 --server-venv $(RELEASE_VENV)

## bench-flood: API-server writes and /healthz while 1,000 trickling TLS connections are held on the webhook
.PHONY: bench-flood
bench-flood: venv venv-release controlplane
	$(PY) bench/bench_flood.py --server-venv $(RELEASE_VENV)

# ---- kind / a real cluster (needs Docker and kind; not available on our CI machines) ----
IMAGE ?= driftguard:dev
KIND_CLUSTER ?= driftguard

## image: build the container image
image: tools
	$(PY) -m driftguard.local.controlplane tools --stage .render-tools
	docker build -t $(IMAGE) .

## kind-up: create a kind cluster and load the image into it
kind-up: image
	kind create cluster --config kind-config.yaml --name $(KIND_CLUSTER)
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)

## deploy: install driftguard into the current kubectl context, then its TLS Secret and caBundle
deploy: venv
	kubectl apply -k manifests/
	$(VENV)/bin/driftguard certs install --dir $(LOCAL_DIR)/cluster-ca
	kubectl -n driftguard-system rollout status deployment/driftguard-webhook --timeout=120s
	kubectl -n driftguard-system rollout status deployment/driftguard-reconciler --timeout=120s

## undeploy: everything `make deploy` created (the reconciler's leader sees driftguard-system being
## deleted and neither restores nor keeps the webhook configurations, so nothing is blocked)
undeploy:
	kubectl delete -k manifests/ --ignore-not-found
