"""One-sample traffic on the real vLLM engine, as trainers send it: the K samples of a prompt in
K concurrent one-item requests share the prompt, and a whole batch of one-item requests in
flight neither starves /health nor changes an answer."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from dense_reward_server.sequence import ScoreInput
from harness.bench.burst import HEALTH_TIMEOUT_S, probed, send_all
from harness.bench.clients import make_client
from harness.workloads import request_body

pytestmark = pytest.mark.vllm

URL = "/v1/token_rewards"
SAME = 1e-5  # cached and uncached vLLM answers: equal to float32 rounding


def ids(rng: random.Random, count: int) -> list[int]:
    return [rng.randrange(3, 1000) for _ in range(count)]


def metric(client: httpx.Client, prefix: str) -> float:
    line = next(x for x in client.get("/metrics").text.splitlines() if x.startswith(prefix))
    return float(line.split()[-1])


async def burst(url: str, bodies: list[dict[str, Any]]) -> tuple[list[Any], list[float]]:
    """All bodies at once, one request each, while /health is probed as the kubelet would;
    returns the answers and each probe's seconds (over HEALTH_TIMEOUT_S: no answer in time)."""
    client = make_client("aiohttp")
    try:
        work = send_all(client, url + URL, [orjson.dumps(body) for body in bodies])
        (_, answers), health = await probed(url, work)
    finally:
        await client.close()
    return [orjson.loads(answer)["results"][0] for answer in answers], health


def test_one_sample_requests_of_a_group_share_its_prompt(
    client: httpx.Client, vllm_server: Any
) -> None:
    rng = random.Random(19)
    prompt = ids(rng, 300)
    samples = [ScoreInput(prompt, ids(rng, rng.randint(1, 40))) for _ in range(8)]
    before = metric(client, 'drs_prefix_cached_tokens_total{model="sft"}')
    results, health = asyncio.run(
        burst(vllm_server.url, [request_body([sample]) for sample in samples])
    )
    # One sample primed the prompt; each other one read it (whole blocks: 288 of 300 tokens),
    # whether it came in the same batch as the primer or after it.
    cached = metric(client, 'drs_prefix_cached_tokens_total{model="sft"}') - before
    assert cached >= (len(samples) - 1) * 288
    group = client.post(URL, json=request_body(samples, group=True)).json()
    for one, member in zip(results, group["results"][0]["completions"], strict=True):
        for key in ("rewards", "sft_logprobs", "base_logprobs"):
            assert np.max(np.abs(np.float32(one[key]) - np.float32(member[key]))) <= SAME
    assert health and max(health) <= HEALTH_TIMEOUT_S


def test_a_batch_of_one_sample_requests_keeps_health_answering(
    client: httpx.Client, vllm_server: Any
) -> None:
    """200 one-item requests in flight at once (verl's reward loop sends a step's batch so)."""
    rng = random.Random(23)
    samples = [ScoreInput([1, *ids(rng, 63)], ids(rng, 192)) for _ in range(200)]
    batches_before = metric(client, "drs_batch_requests_count")
    results, health = asyncio.run(
        burst(vllm_server.url, [request_body([sample]) for sample in samples])
    )
    assert health and max(health) <= HEALTH_TIMEOUT_S, health
    # The requests that arrived while the engines were busy went together.
    assert metric(client, "drs_batch_requests_count") - batches_before < len(samples)
    batched = client.post(URL, json=request_body(samples)).json()["results"]
    for one, same in zip(results, batched, strict=True):
        assert np.max(np.abs(np.float32(one["rewards"]) - np.float32(same["rewards"]))) <= SAME
