# syntax=docker/dockerfile:1
# driftguard: one image, two components (`driftguard webhook`, `driftguard reconcile`).
# Multi-stage: build a wheel with the full toolchain, install it into a slim runtime that
# runs as a non-root user with a read-only root filesystem (see manifests/).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY driftguard ./driftguard
COPY webhook ./webhook
COPY reconciler ./reconciler
COPY certs ./certs
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# git and ssh for the reconciler's sources; nothing else.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# 65532 is the conventional "nonroot" uid; the manifests pin it with runAsUser.
RUN useradd --uid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin driftguard
USER 65532:65532
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
ENTRYPOINT ["driftguard"]
CMD ["--help"]
