"""Throughput/latency benchmark: this service vs the two setups a user would run instead.

    python -m harness bench            # full run (~25 min on 2 cores)
    python -m harness bench --quick    # ~5-8 min smoke run

Systems, measured one after another on the same machine and demo models (never two at once:
they would share the cores): `service` (this server, vLLM engine, over HTTP),
`vllm_serve_pair` (two stock vLLM OpenAI servers + client-side pairing), `transformers_loop`
(in-process, the service's transformers engine in a loop). Workloads: `single`, `rl_batch`,
`grpo_group`. Per system and shape: a closed-loop calibration estimates capacity, then an
open-loop sweep sends Poisson arrivals at fractions of it. Writes
loadtest/results/bench-<UTC>.json and .png. See loadtest/README.md for what every figure means.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.paths import DEMO
from harness.workloads import SHAPES

SYSTEMS = ("service", "vllm_serve_pair", "transformers_loop")
# Sweep defaults of a quick and a full run (any of them can be given on the command line).
QUICK = dict(
    loads=[0.5, 1.0, 1.5], point_s=5.0, min_requests=3, drain_s=10.0, extend=1, calib_s=3.0
)
FULL = dict(
    loads=[0.25, 0.5, 0.75, 1.0, 1.25, 1.5],
    point_s=15.0,
    min_requests=5,
    drain_s=30.0,
    extend=2,
    calib_s=6.0,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="~5-8 min: fewer loads, shorter points")
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--demo", type=Path, default=DEMO)
    p.add_argument("--sft", type=Path, help="SFT model folder (default: DEMO/sft)")
    p.add_argument("--base", type=Path, help="base model folder (default: DEMO/base)")
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where the peers and the transformers loop run (auto: cuda if torch sees a GPU); "
        "the service picks its own device",
    )
    p.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weights/activations dtype of all systems (their shared `dtype` setting); default "
        "auto: float32 on CPU; on CUDA the model's own for vLLM, bfloat16 for the loop",
    )
    p.add_argument(
        "--gpu-memory-utilization",
        type=float,
        help="fraction of device memory for each engine, the service's and the peer servers' "
        "(their shared setting; default 0.4 on GPU, 0.1 on CPU)",
    )
    p.add_argument(
        "--peer-enforce-eager",
        choices=["auto", "yes", "no"],
        default="auto",
        help="peer servers' --enforce-eager; auto: yes on CPU, no on CUDA (as the service)",
    )
    p.add_argument(
        "--output",
        type=Path,
        help="result JSON path (the .png beside it); default results/bench-<UTC>.json",
    )
    p.add_argument("--peak-tflops", type=float, help="device peak for MFU (TFLOP/s)")
    p.add_argument(
        "--measure-peak",
        action="store_true",
        help="measure the peak with loadtest/gpu/matmul_peak.py (bf16 on CUDA, fp32 on CPU)",
    )
    p.add_argument("--loads", type=float, nargs="+", help="fractions of calibrated capacity")
    p.add_argument("--point-s", type=float, help="arrival window per sweep point (s)")
    p.add_argument("--min-requests", type=int, help="requests per point at least")
    p.add_argument("--max-requests", type=int, default=2000)
    p.add_argument("--drain-s", type=float, help="wait after the last arrival before cancelling")
    p.add_argument("--extend", type=int, help="extra x1.5 points while still sustained")
    p.add_argument("--calib-s", type=float, help="closed-loop calibration time per shape (s)")
    p.add_argument("--calib-requests", type=int, default=3)
    p.add_argument("--calib-concurrency", type=int, default=4)
    p.add_argument("--variants", type=int, default=8, help="distinct requests per shape")
    p.add_argument("--peer-mode", choices=["batch", "per_seq"], default="batch")
    p.add_argument(
        "--peer-detokenize",
        action="store_true",
        help="run the peer servers with their tokenizer (default: --skip-tokenizer-init)",
    )
    p.add_argument(
        "--client",
        choices=["aiohttp", "httpx"],
        default="aiohttp",
        help="load generator's HTTP client",
    )
    p.add_argument("--hf-threads", type=int, default=2)
    p.add_argument("--hf-max-batch-tokens", type=int, default=16384)
    p.add_argument("--service-flag", action="append", default=[], help="extra `serve` flag")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--reanalyze",
        type=Path,
        help="recompute peaks, ratios and the .png of an existing result JSON from its points",
    )
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args
