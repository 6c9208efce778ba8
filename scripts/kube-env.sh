#!/usr/bin/env bash
# A real kube-apiserver + etcd for the Kubernetes tests (no Docker, no kubelet, no controllers).
#
#   scripts/kube-env.sh deps          install missing apt packages (golang-go rsync etcd-server dpkg-dev
#                                     openssl) and the deb-src source list (needs root or sudo)
#   scripts/kube-env.sh build         build kube-apiserver v1.20.2 from Debian's source package, offline,
#                                     once; cached in $PREWARM_KUBE_CACHE (default
#                                     ${XDG_CACHE_HOME:-$HOME/.cache}/prewarm/kube-apiserver-v1.20.2)
#   scripts/kube-env.sh path          print the cached binary's path (exit 1 when not built)
#   scripts/kube-env.sh start DIR     start etcd (data on /dev/shm) + apiserver on free loopback ports;
#                                     writes DIR/admin.kubeconfig, DIR/prewarm.kubeconfig (the daemon's
#                                     ServiceAccount user), DIR/env (KEY=VALUE lines: SERVER,
#                                     ADMIN_TOKEN, USER_TOKEN, ETCD_PID, APISERVER_PID ...)
#                                     and returns once /readyz answers ok
#   scripts/kube-env.sh stop DIR      stop what `start DIR` started (by the PIDs it recorded) and
#                                     remove the etcd data directory
#
# Why build: no kube-apiserver binary is packaged for Debian, but the `kubernetes` source package
# ships its vendor/ tree, so `make WHAT=cmd/kube-apiserver` works with GOPROXY=off. The build takes
# ~5-10 min on 2 cores and a 1.5 GB tree; only the 110 MB binary is kept.
#
# Token users written to tokens.csv (static token auth; RBAC is the only authorizer):
#   admin                                   system:masters - the test harness (namespaces, pods, nodes)
#   system:serviceaccount:prewarm:prewarm   the daemon under test: the user name and groups a pod of
#                                           ServiceAccount prewarm/prewarm authenticates as, so the
#                                           shipped deploy/rbac bindings apply to it unchanged
set -euo pipefail

VERSION=v1.20.2
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/prewarm
CACHE_DIR=${PREWARM_KUBE_CACHE:-$CACHE_ROOT/kube-apiserver-$VERSION}
BIN=$CACHE_DIR/kube-apiserver

log() { printf 'kube-env: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo -n "$@"
    else die "need root (or passwordless sudo) to run: $*"; fi
}

have_src_list() {
    grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/
}

cmd_deps() {
    local missing=()
    command -v go >/dev/null || missing+=(golang-go)
    command -v rsync >/dev/null || missing+=(rsync)
    command -v etcd >/dev/null || missing+=(etcd-server)
    command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v make >/dev/null || missing+=(make)
    command -v curl >/dev/null || missing+=(curl)
    local update=0
    if [ ! -x "$BIN" ] && ! have_src_list; then
        log "adding the deb-src source list (for apt-get source kubernetes)"
        printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            | as_root tee /etc/apt/sources.list.d/prewarm-debian-src.sources >/dev/null
        update=1
    fi
    if [ ${#missing[@]} -gt 0 ] || [ "$update" = 1 ]; then
        as_root apt-get update -qq
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

cmd_build() {
    # etcd, openssl and curl are needed to *start* even when the binary is cached.
    cmd_deps
    if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "$VERSION"; then
        log "cached: $BIN"; echo "$BIN"; return 0
    fi
    mkdir -p "$CACHE_ROOT"
    # Serialise concurrent builds (two engineers, or two CI jobs on one cache).
    exec 9>"$CACHE_ROOT/kube-apiserver.lock"
    flock 9
    if [ -x "$BIN" ]; then log "built by a concurrent run: $BIN"; echo "$BIN"; return 0; fi
    # The build tree is ~1.5 GB: never leave it behind, whatever happens (global: the EXIT trap
    # runs after this function's locals are gone).
    BUILD_WORK=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
    trap 'rm -rf "${BUILD_WORK:-/nonexistent}"' EXIT
    local work=$BUILD_WORK
    local t0=$SECONDS
    (
        cd "$work"
        apt-get source --download-only kubernetes >/dev/null
        dpkg-source -x kubernetes_*.dsc src >/dev/null
        cd src
        # The build keeps its Go cache under _output/: removed with the tree.
        GOPROXY=off KUBE_GIT_VERSION=$VERSION KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 \
            KUBE_GIT_TREE_STATE=clean \
            make WHAT=cmd/kube-apiserver KUBE_BUILD_PLATFORMS=linux/amd64 >"$work/build.log" 2>&1 \
            || { tail -40 "$work/build.log" >&2; exit 1; }
    )
    local out
    out=$(find "$work/src/_output" -type f -name kube-apiserver -perm -u+x | head -1)
    [ -n "$out" ] || die "build produced no kube-apiserver binary"
    mkdir -p "$CACHE_DIR"
    cp "$out" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
    log "built $BIN in $((SECONDS - t0)) s"
    echo "$BIN"
}

cmd_path() {
    [ -x "$BIN" ] || exit 1
    echo "$BIN"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

rand_token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

cmd_start() {
    local dir=${1:?usage: kube-env.sh start DIR}
    [ -x "$BIN" ] || die "kube-apiserver not built: run scripts/kube-env.sh build"
    command -v etcd >/dev/null || die "etcd missing: run scripts/kube-env.sh deps"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local p_client p_peer p_api
    p_client=$(free_port); p_peer=$(free_port); p_api=$(free_port)
    # etcd 3.4 has no --unsafe-no-fsync: tmpfs keeps its fsyncs cheap.
    local etcd_data
    etcd_data=$(mktemp -d /dev/shm/prewarm-etcd.XXXXXX)
    local admin_token user_token
    admin_token=$(rand_token); user_token=$(rand_token)
    {
        echo "$admin_token,admin,admin,system:masters"
        echo "$user_token,system:serviceaccount:prewarm:prewarm,prewarm-sa,\"system:serviceaccounts,system:serviceaccounts:prewarm,system:authenticated\""
    } >"$dir/tokens.csv"
    [ -f "$dir/sa.key" ] || openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
    openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
    mkdir -p "$dir/certs"

    local t0=$SECONDS
    setsid etcd --name default --data-dir "$etcd_data" \
        --listen-client-urls "http://127.0.0.1:$p_client" --advertise-client-urls "http://127.0.0.1:$p_client" \
        --listen-peer-urls "http://127.0.0.1:$p_peer" --initial-advertise-peer-urls "http://127.0.0.1:$p_peer" \
        --initial-cluster "default=http://127.0.0.1:$p_peer" --log-level warn \
        >"$dir/etcd.log" 2>&1 </dev/null &
    local etcd_pid=$!
    setsid "$BIN" --etcd-servers "http://127.0.0.1:$p_client" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$p_api" \
        --cert-dir "$dir/certs" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
        --service-cluster-ip-range 10.96.0.0/16 \
        --token-auth-file "$dir/tokens.csv" --authorization-mode RBAC \
        --disable-admission-plugins ServiceAccount --enable-priority-and-fairness=false \
        --event-ttl 1h \
        >"$dir/apiserver.log" 2>&1 </dev/null &
    local api_pid=$!
    local server="https://127.0.0.1:$p_api"
    cat >"$dir/env" <<EOF
SERVER=$server
ADMIN_TOKEN=$admin_token
USER_TOKEN=$user_token
ETCD_PID=$etcd_pid
APISERVER_PID=$api_pid
ETCD_DATA=$etcd_data
EOF

    local deadline=$((SECONDS + ${KUBE_ENV_START_TIMEOUT:-90}))
    until curl -ksf -H "Authorization: Bearer $admin_token" "$server/readyz" >/dev/null 2>&1; do
        if ! kill -0 "$api_pid" 2>/dev/null; then
            tail -30 "$dir/apiserver.log" >&2; cmd_stop "$dir"; die "kube-apiserver exited"
        fi
        if [ $SECONDS -ge $deadline ]; then
            tail -30 "$dir/apiserver.log" >&2; cmd_stop "$dir"; die "kube-apiserver not ready in time"
        fi
        sleep 0.2
    done
    # The apiserver self-signs (CA + serving cert, 127.0.0.1 in the SANs) into --cert-dir: trust
    # that bundle rather than skipping verification (clients warn on every insecure request).
    write_kubeconfig "$dir/admin.kubeconfig" "$server" admin "$admin_token" "$dir/certs/apiserver.crt"
    write_kubeconfig "$dir/prewarm.kubeconfig" "$server" prewarm "$user_token" "$dir/certs/apiserver.crt"
    log "ready at $server in $((SECONDS - t0)) s (dir $dir)"
}

write_kubeconfig() {
    local file=$1 server=$2 user=$3 token=$4 ca=$5
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: $server
    certificate-authority: $ca
users:
- name: $user
  user:
    token: $token
contexts:
- name: $user@local
  context:
    cluster: local
    user: $user
current-context: $user@local
EOF
}

cmd_stop() {
    local dir=${1:?usage: kube-env.sh stop DIR}
    [ -f "$dir/env" ] || return 0
    local APISERVER_PID='' ETCD_PID='' ETCD_DATA=''
    # shellcheck disable=SC1091
    . "$dir/env"
    for pid in $APISERVER_PID $ETCD_PID; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $APISERVER_PID $ETCD_PID; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    case "$ETCD_DATA" in /dev/shm/prewarm-etcd.*) rm -rf "$ETCD_DATA" ;; esac
}

case "${1:-}" in
    deps) cmd_deps ;;
    build) cmd_build ;;
    path) cmd_path ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
