#!/usr/bin/env bash
# A real Prometheus for tests/prometheus (Debian's `prometheus` package: prometheus + promtool).
#
#   scripts/prometheus-env.sh [install]   install the package when `prometheus` or `promtool` is
#                                         missing (apt-get update first; needs root or passwordless
#                                         sudo); a no-op when both are there. Prints their paths.
#   scripts/prometheus-env.sh check       exit 0 when both are installed (prints paths and version),
#                                         1 otherwise; never installs
#
# The tests start the server themselves (tests/support/promenv.py) on a free loopback port with a
# throwaway data directory; the package's systemd unit is neither needed nor started.
set -euo pipefail

log() { printf 'prometheus-env: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo -n "$@"
    else die "need root (or passwordless sudo) to run: $*"; fi
}

installed() { command -v prometheus >/dev/null && command -v promtool >/dev/null; }

report() {
    printf 'PROMETHEUS=%s\nPROMTOOL=%s\n' "$(command -v prometheus)" "$(command -v promtool)"
    log "$(prometheus --version 2>&1 | head -n1)"
}

install() {
    if installed; then
        report
        return 0
    fi
    command -v apt-get >/dev/null || die "prometheus/promtool missing and no apt-get: install Prometheus >= 2.42 yourself"
    log "installing the Debian prometheus package (prometheus + promtool, ~15 s)"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    # policy-rc.d-less containers: the package's service is not started (no systemd), which is fine.
    as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    installed || die "apt-get installed prometheus but prometheus/promtool are still not on PATH"
    report
}

case "${1:-install}" in
    install) install ;;
    check)
        if installed; then report; else log "prometheus/promtool not installed"; exit 1; fi ;;
    *) die "usage: $0 [install|check]" ;;
esac
