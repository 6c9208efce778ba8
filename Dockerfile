# syntax=docker/dockerfile:1
# prewarm: `prewarm serve` on Python 3.11 slim, as a non-root user, read-only root friendly.
#   docker build -t registry.example.com/prewarm:0.1.0 .
# Pinned: the base image by tag (add @sha256:<digest> from your registry mirror for bit-for-bit
# rebuilds) and every Python package by version (deploy/docker/requirements.txt).
# tests/deploy/test_dockerfile.py runs the build stage's RUN steps in a clean virtualenv.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV VENV=/opt/prewarm \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first: this layer is reused until requirements.txt changes.
COPY deploy/docker/requirements.txt deploy/docker/requirements.txt
RUN python -m venv "$VENV" \
 && "$VENV/bin/pip" install --no-deps --only-binary=:all: -r deploy/docker/requirements.txt
COPY pyproject.toml README.md ./
COPY scaler scaler
COPY forecasting forecasting
RUN "$VENV/bin/pip" install --no-deps . \
 && "$VENV/bin/pip" check \
 && "$VENV/bin/prewarm" --help > /dev/null \
 && "$VENV/bin/pip" uninstall -y -q pip

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 prewarm \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin prewarm
COPY --from=build /opt/prewarm /opt/prewarm
ENV PATH=/opt/prewarm/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
# Numeric, so `runAsNonRoot` can verify it without resolving the name.
USER 10001:10001
WORKDIR /tmp
EXPOSE 9090 8080
ENTRYPOINT ["prewarm"]
CMD ["serve", "--config", "/etc/prewarm/config/config.yaml"]
