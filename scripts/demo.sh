#!/usr/bin/env bash
# The README's main job: set up .venv, then run prewarm on its embedded demo (no Prometheus or
# Kubernetes needed). Extra arguments go to the command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if .venv/bin/prewarm demo --help > /dev/null 2>&1; then
    exec .venv/bin/prewarm demo "$@"
fi
exec .venv/bin/prewarm serve --demo --listen 127.0.0.1:9090 --metrics-listen 127.0.0.1:8080 "$@"
