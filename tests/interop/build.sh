#!/usr/bin/env bash
# Build the independent KEDA-like Go client (tests/interop/kedaclient) against
# proto/externalscaler.proto, with Debian's grpc-go / protobuf-go, offline, in GOPATH mode.
#
# Nothing generated lands in the repository: stubs, GOPATH and the binary live in
#   ${PREWARM_INTEROP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prewarm/interop}
# The binary is keyed by a hash of the proto, the client source, this script and the
# toolchain versions, so a second run is a cache hit (idempotent).
#
# Usage: tests/interop/build.sh            -> last stdout line is the binary path
# Env:   PREWARM_INTEROP_NO_INSTALL=1      never apt-get install (fail if tools are missing)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
proto="$root/proto/externalscaler.proto"
client_src="$here/kedaclient/main.go"
cache=${PREWARM_INTEROP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prewarm/interop}
gocode=/usr/share/gocode
apt_pkgs=(golang-go golang-google-grpc-dev golang-google-protobuf-dev protoc-gen-go
          protoc-gen-go-grpc protobuf-compiler golang-github-golang-protobuf-1-5-dev)

log() { echo "interop/build.sh: $*" >&2; }

tools_present() {
    command -v go >/dev/null && command -v protoc >/dev/null &&
        command -v protoc-gen-go >/dev/null && command -v protoc-gen-go-grpc >/dev/null &&
        [[ -d $gocode/src/google.golang.org/grpc && -d $gocode/src/google.golang.org/protobuf &&
           -d $gocode/src/github.com/golang/protobuf ]]
}

ensure_tools() {
    tools_present && return 0
    if [[ ${PREWARM_INTEROP_NO_INSTALL:-} == 1 ]]; then
        log "Go toolchain or Debian gRPC packages missing and PREWARM_INTEROP_NO_INSTALL=1"
        return 1
    fi
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null || { log "need root (or sudo) to apt-get install: ${apt_pkgs[*]}"; return 1; }
        sudo=(sudo -n)
    fi
    log "installing: ${apt_pkgs[*]}"
    "${sudo[@]}" apt-get update >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${apt_pkgs[@]}" >&2
    tools_present
}

ensure_tools

for f in "$proto" "$client_src"; do
    [[ -f $f ]] || { log "missing $f"; exit 1; }
done

key=$( {
    sha256sum "$proto" "$client_src" "${BASH_SOURCE[0]}" | cut -d' ' -f1
    go version
    protoc --version
    protoc-gen-go --version 2>&1 || true
    protoc-gen-go-grpc --version 2>&1 || true
    dpkg-query -W -f='${Package}=${Version}\n' "${apt_pkgs[@]}" 2>/dev/null || true
} | sha256sum | cut -c1-16)

bin="$cache/bin/kedaclient-$key"
if [[ -x $bin ]]; then
    log "cache hit"
    echo "$bin"
    exit 0
fi

mkdir -p "$cache/bin"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# GOPATH layout: $work/gopath/src/prewarminterop/{externalscaler,kedaclient}
pkg="prewarminterop"
gen="$work/gopath/src/$pkg/externalscaler"
app="$work/gopath/src/$pkg/kedaclient"
mkdir -p "$gen" "$app"

# M option pins the Go import path regardless of the proto's go_package option.
protoc -I "$root/proto" \
    --go_out="$gen" --go_opt=paths=source_relative \
    --go_opt="Mexternalscaler.proto=$pkg/externalscaler" \
    --go-grpc_out="$gen" --go-grpc_opt=paths=source_relative \
    --go-grpc_opt="Mexternalscaler.proto=$pkg/externalscaler" \
    externalscaler.proto >&2
cp "$client_src" "$app/main.go"

export GO111MODULE=off GOPROXY=off GOFLAGS=
export GOPATH="$work/gopath:$gocode"
export GOCACHE=${GOCACHE:-$cache/go-build}
(
    cd "$app"
    go vet . >&2
    go build -trimpath -o "$work/kedaclient" . >&2
)
mv -f "$work/kedaclient" "$bin"   # atomic within $cache: concurrent builds are safe

# Drop binaries of older sources.
find "$cache/bin" -maxdepth 1 -name 'kedaclient-*' ! -name "kedaclient-$key" -delete 2>/dev/null || true
log "built"
echo "$bin"
