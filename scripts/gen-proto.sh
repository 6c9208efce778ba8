#!/usr/bin/env bash
# Regenerate scaler/_pb from proto/externalscaler.proto (committed; CI checks for a diff).
# Usage: scripts/gen-proto.sh [OUT_DIR]   (default: scaler/_pb)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
out=${1:-scaler/_pb}
mkdir -p "$out"
"$PY" -m grpc_tools.protoc -Iproto --python_out="$out" --grpc_python_out="$out" --pyi_out="$out" \
    proto/externalscaler.proto
# grpc_tools writes an absolute "import externalscaler_pb2"; make it package-relative.
sed -i 's/^import externalscaler_pb2 as/from . import externalscaler_pb2 as/' "$out/externalscaler_pb2_grpc.py"
