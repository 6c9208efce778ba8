#!/usr/bin/env bash
# The README's main job: set up .venv, then run `prewarm demo` (real gRPC server on a replayed
# trace, KEDA-like client, simulated Deployment, backtest comparison, out/demo.png). No Prometheus
# or Kubernetes needed. Extra arguments go to `prewarm demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/prewarm demo "$@"
