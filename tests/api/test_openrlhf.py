"""OpenRLHF's remote reward protocol (POST /get_reward) over loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest


@pytest.fixture(scope="module")
def client(fake_server: Callable[..., Any]) -> Iterator[httpx.Client]:
    with (
        fake_server(api_keys=["k"]) as server,
        httpx.Client(base_url=server.url, headers={"authorization": "Bearer k"}) as http,
    ):
        yield http


def test_rewards_are_the_total_dense_reward_of_each_response(client: httpx.Client) -> None:
    prompts = [
        "Sort ascending: 3 1 2\n",
        "<s><|user|>\nSort ascending: 5 4<|end|>\n<|assistant|>\n",
    ]
    responses = ["1 2 3", "4 5</s>"]
    body = {
        "query": [p + r for p, r in zip(prompts, responses, strict=True)],
        "prompts": prompts,
        "labels": [None, None],
    }
    answer = client.post("/get_reward", json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    tokenizer_free = client.post(
        "/v1/token_rewards",
        json={"items": [{"prompt": prompts[0], "completion": responses[0]}]},
    ).json()["results"][0]
    assert data["rewards"][0] == pytest.approx(tokenizer_free["total_reward"])
    assert data["scores"] == data["rewards"]
    assert len(data["extra_logs"]["completion_tokens"]) == 2
    mean = client.post("/get_reward?reward=mean", json=body).json()
    assert mean["rewards"][0] == pytest.approx(tokenizer_free["mean_reward"])


def test_prompt_with_bos_text_is_not_given_a_second_bos(client: httpx.Client) -> None:
    # The chat template's own rendering of this prompt, BOS text included.
    prompt = "<s><|user|>\nhi<|end|>\n<|assistant|>\n"
    answer = client.post("/get_reward", json={"query": [prompt + "5"], "prompts": [prompt]})
    chat = {"messages": [{"role": "user", "content": "hi"}], "completion": "5"}
    same = client.post("/v1/token_rewards", json={"items": [chat]}).json()["results"][0]
    assert answer.json()["rewards"][0] == pytest.approx(same["total_reward"])


@pytest.mark.parametrize(
    ("body", "index", "field"),
    [
        ({"query": ["abc"], "prompts": ["xyz"]}, 0, "query"),
        ({"query": ["abc", "abd"], "prompts": ["ab"]}, None, "prompts"),
    ],
)
def test_bad_bodies_are_422(client: httpx.Client, body: Any, index: int | None, field: str) -> None:
    answer = client.post("/get_reward", json=body)
    assert answer.status_code == 422
    assert (answer.json()["error"]["index"], answer.json()["error"]["field"]) == (index, field)


def test_same_authentication_as_the_main_route(client: httpx.Client) -> None:
    answer = httpx.post(
        str(client.base_url) + "/get_reward", json={"query": ["a"], "prompts": ["a"]}
    )
    assert answer.status_code == 401
