"""Time one 64 x 256-token request end to end (HTTP + tokenization + both models), for each
backend side by side on the same machine, same models, same request.

    python -m harness one-request [--backends vllm transformers] [--repeats 5]

Starts `dense-reward-server serve` per backend on loopback (harness.servers), waits for /ready,
sends one warm-up and then `--repeats` identical requests; reports start-up time, median/min
latency and scored tokens/s. Writes JSON to loadtest/results/; server logs to results/logs/.
"""

import argparse
import json
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from harness.bench.environment import run_record
from harness.paths import DEMO, RESULTS, pair_settings
from harness.servers import ServiceProcess, vocab_size
from harness.workloads import TokenSampler, request_body


def run_backend(backend: str, demo: Path, args: argparse.Namespace) -> dict[str, Any]:
    server = ServiceProcess(
        name=f"one-request-{backend}",
        backend=backend,
        log_level="warning",
        **pair_settings(demo),
    )
    try:
        start_s = server.wait_ready()
        tokens = TokenSampler(range(vocab_size(server.models())), random.Random(0))
        length = (args.prompt_len, args.prompt_len), (args.completion_len, args.completion_len)
        body = request_body(tokens.inputs(args.items, *length), include=["logprobs"])
        latencies = []
        with httpx.Client(base_url=server.url, timeout=600) as client:
            client.post("/v1/token_rewards", json=body).raise_for_status()  # warm-up
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                response = client.post("/v1/token_rewards", json=body)
                latencies.append(time.perf_counter() - t0)
                response.raise_for_status()
    finally:
        server.stop()
    scored = args.items * args.completion_len
    total = args.items * (args.prompt_len + args.completion_len)
    median = statistics.median(latencies)
    return {
        "backend": backend,
        "startup_s": round(start_s, 1),
        "latency_median_s": round(median, 4),
        "latency_min_s": round(min(latencies), 4),
        "scored_tokens_per_s": round(scored / median, 1),
        "total_tokens_per_s": round(total / median, 1),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness one-request", description=__doc__)
    parser.add_argument("--backends", nargs="+", default=["vllm", "transformers"])
    parser.add_argument("--demo", default=str(DEMO))
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--completion-len", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    results = [run_backend(backend, Path(args.demo), args) for backend in args.backends]
    report = {
        **run_record("python -m harness one-request", started),
        "workload": vars(args),
        "results": results,
    }
    out = RESULTS
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"one_request-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
