#!/usr/bin/env bash
# `make image-cpu`: builds docker/Dockerfile.cpu on a machine that can pull no registry image
# and whose build steps reach no package index: the base from debootstrap (base-image.sh), the
# Python packages from a wheelhouse made here (wheelhouse.sh), then `podman build` of the
# unchanged Dockerfile with build arguments only. Elsewhere `docker build -f
# docker/Dockerfile.cpu .` builds the same file from the official python image and the network.
#
# Environment: IMAGE (dense-reward-server:0.1.0-cpu). Writes the build's figures (seconds,
# size, layers) to docker/build/last-build.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGE=${IMAGE:-dense-reward-server:0.1.0-cpu}

need() {
    command -v "$1" >/dev/null && return 0
    echo "image-cpu: installing $2 (Debian package)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
need podman podman
need debootstrap debootstrap

start=$(date +%s)
base=$(bash docker/build/base-image.sh | tail -n 1)
bash docker/build/wheelhouse.sh
prepared=$(date +%s)
podman build --isolation=chroot --format docker -f docker/Dockerfile.cpu -t "$IMAGE" \
    --build-arg PYTHON_IMAGE="$base" \
    --build-arg PIP_ARGS="--no-index --find-links /wheelhouse" \
    --build-arg VCS_REF="$(git rev-parse --short HEAD)" \
    .
built=$(date +%s)
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
layers=$(podman history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | cut -c1-160)
python3 - "$IMAGE" "$base" "$((prepared - start))" "$((built - prepared))" "$size" "$layers" <<'PY' >docker/build/last-build.json
import json, sys
image, base, prepare_s, build_s, size, layers = sys.argv[1:]
print(json.dumps({
    "image": image, "base": base, "prepare_s": int(prepare_s), "podman_build_s": int(build_s),
    "size_bytes": int(size), "size_gb": round(int(size) / 1e9, 2),
    "layers": [line.split("\t", 1) for line in layers.splitlines()],
}, indent=2))
PY
echo "image-cpu: $IMAGE built: base + wheels $((prepared - start)) s, podman build $((built - prepared)) s, $(numfmt --to=si "$size")B" >&2
