#!/usr/bin/env bash
# A Debian 12 + Python 3.11 base image made with debootstrap (no registry image can be pulled
# here), imported into podman as localhost/drs-python:3.11-bookworm-<key>. The key hashes
# everything the root is made from (this file, suite, mirror, package list), so an unchanged
# recipe reuses the image already built. Prints the image name on its last line.
set -euo pipefail
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What the official python image the Dockerfile names has: `python` on the PATH
# (python-is-python3) and the C headers (libpython3.11-dev: vLLM's torch.compile of its sampler
# builds a C++ extension at start-up and needs Python.h; without it the engines die).
PACKAGES=python3,python3-venv,python-is-python3,libpython3.11-dev,ca-certificates
key=$( (cat "$0"; echo "$SUITE $MIRROR $PACKAGES") | sha256sum | cut -c1-12)
image=localhost/drs-python:3.11-$SUITE-$key
if podman image exists "$image"; then
    echo "base image cached: $image" >&2
    echo "$image"
    exit 0
fi
root=$(mktemp -d /tmp/drs-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
start=$(date +%s)
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >&2
# What an image's root needs no copy of: apt lists and caches, logs of the bootstrap.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
tar -C "$root" -c . | podman import --change "CMD [\"python3\"]" - "$image" >&2
echo "base image built in $(($(date +%s) - start)) s: $image" >&2
echo "$image"
