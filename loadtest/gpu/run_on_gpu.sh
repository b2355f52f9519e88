#!/usr/bin/env bash
# On the lent GPU machine (run tool), in the repository root: one step per call.
#
#   bash loadtest/gpu/run_on_gpu.sh receive   # keep the carried parts (one call per part)
#   bash loadtest/gpu/run_on_gpu.sh setup     # reassemble + install vLLM and the wheels,
#                                             # import checks, Llama-3-8B-shaped random pair,
#                                             # matmul peak, a tiny-pair service smoke test
#   bash loadtest/gpu/run_on_gpu.sh bench     # start bench.py in the background, wait <= 9 min
#   bash loadtest/gpu/run_on_gpu.sh wait      # wait again (<= 9 min); copies results to $OUT
#   bash loadtest/gpu/run_on_gpu.sh groups    # GRPO groups, first and second round, service with
#                                             # and without prefix sharing vs vllm serve (~5 min)
#   bash loadtest/gpu/run_on_gpu.sh smoke     # only the smoke test (part of setup)
#   bash loadtest/gpu/run_on_gpu.sh status    # what has arrived / been done so far
#
# State lives in $STATE (default /tmp/drs-gpu), outside the working tree, so it survives from
# one call to the next while the machine stays warm (about 30 s after a call: make the calls
# back to back). Every failure names its step and exits non-zero; `set -e` catches the rest.
# Prepared here by loadtest/gpu/prepare_carry.sh; see loadtest/README.md, "On a GPU machine".
#
# Environment: STATE, PY (python3), BENCH_ARGS (bench.py flags, default below), MODELS_PRESET
# (llama3-8b), SMOKE=0 to skip the smoke test, WAIT_S (540).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
STATE=${STATE:-/tmp/drs-gpu}
PY=${PY:-python3}
CARRY=.gpucarry
SITE=$STATE/site
MODELS=$STATE/models
PRESET=${MODELS_PRESET:-llama3-8b}
WAIT_S=${WAIT_S:-540}
OUT=${OUT:-$STATE/out}
DEFAULT_BENCH_ARGS="--quick --device cuda --dtype bfloat16 --measure-peak"
BENCH_ARGS=${BENCH_ARGS:-$DEFAULT_BENCH_ARGS}
STEP=${1:-}
mkdir -p "$STATE/carry" "$OUT"
# The checkout is not installed there: the server imports from the root, the client from client/.
export PYTHONPATH="$SITE:$PWD/client${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1

say() { echo "[run_on_gpu $STEP $(date -u +%H:%M:%S)] $*"; }
fail() {
    echo "[run_on_gpu $STEP $(date -u +%H:%M:%S)] FAILED at: $*" >&2
    exit 1
}
trap 'rc=$?; [ $rc = 0 ] || echo "[run_on_gpu $STEP] exited with status $rc (line $LINENO: $BASH_COMMAND)" >&2' EXIT

# Checks every carried file named in SHA256SUMS that has arrived; prints what is missing.
receive() {
    [ -f "$CARRY/SHA256SUMS" ] || [ -f "$STATE/carry/SHA256SUMS" ] ||
        fail "receive: no $CARRY/SHA256SUMS (carry it with every part)"
    if [ -d "$CARRY" ]; then
        for f in "$CARRY"/*; do
            [ -f "$f" ] || continue
            name=$(basename "$f")
            cmp -s "$f" "$STATE/carry/$name" 2>/dev/null || cp "$f" "$STATE/carry/$name"
        done
    fi
    missing=0
    while read -r sum name; do
        case $name in WHEEL:*) continue ;; esac
        if [ ! -f "$STATE/carry/$name" ]; then
            say "missing: $name"
            missing=$((missing + 1))
        elif [ "$(sha256sum "$STATE/carry/$name" | cut -d' ' -f1)" != "$sum" ]; then
            rm -f "$STATE/carry/$name"
            fail "receive: $name arrived corrupted (sha256 differs); carry it again"
        else
            say "have:    $name"
        fi
    done <"$STATE/carry/SHA256SUMS"
    say "$missing file(s) still to carry"
    return 0
}

install() {
    if [ -f "$STATE/installed" ]; then
        say "vLLM and wheels already installed in $SITE"
        return 0
    fi
    wheel_line=$(grep '  WHEEL:' "$STATE/carry/SHA256SUMS" 2>/dev/null || grep '  WHEEL:' "$CARRY/SHA256SUMS") ||
        fail "install: SHA256SUMS names no wheel"
    wheel_name=${wheel_line##*WHEEL:}
    wheel_sum=${wheel_line%% *}
    wheel=$STATE/wheels/$wheel_name
    mkdir -p "$STATE/wheels"
    if [ -f "$wheel" ] && [ "$(sha256sum "$wheel" | cut -d' ' -f1)" = "$wheel_sum" ]; then
        say "have the reassembled $wheel_name"
        # shellcheck disable=SC2012
        [ "$(ls "$STATE/wheels" | wc -l)" -gt 1 ] || tar -xf "$STATE/carry/deps.tar" -C "$STATE/wheels" ||
            fail "install: unpacking deps.tar"
    else
        receive
        [ "$missing" = 0 ] || fail "install: $missing carried file(s) missing (see above)"
        say "reassembling $wheel_name"
        cat "$STATE/carry"/vllm.whl.part* >"$wheel"
        [ "$(sha256sum "$wheel" | cut -d' ' -f1)" = "$wheel_sum" ] ||
            fail "install: reassembled wheel's sha256 differs from SHA256SUMS"
        rm -f "$STATE/carry"/vllm.whl.part* # the wheel holds them now (disk)
        tar -xf "$STATE/carry/deps.tar" -C "$STATE/wheels" || fail "install: unpacking deps.tar"
    fi
    say "pip install --no-deps --target $SITE ($(ls "$STATE/wheels" | wc -l) wheels)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$STATE/wheels"/*.whl || fail "install: pip install of the carried wheels"
    touch "$STATE/installed"
}

import_checks() {
    say "import checks"
    "$PY" - <<'EOF' || fail "import checks (vLLM, its CUDA kernels, the service): see the traceback above"
import importlib, sys, torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
assert torch.cuda.is_available(), "torch sees no GPU"
import vllm
print("vllm", vllm.__version__, vllm.__file__)
import vllm._C_stable_libtorch, vllm._moe_C_stable_libtorch  # the CUDA kernels
from vllm.platforms import current_platform
assert current_platform.is_cuda(), f"vLLM platform is {current_platform!r}, not CUDA"
from vllm.vllm_flash_attn.flash_attn_interface import is_fa_version_supported
print("flash-attn 2/3 supported:", is_fa_version_supported(2), is_fa_version_supported(3))
for name in ("vllm.v1.engine.async_llm", "vllm.entrypoints.openai.api_server",
             "vllm.model_executor.models.llama", "dense_reward_server.cli", "dense_reward_server.engines.vllm_engine",
             "fastapi", "uvicorn", "pydantic_settings", "orjson", "aiohttp", "matplotlib"):
    importlib.import_module(name)
print("imports ok")
EOF
}

models() {
    if [ -f "$MODELS/.done-$PRESET" ]; then
        say "model pair already written: $MODELS"
        return 0
    fi
    say "writing the random $PRESET pair to $MODELS"
    "$PY" loadtest/gpu/make_random_pair.py --out "$MODELS" --preset "$PRESET" \
        --dtype bfloat16 --force | tee "$OUT/models.json" || fail "models: make_random_pair.py"
    touch "$MODELS/.done-$PRESET"
}

peak() {
    say "matmul peak"
    "$PY" loadtest/gpu/matmul_peak.py | tee "$OUT/matmul_peak.json" || fail "peak: matmul_peak.py"
    cp "$OUT/matmul_peak.json" "$STATE/matmul_peak.json"
}

# The service once on a tiny random pair: one token-id item, rewards back (catches a broken
# vLLM install in ~1-2 min instead of at the start of the benchmark).
smoke() {
    [ "${SMOKE:-1}" = 1 ] || return 0
    [ -f "$STATE/smoke-ok" ] && return 0
    tiny=$STATE/tiny
    [ -d "$tiny/sft" ] || "$PY" loadtest/gpu/make_random_pair.py --out "$tiny" --preset tiny \
        >/dev/null || fail "smoke: make_random_pair.py --preset tiny"
    say "smoke test: service on the tiny pair (log: $OUT/smoke-service.log)"
    setsid "$PY" -m dense_reward_server serve --backend vllm --sft-model "$tiny/sft" --base-model "$tiny/base" \
        --port 8799 --log-level warning --engine-args '{"enforce_eager": true}' \
        >"$OUT/smoke-service.log" 2>&1 &
    pid=$!
    # HTTP with Python (the machine may lack curl): wait for /ready, POST one token-id item.
    answer=$("$PY" - "$pid" <<'EOF'
import json, os, sys, time, urllib.request
pid, url = int(sys.argv[1]), "http://127.0.0.1:8799"
for _ in range(600):
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("NOT READY: the service exited")
    try:
        if urllib.request.urlopen(url + "/ready", timeout=5).status == 200:
            break
    except OSError:
        time.sleep(1)
else:
    sys.exit("NOT READY after 600 s")
body = {"items": [{"prompt_token_ids": [5, 6, 7], "completion_token_ids": [8, 9, 10, 11]}]}
req = urllib.request.Request(url + "/v1/token_rewards", json.dumps(body).encode(),
                             {"content-type": "application/json"})
print(urllib.request.urlopen(req, timeout=120).read().decode())
EOF
    ) || answer="SMOKE CLIENT FAILED: $answer"
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "$answer" | head -c 600
    echo
    echo "$answer" | grep -q '"rewards"' || { tail -40 "$OUT/smoke-service.log"; fail "smoke: no rewards in the answer"; }
    touch "$STATE/smoke-ok"
}

bench_start() {
    [ -f "$STATE/installed" ] || fail "bench: run the setup step first"
    [ -f "$MODELS/.done-$PRESET" ] || fail "bench: no model pair (setup step)"
    if [ -f "$STATE/bench.pid" ] && kill -0 "$(cat "$STATE/bench.pid")" 2>/dev/null; then
        say "bench.py already running (pid $(cat "$STATE/bench.pid"))"
        return 0
    fi
    peak_args=""
    if [ -f "$STATE/matmul_peak.json" ] && [[ " $BENCH_ARGS " == *" --measure-peak "* ]]; then
        # Measured in setup on an idle GPU: reuse it rather than measure again.
        tflops=$("$PY" -c "import json; print(json.load(open('$STATE/matmul_peak.json'))['tflops'])")
        BENCH_ARGS=${BENCH_ARGS/--measure-peak/}
        peak_args="--peak-tflops $tflops"
    fi
    rm -f "$STATE/bench.rc"
    # shellcheck disable=SC2086  # BENCH_ARGS is a list of flags
    cmd="$PY -m harness bench --sft $MODELS/sft --base $MODELS/base --output $STATE/results/bench-gpu.json $BENCH_ARGS $peak_args"
    rm -f "$STATE/results/bench-gpu.json" "$STATE/results/bench-gpu.png"
    say "starting: $cmd"
    echo "$cmd" >"$STATE/bench.cmd"
    setsid bash -c "$cmd >'$STATE/bench.log' 2>&1; echo \$? >'$STATE/bench.rc'" &
    echo $! >"$STATE/bench.pid"
}

groups() {
    [ -f "$STATE/installed" ] || fail "groups: run the setup step first"
    [ -f "$MODELS/.done-$PRESET" ] || fail "groups: no model pair (setup step)"
    "$PY" -m harness groups --requests "${GROUP_REQUESTS:-24}" \
        --systems service service_unshared vllm_serve_pair \
        --sft "$MODELS/sft" --base "$MODELS/base" --device cuda --dtype bfloat16 \
        --output "$OUT/groups-gpu.json" || fail "groups: python -m harness groups"
    say "groups done: $OUT/groups-gpu.json"
}

bench_wait() {
    [ -f "$STATE/bench.pid" ] || fail "wait: bench.py was never started (bench step)"
    waited=0
    while [ ! -f "$STATE/bench.rc" ] && [ "$waited" -lt "$WAIT_S" ]; do
        sleep 10
        waited=$((waited + 10))
    done
    tail -25 "$STATE/bench.log" || true
    cp "$STATE/bench.log" "$OUT/bench.log" 2>/dev/null || true
    latest=$STATE/results/bench-gpu.json
    if [ -f "$latest" ]; then
        cp "$latest" "$OUT/"
        [ -f "${latest%.json}.png" ] && cp "${latest%.json}.png" "$OUT/"
    fi
    if [ -d results/logs ]; then  # harness/paths.py LOG_DIR
        tar -czf "$OUT/server-logs.tgz" -C results logs
    fi
    if [ ! -f "$STATE/bench.rc" ]; then
        say "STILL RUNNING after ${waited}s: call 'run_on_gpu.sh wait' again now"
        exit 3
    fi
    rc=$(cat "$STATE/bench.rc")
    [ "$rc" = 0 ] || fail "bench: bench.py exited with status $rc (bench.log and server-logs.tgz in \$OUT)"
    say "FINISHED: results in \$OUT (bench-gpu.json, .png, bench.log, server-logs.tgz)"
}

status() {
    receive || true
    for f in installed smoke-ok matmul_peak.json bench.pid bench.rc; do
        [ -e "$STATE/$f" ] && say "done: $f" || say "not yet: $f"
    done
    [ -f "$MODELS/.done-$PRESET" ] && say "done: models ($PRESET)" || say "not yet: models"
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
}

case $STEP in
receive) receive ;;
setup)
    install
    import_checks
    models
    peak
    smoke
    say "setup done; next: run_on_gpu.sh bench"
    ;;
bench)
    bench_start
    bench_wait
    ;;
wait) bench_wait ;;
groups) groups ;;
smoke) smoke ;;
status) status ;;
*)
    echo "usage: $0 receive|setup|bench|wait|groups|smoke|status" >&2
    exit 2
    ;;
esac
