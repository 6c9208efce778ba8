#!/usr/bin/env bash
# The project's test command (README Quick start, and what .ci/run calls).
# Sets up everything the suites need on a fresh machine, then runs pytest:
#   - .venv with the dev dependencies (scripts/bootstrap.sh)
#   - a real Prometheus (Debian package) for tests/prometheus
#   - a real kube-apiserver + etcd (built once from Debian's source, cached outside the repo)
#   - the Go toolchain + grpc-go for the independent KEDA client in tests/interop
# Extra arguments go to pytest, e.g. scripts/test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ -z "${PREWARM_SKIP_SYSTEM_DEPS:-}" ]; then
    [ -f scripts/prometheus-env.sh ] && bash scripts/prometheus-env.sh install
    if [ -f scripts/kube-env.sh ]; then
        bash scripts/kube-env.sh deps
        bash scripts/kube-env.sh build
    fi
    [ -f tests/interop/build.sh ] && bash tests/interop/build.sh > /dev/null
fi
# pytest exits 5 when it collected no tests: that is a failure here too.
exec .venv/bin/python -m pytest "$@"
