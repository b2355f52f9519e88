#!/usr/bin/env bash
# The browser for tests/test_ui.py: Debian's chromium, driven by the PyPI `playwright` package
# (a dev extra). We never run `playwright install`: it downloads a browser build from a CDN,
# which sandboxed CI machines cannot reach; the distribution's chromium works the same.
# Idempotent: does nothing when /usr/bin/chromium is already there.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
/usr/bin/chromium --version
