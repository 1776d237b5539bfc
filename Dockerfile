# syntax=docker/dockerfile:1
# driftguard: one image, two components (`driftguard webhook`, `driftguard reconcile`).
# Multi-stage: install driftguard into a virtual environment with the full toolchain, copy that
# environment into a slim runtime that runs as a non-root user with a read-only root filesystem
# (see manifests/). The virtual environment keeps it independent of the base's system Python
# packages, so any Debian-based Python 3.11 works as BASE_IMAGE: the official python:3.11-slim by
# default, or (the real-cluster tests) one built locally from Debian's python3 and python3-venv.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY driftguard ./driftguard
COPY webhook ./webhook
COPY reconciler ./reconciler
COPY certs ./certs
COPY ui ./ui
RUN python3 -m venv /opt/driftguard \
 && /opt/driftguard/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM ${BASE_IMAGE}
# git and ssh for the reconciler's sources, gpg and ssh-keygen for their signatures (spec.verify); nothing else.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client gpg ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/driftguard /opt/driftguard
# kustomize, helm and jsonnet, the renderers (reconciler/renderer.py), built from tools/<name>/go.mod by
# `make tools` and staged into the build context by `make image` (and the real-cluster tier).
COPY .render-tools/kustomize .render-tools/helm .render-tools/jsonnet /usr/local/bin/
# 65532 is the conventional "nonroot" uid; the manifests pin it with runAsUser.
RUN useradd --uid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin driftguard
USER 65532:65532
ENV PATH=/opt/driftguard/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
ENTRYPOINT ["driftguard"]
CMD ["--help"]
