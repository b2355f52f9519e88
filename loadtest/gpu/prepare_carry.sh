#!/usr/bin/env bash
# Here (a machine with network), before the GPU calls: download vLLM 0.26.0 and the wheels of
# loadtest/gpu/requirements-gpu.txt, split them into parts that fit one device call each
# (the working tree and what `carry` names travel together, 64 MiB a call), and print the
# sequence of `run` calls. Idempotent: downloads are kept in $DL and reused.
#
#     bash loadtest/gpu/prepare_carry.sh
#
# Writes (all ignored through .git/info/exclude, nothing tracked):
#   .gpucarry/vllm.whl.partNN   the vLLM wheel in parts (at most PART_MIB each, < 60 MiB)
#   .gpucarry/deps.tar          every other wheel (uncompressed tar: wheels are zips)
#   .gpucarry/SHA256SUMS        sha256 of the whole wheel, of each part and of deps.tar
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
DL=${DL:-/tmp/drs-gpu-dl}
CARRY=.gpucarry
REQ=loadtest/gpu/requirements-gpu.txt
PY=${PY:-.venv/bin/python}
fail() { echo "prepare_carry.sh FAILED at: $*" >&2; exit 1; }

# 1. Ignore the carry folder (local to this checkout; .gitignore is not touched).
exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
grep -qx "/$CARRY/" "$exclude" 2>/dev/null || echo "/$CARRY/" >>"$exclude"
git check-ignore -q "$CARRY/x" || fail "$CARRY/ is not ignored by git"

# 2. Download (cp312 manylinux x86-64 wheels, no dependency resolution: the list is complete).
mkdir -p "$DL/vllm" "$DL/deps"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 manylinux_2_24_x86_64 \
    manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64 any; do
    platforms+=(--platform "$p")
done
download() { # dir, requirement...
    local dir=$1
    shift
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --abi cp312 --abi abi3 --abi none "${platforms[@]}" -d "$dir" "$@" 2>&1 | grep -v "^WARNING: Location" || true
    return "${PIPESTATUS[0]}"
}
vllm_req=$(grep -E '^vllm==' "$REQ")
download "$DL/vllm" "$vllm_req" || fail "pip download $vllm_req"
mapfile -t deps < <(grep -vE '^(#|vllm==|$)' "$REQ")
download "$DL/deps" "${deps[@]}" || fail "pip download of the dependency wheels"
wheel=$(ls "$DL/vllm"/vllm-0.26.0-*.whl | head -1)
[ -f "$wheel" ] || fail "no vllm-0.26.0 wheel in $DL/vllm"
# Exactly one wheel per requirement (two versions of one package break the install there).
for req in "${deps[@]}"; do
    name=$(echo "${req%%==*}" | sed 's/[-_.]/[-_.]/g') # wheel names use _ for - and .
    version=${req##*==}
    n=$(ls "$DL/deps" | grep -ic "^${name}-${version}-" || true)
    [ "$n" = 1 ] || fail "expected one wheel for $req in $DL/deps, found $n"
done

# 3. Part size: what one call may carry beside the working tree (64 MiB in all).
tree_bytes=$(git ls-files -z -co --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
tree_mib=$(((tree_bytes + 1048575) / 1048576))
part_mib=$((62 - tree_mib))
[ "$part_mib" -gt 59 ] && part_mib=59
[ "$part_mib" -ge 32 ] || fail "the working tree is $tree_mib MiB: too little room left in a 64 MiB call"

# 4. Parts, deps.tar, checksums.
rm -rf "$CARRY"
mkdir -p "$CARRY"
split -b "${part_mib}M" -d -a 2 "$wheel" "$CARRY/vllm.whl.part"
tar -cf "$CARRY/deps.tar" -C "$DL/deps" .
deps_mib=$(($(stat -c %s "$CARRY/deps.tar") / 1048576 + 1))
[ $((deps_mib + tree_mib)) -lt 63 ] || fail "deps.tar ($deps_mib MiB) does not fit one call"
(
    cd "$CARRY"
    sha256sum "$wheel" | sed "s#  .*/#  WHEEL:#"
    sha256sum vllm.whl.part* deps.tar
) >"$CARRY/SHA256SUMS.tmp"
mv "$CARRY/SHA256SUMS.tmp" "$CARRY/SHA256SUMS"

# 5. The calls to make (device README: carry; each call must follow the last within ~30 s,
#    or the machine is given back and what it received is lost).
echo "working tree: $tree_mib MiB; parts of $part_mib MiB; deps.tar: $deps_mib MiB"
cat "$CARRY/SHA256SUMS"
echo
echo "GPU calls, back to back (run tool; command, carry):"
i=1
for part in "$CARRY"/vllm.whl.part*; do
    echo "  $i. bash loadtest/gpu/run_on_gpu.sh receive      carry [\"$CARRY/SHA256SUMS\", \"$part\"]"
    i=$((i + 1))
done
echo "  $i. bash loadtest/gpu/run_on_gpu.sh setup        carry [\"$CARRY/SHA256SUMS\", \"$CARRY/deps.tar\"]"
i=$((i + 1))
echo "  $i. bash loadtest/gpu/run_on_gpu.sh bench        (no carry; waits up to 9 min)"
i=$((i + 1))
echo "  $i. bash loadtest/gpu/run_on_gpu.sh wait         (again until it says FINISHED)"
