# syntax=docker/dockerfile:1
# prewarm: `prewarm serve` on Python 3.11 slim, as a non-root user, read-only root friendly.
#   docker build -t registry.example.com/prewarm:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
#     --build-arg SOURCE=https://git.example.com/you/prewarm .
# Pinned: the base image by tag (add @sha256:<digest> from your registry mirror for bit-for-bit
# rebuilds) and every Python package by version and sha256 (deploy/docker/requirements.txt, the
# runtime part of the lock: regenerate both with scripts/lock.sh). No plot extra: `serve` never plots.
# tests/deploy/test_dockerfile.py runs the build stage's RUN steps in a clean virtualenv.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV VENV=/opt/prewarm \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first: this layer is reused until requirements.txt changes. Every file's hash is
# checked against the lock.
COPY deploy/docker/requirements.txt deploy/docker/requirements.txt
RUN python -m venv "$VENV" \
 && "$VENV/bin/pip" install --no-deps --only-binary=:all: --require-hashes -r deploy/docker/requirements.txt
COPY pyproject.toml README.md ./
COPY scaler scaler
COPY forecasting forecasting
RUN "$VENV/bin/pip" install --no-deps . \
 && "$VENV/bin/pip" check \
 && "$VENV/bin/prewarm" --help > /dev/null \
 && "$VENV/bin/pip" uninstall -y -q pip

FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=
LABEL org.opencontainers.image.title="prewarm" \
      org.opencontainers.image.description="Predictive KEDA external scaler for LLM inference" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
RUN groupadd --system --gid 10001 prewarm \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin prewarm
COPY --from=build /opt/prewarm /opt/prewarm
ENV PATH=/opt/prewarm/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so `runAsNonRoot` can verify it without resolving the name.
USER 10001:10001
WORKDIR /tmp
EXPOSE 9090 8080
ENTRYPOINT ["prewarm"]
CMD ["serve", "--config", "/etc/prewarm/config/config.yaml"]
