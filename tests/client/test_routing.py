"""The routing key: equal prompts give equal keys (whatever form they come in), and the client
sends it with every scoring request."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
from dense_reward_client import PROMPT_KEY_HEADER, RewardClient, prompt_key


def test_equal_prompts_give_equal_keys_whatever_their_form() -> None:
    ids = [1, 17, 29, 4]
    one_sample = [{"prompt_token_ids": ids, "completion_token_ids": [5, 6]}]
    as_array = [{"prompt_token_ids": np.array(ids), "completion_token_ids": [7]}]
    as_group = [{"prompt_token_ids": tuple(ids), "completions": [[5, 6], [7]]}]
    keys = {prompt_key(one_sample), prompt_key(as_array), prompt_key(as_group)}
    assert len(keys) == 1
    key = keys.pop()
    assert key is not None and len(key) == 16 and int(key, 16) >= 0


def test_different_prompts_and_fields_give_different_keys() -> None:
    keys = [
        prompt_key([{"prompt_token_ids": [1, 2, 3]}]),
        prompt_key([{"prompt_token_ids": [1, 2, 4]}]),
        prompt_key([{"prompt": "1 2 3"}]),
        prompt_key([{"prompt": "1 2 4"}]),
        prompt_key([{"messages": [{"role": "user", "content": "1 2 3"}]}]),
    ]
    assert len(set(keys)) == len(keys)
    # The first item stands for the request; nothing to name, no key.
    assert prompt_key([{"prompt": "a"}, {"prompt": "b"}]) == prompt_key([{"prompt": "a"}])
    assert prompt_key([]) is None
    assert prompt_key([{"completion": "x"}]) is None


def test_the_client_sends_the_key_with_each_request() -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get(PROMPT_KEY_HEADER))
        count = len(json.loads(request.content)["items"])
        results: list[dict[str, Any]] = [{"rewards": [0.0]}] * count
        return httpx.Response(200, json={"results": results})

    items = [{"prompt_token_ids": [1, 2], "completion_token_ids": [3]}]
    transport = httpx.MockTransport(answer)
    with RewardClient("http://drs", max_items_per_request=8, transport=transport) as client:
        client.token_rewards(items)
        client.token_rewards([{"prompt": "hello", "completion": " world"}])
    assert seen == [prompt_key(items), prompt_key([{"prompt": "hello"}])]
