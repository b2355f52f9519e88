"""The Python client against real servers over loopback (fake engines: the contract tier)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from dense_reward_client import (
    AsyncRewardClient,
    AuthenticationError,
    InvalidRequestError,
    PayloadTooLargeError,
    RewardClient,
)


def items(count: int) -> list[dict[str, Any]]:
    return [
        {"prompt_token_ids": [1, 2 + i], "completion_token_ids": [10 + i, 20 + i, 30]}
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def url(fake_server: Callable[..., Any]) -> Iterator[str]:
    settings = {"max_items_per_request": 4, "max_tokens_per_request": 40, "max_group_size": 8}
    with fake_server(api_keys=["k1"], **settings) as server:
        yield server.url


def test_large_batches_are_split_and_reassembled_in_order(url: str) -> None:
    with RewardClient(url, api_key="k1") as client:
        batch = items(10)
        results = client.token_rewards(batch)
        assert [r["token_ids"] for r in results] == [i["completion_token_ids"] for i in batch]
        one_by_one = [client.token_rewards([item])[0] for item in batch]
        assert [r["rewards"] for r in results] == [r["rewards"] for r in one_by_one]


def test_too_many_tokens_halves_the_request(url: str) -> None:
    # 4 items x 5 tokens = 20 fit; 4 items x 12 tokens = 48 > 40: the client halves.
    long = [{"prompt_token_ids": [1] * 4, "completion_token_ids": [7 + i] * 8} for i in range(4)]
    with RewardClient(url, api_key="k1") as client:
        results = client.token_rewards(long)
        assert [r["token_ids"][0] for r in results] == [7, 8, 9, 10]
        with pytest.raises(PayloadTooLargeError) as caught:
            client.token_rewards([{"prompt_token_ids": [1] * 30, "completion_token_ids": [5] * 30}])
        assert caught.value.code == "too_many_tokens"


def test_errors_carry_code_and_the_index_in_your_list(url: str) -> None:
    batch: list[dict[str, Any]] = items(10)
    batch[6] = {"prompt": "x", "completion": ""}
    with RewardClient(url, api_key="k1") as client, pytest.raises(InvalidRequestError) as caught:
        client.token_rewards(batch)
    assert (caught.value.code, caught.value.index, caught.value.status) == (
        "empty_completion",
        6,
        422,
    )
    with RewardClient(url, api_key="wrong") as client, pytest.raises(AuthenticationError):
        client.token_rewards(items(1))


def test_groups_count_their_completions_and_base64_decodes(url: str) -> None:
    group = {"prompt_token_ids": [1, 2], "completions": [[5, 6], [7, 8], [9]]}
    with RewardClient(url, api_key="k1") as client:
        plain = client.token_rewards([group, group, *items(2)], include=["logprobs"])
        packed = client.token_rewards(
            [group, group, *items(2)], include=["logprobs"], encoding="base64"
        )
    assert len(plain) == 4 and len(plain[0]["completions"]) == 3
    member = packed[1]["completions"][2]
    assert isinstance(member["rewards"], np.ndarray) and member["rewards"].dtype == np.float32
    assert member["rewards"].tolist() == np.float32(plain[1]["completions"][2]["rewards"]).tolist()
    assert packed[3]["token_ids"].tolist() == plain[3]["token_ids"]


def test_async_client_retries_429_honouring_retry_after(
    fake_server: Callable[..., Any],
) -> None:
    with fake_server(delay_s=0.6, max_inflight_tokens=10) as server:

        async def run() -> list[list[dict[str, Any]]]:
            async with AsyncRewardClient(server.url, backoff_s=0.05) as client:
                return list(
                    await asyncio.gather(*(client.token_rewards(items(1)) for _ in range(3)))
                )

        before = rejections(server.url)
        answers = asyncio.run(run())
        assert rejections(server.url) > before  # some attempt really was refused with 429
    assert all(len(answer) == 1 and answer[0]["num_tokens"] == 3 for answer in answers)


def rejections(url: str) -> float:
    import httpx

    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith('drs_rejections_total{reason="inflight_tokens_limit"}'):
            return float(line.split()[-1])
    return 0.0
