"""Reward guards served: extra baselines, floor, clip and aggregates over loopback HTTP, each
checked against a hand computation from the fake engines' known log-probs (masks, EOS, groups,
steps, base64 included)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from dense_reward_client import RewardClient
from dense_reward_client.encoding import decode_floats

from dense_reward_server.sequence import ScoreInput

URL = "/v1/token_rewards"
PROMPT_IDS = [5, 6, 7]
IDS = [40, 41, 42, 43, 44]


@pytest.fixture(scope="module")
def served(fake_server: Callable[..., Any], demo_dir: Any) -> Iterator[tuple[httpx.Client, Any]]:
    settings = {
        "extra_baselines": {"half": str(demo_dir / "sft-half")},
        "ref_logprob_floor": -1.0,  # a server default that requests may override or turn off
    }
    with (
        fake_server(**settings) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client, server.pair


def post(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(URL, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def logprobs(pair: Any, ids: list[int], prompt: list[int] = PROMPT_IDS) -> dict[str, np.ndarray]:
    item = ScoreInput(prompt, ids)
    return {name: engine.expected(item) for name, engine in pair.named().items()}


def item(ids: list[int] = IDS, **extra: Any) -> dict[str, Any]:
    return {"prompt_token_ids": PROMPT_IDS, "completion_token_ids": ids, **extra}


def test_models_list_every_baseline_and_the_answer_names_its_reward(
    served: tuple[httpx.Client, Any],
) -> None:
    client, _ = served
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["sft", "base", "half"]
    reward = post(client, {"items": [item()]})["model"]["reward"]
    assert reward == {
        "baselines": ["base"],
        "ref_logprob_floor": -1.0,
        "reward_clip_min": None,
        "reward_clip_max": None,
        "aggregate": "sum",
        "soft_min_temperature": 1.0,
    }


def test_pessimistic_reward_and_every_baselines_logprobs(
    served: tuple[httpx.Client, Any],
) -> None:
    client, pair = served
    lp = logprobs(pair, IDS)
    body = {
        "items": [item()],
        "baselines": ["base", "half"],
        "ref_logprob_floor": None,  # null turns the server's floor off
        "include": ["baselines", "logprobs"],
    }
    result = post(client, body)["results"][0]
    ref = np.maximum(lp["base"], lp["half"])
    assert result["ref_logprobs"] == ref.tolist()
    assert result["rewards"] == (lp["sft"] - ref).tolist()
    assert result["baseline_logprobs"] == {"base": lp["base"].tolist(), "half": lp["half"].tolist()}
    assert result["base_logprobs"] == lp["base"].tolist()
    # Compact arrays decode to the same values, the baselines' too.
    packed = post(client, {**body, "encoding": "base64"})["results"][0]
    assert decode_floats(packed["rewards"]).tolist() == result["rewards"]
    assert decode_floats(packed["ref_logprobs"]).tolist() == result["ref_logprobs"]
    for name, values in packed["baseline_logprobs"].items():
        assert decode_floats(values).tolist() == result["baseline_logprobs"][name]


def test_floor_and_clip_by_hand_and_the_server_default(served: tuple[httpx.Client, Any]) -> None:
    client, pair = served
    lp = logprobs(pair, IDS)
    floored = post(client, {"items": [item()], "beta": 2.0})["results"][0]  # server floor -1
    assert floored["rewards"] == (2.0 * (lp["sft"] - np.maximum(lp["base"], -1.0))).tolist()
    body = {
        "items": [item()],
        "baselines": ["half"],
        "ref_logprob_floor": -0.5,
        "reward_clip_min": -0.25,
        "reward_clip_max": 0.25,
    }
    clipped = post(client, body)["results"][0]
    want = np.clip(lp["sft"] - np.maximum(lp["half"], np.float32(-0.5)), -0.25, 0.25)
    assert clipped["rewards"] == want.astype(np.float32).tolist()
    assert clipped["total_reward"] == pytest.approx(float(np.sum(want)))


def soft_min(rewards: np.ndarray, temperature: float) -> float:
    weights = np.exp(-(rewards - rewards.min()) / temperature)
    return float(np.sum(weights / weights.sum() * rewards))


def test_aggregates_with_mask_eos_and_returns(served: tuple[httpx.Client, Any]) -> None:
    client, pair = served
    mask = [1, 0, 1, 1, 0]
    body = {
        "items": [item(mask=mask)],
        "append_eos": True,
        "ref_logprob_floor": None,
        "aggregate": "soft_min",
        "soft_min_temperature": 0.5,
        "include": ["returns"],
    }
    result = post(client, body)["results"][0]
    assert result["eos_appended"] and result["num_tokens"] == 6
    lp = logprobs(pair, [*IDS, result["token_ids"][-1]])
    rewards = (lp["sft"] - lp["base"]).astype(np.float64)
    scored = np.array([1, 0, 1, 1, 0, 1], bool)  # the appended EOS is scored
    want = soft_min(rewards[scored], 0.5)
    assert result["aggregate_reward"] == pytest.approx(want)
    assert result["returns"][0] == pytest.approx(want, rel=1e-6)
    assert result["returns"][1] is None and result["returns"][4] is None
    assert result["total_reward"] == pytest.approx(float(np.sum(rewards[scored])), rel=1e-6)
    minimum = post(client, {**body, "aggregate": "min"})["results"][0]
    assert minimum["aggregate_reward"] == pytest.approx(float(np.min(rewards[scored])))
    suffix = [float(np.min(rewards[t:][scored[t:]])) for t in range(6) if scored[t]]
    assert [r for r in minimum["returns"] if r is not None] == pytest.approx(suffix)


def test_group_scores_use_the_aggregate(served: tuple[httpx.Client, Any]) -> None:
    client, pair = served
    members = [IDS, IDS[:3], [44, 40, 41, 9]]
    body = {
        "items": [{"prompt_token_ids": PROMPT_IDS, "completions": members}],
        "baselines": ["base", "half"],
        "ref_logprob_floor": None,
        "aggregate": "mean",
        "group_baseline": "leave_one_out",
        "steps": {"delimiter": "\n"},
    }
    group = post(client, body)["results"][0]
    means = []
    for ids in members:
        lp = logprobs(pair, ids)
        means.append(float(np.mean(lp["sft"] - np.maximum(lp["base"], lp["half"]))))
    got = [c["aggregate_reward"] for c in group["completions"]]
    assert got == pytest.approx(means, rel=1e-6)
    others = [(sum(means) - m) / 2 for m in means]
    assert group["group"]["scores"] == pytest.approx(
        [m - o for m, o in zip(means, others, strict=True)], rel=1e-6
    )
    assert group["group"]["mean_total_reward"] == pytest.approx(np.mean(means), rel=1e-6)
    # Steps still sum the (guarded) token rewards.
    for completion in group["completions"]:
        steps = completion["steps"]
        assert sum(s["reward"] for s in steps) == pytest.approx(completion["total_reward"])


def test_null_turns_a_default_guard_off(fake_server: Callable[..., Any], demo_dir: Any) -> None:
    settings = {"aggregate": "min", "soft_min_temperature": 3.0, "reward_clip_max": 0.0}
    with (
        fake_server(**settings) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        defaults = post(client, {"items": [item()]})["model"]["reward"]
        assert (defaults["aggregate"], defaults["reward_clip_max"]) == ("min", 0.0)
        body = {"items": [item()], "aggregate": None, "reward_clip_max": None}
        body["soft_min_temperature"] = None
        answer = post(client, body)
    reward = answer["model"]["reward"]
    assert reward["aggregate"] == "sum" and reward["reward_clip_max"] is None
    assert reward["soft_min_temperature"] == 3.0
    result = answer["results"][0]
    assert result["aggregate_reward"] == result["total_reward"]


@pytest.mark.parametrize(
    ("extra", "code", "field"),
    [
        ({"baselines": ["nope"]}, "unknown_baseline", "baselines"),
        (
            {"reward_clip_min": 1.0, "reward_clip_max": 0.0},
            "invalid_reward_clip",
            "reward_clip_min",
        ),
        ({"aggregate": "min", "gamma": 0.9, "include": ["returns"]}, "gamma_with_min", "gamma"),
    ],
)
def test_bad_reward_fields_are_refused(
    served: tuple[httpx.Client, Any], extra: dict[str, Any], code: str, field: str
) -> None:
    client, _ = served
    response = client.post(URL, json={"items": [item()], **extra})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field)


@pytest.mark.parametrize(
    "extra",
    [
        {"ref_logprob_floor": 0.5},
        {"aggregate": "max"},
        {"soft_min_temperature": 0.0},
        {"baselines": []},
        {"reward_clip_max": "inf"},
    ],
)
def test_malformed_reward_fields_are_422(
    served: tuple[httpx.Client, Any], extra: dict[str, Any]
) -> None:
    client, _ = served
    response = client.post(URL, json={"items": [item()], **extra})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == next(iter(extra))


def test_the_client_decodes_every_baselines_arrays(served: tuple[httpx.Client, Any]) -> None:
    client, pair = served
    options = {"baselines": ["base", "half"], "include": ["baselines"], "encoding": "base64"}
    with RewardClient(str(client.base_url)) as rewards:
        (result,) = rewards.token_rewards([item()], **options)
    lp = logprobs(pair, IDS)
    assert isinstance(result["baseline_logprobs"]["half"], np.ndarray)
    np.testing.assert_array_equal(result["baseline_logprobs"]["half"], lp["half"])
    np.testing.assert_array_equal(
        result["ref_logprobs"], np.maximum(np.maximum(lp["base"], lp["half"]), np.float32(-1))
    )
