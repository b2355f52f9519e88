"""What an extra baseline costs: memory and throughput of the pessimistic reward.

One server with `base` (two engines: SFT and base) against one with `base` and `sft-half`
(three engines; requests ask for `baselines: [base, sft-half]`), same models, same requests,
started one after the other `--repeats` times (so drift on a shared machine hits both alike).
Memory: resident set of the server and its engine processes once ready (psutil, summed over
the process tree). Throughput: sequences per second of `--requests` requests of a shape
(default GRPO groups, 16 x 128+128 tokens) sent one after another. Writes
loadtest/results/baselines-<time>.json; only ratios within one run compare.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from dense_reward_client import RewardClient

from harness.bench.cli import sampler, scoring_vocab
from harness.bench.environment import run_record
from harness.paths import DEMO, RESULTS
from harness.processes import tree_rss_bytes
from harness.servers import ServiceProcess
from harness.workloads import SHAPES, Request

SYSTEMS = {
    "one baseline (base)": ({}, ["base"]),
    "two baselines (base, sft-half)": ({"sft-half": "sft-half"}, ["base", "sft-half"]),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness baselines", description=__doc__)
    parser.add_argument("--demo", type=Path, default=DEMO)
    parser.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    parser.add_argument("--shape", default="grpo_group", choices=list(SHAPES))
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def measure(
    args: argparse.Namespace, name: str, requests: list[Request], repeat: int
) -> dict[str, Any]:
    extras, baselines = SYSTEMS[name]
    settings: dict[str, Any] = {
        "sft_model": str(args.demo / "sft"),
        "base_model": str(args.demo / "base"),
    }
    if extras:
        paths = {key: str(args.demo / folder) for key, folder in extras.items()}
        settings["extra_baselines"] = json.dumps(paths)
    server = ServiceProcess(name=f"baselines-{repeat}", backend=args.backend, **settings)
    try:
        ready_s = server.wait_ready()
        rss = tree_rss_bytes(psutil.Process(server.proc.pid)) / 2**20
        with RewardClient(server.url) as client:
            warm = requests[0].body()
            client.token_rewards(warm["items"], baselines=baselines)
            started = time.perf_counter()
            for request in requests[1:]:
                client.token_rewards(request.body()["items"], baselines=baselines)
            seconds = time.perf_counter() - started
        sequences = sum(len(r.inputs) for r in requests[1:])
        return {
            "ready_s": round(ready_s, 1),
            "rss_mib": round(rss, 1),
            "sequences_per_s": round(sequences / seconds, 2),
            "seconds": round(seconds, 2),
        }
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = datetime.now(UTC)
    vocab, _ = scoring_vocab(args.demo / "sft")
    tokens = sampler(vocab, args.seed)
    requests = [SHAPES[args.shape].request(tokens) for _ in range(args.requests + 1)]
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in SYSTEMS}
    for repeat in range(args.repeats):
        for name in SYSTEMS:
            rounds[name].append(measure(args, name, requests, repeat))
            print(f"[{repeat + 1}/{args.repeats}] {name}: {rounds[name][-1]}", flush=True)
    one, two = (rounds[name] for name in SYSTEMS)
    ratio = {
        key: round(float(np.median([b[key] / a[key] for a, b in zip(one, two, strict=True)])), 3)
        for key in ("rss_mib", "sequences_per_s")
    }
    result = {
        **run_record("python -m harness baselines", started),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rounds": rounds,
        "median_ratio_two_over_one": ratio,
    }
    out = args.out or RESULTS / f"baselines-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"two baselines / one: memory x{ratio['rss_mib']}, throughput x{ratio['sequences_per_s']}"
    )
    print(f"wrote {out}")
    return result
