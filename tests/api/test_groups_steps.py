"""Groups, step views, compact arrays and the no-baseline option, over loopback HTTP with the
deterministic fake engine (the real-engine equivalents live in test_vllm_engine.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from dense_reward_client.encoding import decode_floats, decode_ints

from dense_reward_server.rewards.groups import group_scores
from dense_reward_server.rewards.steps import text_steps, tokens_per_step

URL = "/v1/token_rewards"
PROMPT = {"messages": [{"role": "user", "content": "Sort ascending: 9 2 5"}]}
COMPLETIONS = ["2 5 9", "2 9 5", "9 5 2", "2 5"]


@pytest.fixture(scope="module")
def client(fake_server: Callable[..., Any]) -> Iterator[httpx.Client]:
    with (
        fake_server(max_group_size=4, max_items_per_request=16) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        yield http


def post(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(URL, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_group_equals_its_completions_sent_as_single_items(client: httpx.Client) -> None:
    members: list[Any] = [*COMPLETIONS[:2], {"completion_token_ids": [40, 41, 42], "id": "ids"}]
    group = post(client, {"items": [{**PROMPT, "completions": members, "id": "g"}]})["results"][0]
    singles = post(
        client,
        {
            "items": [
                {**PROMPT, "completion": COMPLETIONS[0]},
                {**PROMPT, "completion": COMPLETIONS[1]},
                {**PROMPT, "completion_token_ids": [40, 41, 42]},
            ]
        },
    )["results"]
    assert group["id"] == "g" and [m["index"] for m in group["completions"]] == [0, 1, 2]
    assert group["completions"][2]["id"] == "ids"
    for member, single in zip(group["completions"], singles, strict=True):
        assert member["token_ids"] == single["token_ids"]
        assert member["rewards"] == single["rewards"]
        assert member["total_reward"] == single["total_reward"]
    totals = np.array([m["total_reward"] for m in group["completions"]])
    assert group["group"]["size"] == 3
    assert group["group"]["mean_total_reward"] == pytest.approx(totals.mean())
    assert group["group"]["std_total_reward"] == pytest.approx(totals.std())
    assert "scores" not in group["group"]


def test_group_baselines_match_a_hand_computation(client: httpx.Client) -> None:
    body = {"items": [{**PROMPT, "completions": COMPLETIONS}], "group_baseline": "leave_one_out"}
    group = post(client, body)["results"][0]
    totals = [m["total_reward"] for m in group["completions"]]
    by_hand = [totals[i] - sum(totals[:i] + totals[i + 1 :]) / 3 for i in range(4)]
    assert group["group"]["scores"] == pytest.approx(by_hand, abs=1e-9)
    assert group_scores(np.array([1.0, 2.0, 6.0]), "leave_one_out") == [-3.0, -1.5, 4.5]
    assert group_scores(np.array([1.0, 2.0, 6.0]), "mean") == [-2.0, -1.0, 3.0]
    assert group_scores(np.array([5.0]), "leave_one_out") == [None]


def test_groups_and_singles_mix_in_order(client: httpx.Client) -> None:
    body = {
        "items": [
            {**PROMPT, "completion": "2 5 9"},
            {**PROMPT, "completions": COMPLETIONS[:2]},
            {"prompt_token_ids": [1, 2], "completion_token_ids": [3]},
        ]
    }
    results = post(client, body)["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert "completions" in results[1] and "completions" not in results[2]


def test_step_rewards_sum_their_token_rewards(client: httpx.Client) -> None:
    text = "First 2 5.\n\nThen 9.\n\nDone"
    body = {
        "items": [{"prompt": "x", "completion": text}],
        "steps": {"delimiter": "\n\n"},
        "include": ["offsets"],
    }
    result = post(client, body)["results"][0]
    steps = result["steps"]
    assert [text[a:b] for a, b in (s["char_span"] for s in steps)] == [
        "First 2 5.\n\n",
        "Then 9.\n\n",
        "Done",
    ]
    covered = [i for s in steps for i in range(*s["token_span"])]
    assert covered == list(range(result["num_tokens"]))
    for step in steps:
        start, end = step["token_span"]
        assert step["reward"] == pytest.approx(sum(result["rewards"][start:end]), abs=1e-6)
    assert sum(s["reward"] for s in steps) == pytest.approx(result["total_reward"], abs=1e-5)


def test_delimiter_that_never_occurs_gives_one_step(client: httpx.Client) -> None:
    body = {"items": [{"prompt": "x", "completion": "2 5 9"}], "steps": {"delimiter": "###"}}
    result = post(client, body)["results"][0]
    assert len(result["steps"]) == 1
    assert result["steps"][0]["token_span"] == [0, result["num_tokens"]]


def test_explicit_spans_and_masked_tokens(client: httpx.Client) -> None:
    item = {
        "prompt_token_ids": [1, 2],
        "completion_token_ids": [5, 6, 7, 8, 9],
        "mask": [1, 1, 0, 1, 1],
        "step_spans": [[0, 2], [2, 5]],
    }
    result = post(client, {"items": [item]})["results"][0]
    first, second = result["steps"]
    rewards = result["rewards"]
    assert first["reward"] == pytest.approx(rewards[0] + rewards[1], abs=1e-6)
    assert second["reward"] == pytest.approx(rewards[3] + rewards[4], abs=1e-6)
    assert second["scored_tokens"] == 2


def test_straddling_token_goes_to_the_step_of_its_first_character() -> None:
    char_spans = text_steps("ab\n\ncd", "\n\n")
    assert char_spans == [(0, 4), (4, 6)]
    # Tokens: "ab", "\n\nc" (starts in step 0, ends in step 1), "d", and a zero-width EOS.
    offsets = [(0, 2), (2, 5), (5, 6), (6, 6)]
    assert tokens_per_step(offsets, char_spans) == [(0, 2), (2, 4)]


def test_base64_arrays_decode_to_exactly_the_json_values(client: httpx.Client) -> None:
    item = {"prompt": "x", "completion": "2 5 9 and more", "mask": None}
    include = ["logprobs", "returns", "offsets"]
    masked = {"prompt_token_ids": [1], "completion_token_ids": [4, 5, 6], "mask": [1, 0, 1]}
    as_json = post(client, {"items": [item, masked], "include": include})["results"]
    as_b64 = post(client, {"items": [item, masked], "include": include, "encoding": "base64"})
    for plain, packed in zip(as_json, as_b64["results"], strict=True):
        assert decode_ints(packed["token_ids"]).tolist() == plain["token_ids"]
        for name in ("rewards", "sft_logprobs", "base_logprobs", "returns"):
            want = np.array([np.nan if v is None else v for v in plain[name]], dtype=np.float32)
            got = decode_floats(packed[name])
            assert got.tobytes() == want.tobytes(), name
        assert packed["total_reward"] == plain["total_reward"]
    offsets = decode_ints(as_b64["results"][0]["offsets"]).reshape(-1, 2)
    assert offsets.tolist() == as_json[0]["offsets"]


@pytest.mark.parametrize(
    ("item", "status", "code", "field"),
    [
        ({**PROMPT, "completions": []}, 422, "empty_group", "completions"),
        ({**PROMPT, "completions": ["1"] * 5}, 413, "group_too_large", "completions"),
        (
            {**PROMPT, "completions": ["1", ""]},
            422,
            "empty_completion",
            "completions[1].completion",
        ),
        (
            {**PROMPT, "completion": "1", "completions": ["1"]},
            422,
            "conflicting_fields",
            "completions",
        ),
        (
            {"prompt": "x", "completion_token_ids": [5, 6, 7], "step_spans": [[0, 2], [1, 3]]},
            422,
            "invalid_step_spans",
            "step_spans",
        ),
        (
            {"prompt": "x", "completion_token_ids": [5, 6, 7], "step_spans": [[0, 4]]},
            422,
            "invalid_step_spans",
            "step_spans",
        ),
        (
            {**PROMPT, "completions": [{"completion_token_ids": [5], "step_spans": [[1, 1]]}]},
            422,
            "invalid_step_spans",
            "completions[0].step_spans",
        ),
    ],
)
def test_bad_groups_and_spans_are_refused_with_the_index(
    client: httpx.Client, item: dict[str, Any], status: int, code: str, field: str
) -> None:
    good = {"prompt": "x", "completion": "1"}
    response = client.post(URL, json={"items": [good, item]})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["index"], error["field"]) == (code, 1, field)


def test_no_baseline_scores_log_pi_sft_alone(fake_server: Callable[..., Any]) -> None:
    with (
        fake_server(baseline="none", beta=0.5) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        data = post(http, {"items": [{"prompt_token_ids": [1], "completion_token_ids": [4, 5]}]})
        result = data["results"][0]
        assert data["model"]["base"] is None and result["base_logprobs"] is None
        want = np.float32(0.5) * np.float32(result["sft_logprobs"])
        assert np.array_equal(np.float32(result["rewards"]), want)
        assert [m["role"] for m in http.get("/v1/models").json()["data"]] == ["sft"]
