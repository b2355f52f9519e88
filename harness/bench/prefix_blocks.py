"""Which vLLM-CPU block size for prefix sharing: one engine, measured side by side in one run.

    python -m harness prefix-blocks [--groups 12] [--block-sizes 32 128]

For each block size, with prefix sharing off and on: the service's own vLLM engine
(`VLLMScoringEngine`, SFT model of the demo pair, one core) scores GRPO groups (`grpo_group`
128 + 16 x 128, `long_group` 1024 + 16 x 256) four at a time: groups it has never seen (first
round), then the same groups again (second round). Reports groups/s, the prompt tokens read
from the cache, and guard fallbacks. No HTTP: this isolates the engine's work from the API
process. Writes JSON to loadtest/results/ (kept in the repository).
"""

import argparse
import asyncio
import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dense_reward_server import metrics
from dense_reward_server.config import Settings
from dense_reward_server.engines.options import vllm_options
from harness.bench.environment import run_record
from harness.paths import DEMO, RESULTS, ROOT
from harness.workloads import SHAPES, TokenSampler, make_requests

CONCURRENCY = 4


def counter(name: str) -> float:
    return float(metrics.REGISTRY.get_sample_value(name, {"model": "sft"}) or 0.0)


async def rounds(engine: Any, groups: list[Any]) -> dict[str, float]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(group: Any, tag: str) -> None:
        async with gate:
            await engine.score(group.inputs, tag)

    await one(groups[0], "warm-up")
    figures: dict[str, float] = {}
    fallbacks = counter("drs_prefix_guard_fallbacks_total")
    for name in ("first_round", "second_round"):
        cached = counter("drs_prefix_cached_tokens_total")
        start = time.perf_counter()
        await asyncio.gather(*(one(g, f"{name}-{i}") for i, g in enumerate(groups[1:])))
        figures[f"{name}_groups_per_s"] = round(
            (len(groups) - 1) / (time.perf_counter() - start), 3
        )
        figures[f"{name}_cached_tokens_per_group"] = round(
            (counter("drs_prefix_cached_tokens_total") - cached) / (len(groups) - 1), 1
        )
    figures["guard_fallbacks"] = counter("drs_prefix_guard_fallbacks_total") - fallbacks
    return figures


def run_engine(block_size: int, sharing: bool, args: argparse.Namespace) -> dict[str, Any]:
    from dense_reward_server.engines.vllm_engine import VLLMScoringEngine

    settings = Settings(
        sft_model=str(args.demo / "sft"),
        block_size=block_size,
        prefix_sharing=sharing,
        cpu_threads_bind=["0", "1"],
    )
    options = vllm_options(settings, "sft", settings.sft_model, None, cpu=True)
    engine = VLLMScoringEngine.start("sft", options)
    loop = asyncio.new_event_loop()
    try:
        results = {}
        for i, shape in enumerate(args.shapes):
            tokens = TokenSampler(range(3, engine.info.vocab_size), random.Random(args.seed + i))
            groups = make_requests(SHAPES[shape], args.groups + 1, tokens)
            results[shape] = loop.run_until_complete(rounds(engine, groups))
            print(f"block {block_size} sharing {sharing} {shape}: {results[shape]}", flush=True)
        return results
    finally:
        engine.shutdown()
        loop.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness prefix-blocks", description=__doc__)
    parser.add_argument("--groups", type=int, default=12)
    parser.add_argument("--block-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--shapes", nargs="+", default=["grpo_group", "long_group"])
    parser.add_argument("--demo", type=Path, default=DEMO)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        **run_record("python -m harness prefix-blocks", datetime.now(UTC)),
        "groups_per_round": args.groups,
        "concurrency": CONCURRENCY,
        "results": {},
    }
    for block_size in args.block_sizes:
        for sharing in (False, True):
            key = f"block{block_size}_{'shared' if sharing else 'unshared'}"
            report["results"][key] = run_engine(block_size, sharing, args)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = RESULTS / f"prefix-blocks-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
