"""Time one 64 x 256-token request end to end (HTTP + tokenization + both models), for each
backend side by side on the same machine, same models, same request.

    python bench/one_request.py [--backends vllm transformers] [--repeats 5]

Starts `python -m service serve` per backend on loopback, waits for /ready, sends one warm-up
and then `--repeats` identical requests; reports start-up time, median/min latency, scored
tokens/s, and the engine time share from the server's x-total-time header. Writes JSON to
bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def workload(items: int, prompt_len: int, completion_len: int, vocab: int) -> dict[str, Any]:
    rng = random.Random(0)
    return {
        "items": [
            {
                "prompt_token_ids": [rng.randrange(vocab) for _ in range(prompt_len)],
                "completion_token_ids": [rng.randrange(vocab) for _ in range(completion_len)],
            }
            for _ in range(items)
        ],
        "include": ["logprobs"],
    }


def run_backend(backend: str, demo: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "service",
        "serve",
        "--backend",
        backend,
        "--port",
        str(port),
        "--sft-model",
        str(demo / "sft"),
        "--base-model",
        str(demo / "base"),
        "--log-level",
        "warning",
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{backend} server exited with {proc.returncode}")
            try:
                if httpx.get(url + "/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        start_s = time.perf_counter() - started
        vocab = httpx.get(url + "/v1/models").json()["data"][0]["vocab_size"]
        body = workload(args.items, args.prompt_len, args.completion_len, vocab)
        latencies = []
        with httpx.Client(base_url=url, timeout=600) as client:
            client.post("/v1/token_rewards", json=body).raise_for_status()  # warm-up
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                response = client.post("/v1/token_rewards", json=body)
                latencies.append(time.perf_counter() - t0)
                response.raise_for_status()
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
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", nargs="+", default=["vllm", "transformers"])
    parser.add_argument("--demo", default=str(ROOT / ".models" / "demo"))
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--completion-len", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = [run_backend(backend, Path(args.demo), args) for backend in args.backends]
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    report = {
        "benchmark": "one_request",
        "git_revision": revision or None,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "workload": vars(args),
        "results": results,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"one_request-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
