"""The verl reward manager against a live server, on verl's own DataProto, registry and
advantage estimators (the real `verl` package)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from dense_reward_client import InvalidRequestError, RewardClient
from dense_reward_client.adapters.verl import MANAGER_NAME, DenseRewardManager
from dense_reward_client.encoding import decode_floats, encode_floats
from transformers import AutoTokenizer
from verl import DataProto
from verl.trainer.config import AlgoConfig
from verl.trainer.ppo.core_algos import (
    compute_gae_advantage_return,
    compute_reinforce_plus_plus_outcome_advantage,
)
from verl.utils.import_utils import load_extern_object
from verl.workers.reward_manager import get_reward_manager_cls

from harness.paths import ROOT

PAD = 0


class Recorder(httpx.HTTPTransport):
    """A real HTTP transport that records each request (and may rewrite answers)."""

    def __init__(self, rewrite: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__()
        self.requests: list[tuple[str, str, Any]] = []
        self.rewrite = rewrite

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, body))
        response = super().handle_request(request)
        if self.rewrite is None or request.method != "POST":
            return response
        answer = json.loads(response.read())
        self.rewrite(answer)
        return httpx.Response(response.status_code, json=answer)

    def posts(self) -> list[Any]:
        return [body for method, path, body in self.requests if path == "/v1/token_rewards"]


@pytest.fixture(scope="module")
def tokenizer(demo_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(demo_dir / "sft"))


def chat_ids(tokenizer: Any, text: str) -> list[int]:
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )
    return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])


def text_ids(tokenizer: Any, text: str, eos: bool = True) -> list[int]:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return [*ids, tokenizer.eos_token_id] if eos else ids


def rollout_batch(
    rows: list[tuple[list[int], list[int]]], extra_width: int = 3, tool_mask: bool = False
) -> DataProto:
    """verl's rollout layout: prompts left-padded, responses right-padded, attention_mask over
    both, response_mask (policy tokens; with `tool_mask`, row 0's 2nd-3rd tokens are tool
    output)."""
    width = max(len(p) for p, _ in rows)
    length = max(len(r) for _, r in rows) + extra_width
    prompts = torch.full((len(rows), width), PAD)
    responses = torch.full((len(rows), length), PAD)
    attention = torch.zeros((len(rows), width + length), dtype=torch.int64)
    for i, (prompt, response) in enumerate(rows):
        prompts[i, width - len(prompt) :] = torch.tensor(prompt)
        responses[i, : len(response)] = torch.tensor(response)
        attention[i, width - len(prompt) : width + len(response)] = 1
    response_mask = attention[:, width:].clone()
    if tool_mask:
        response_mask[0, 1:3] = 0
    return DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": responses,
            "input_ids": torch.cat([prompts, responses], dim=1),
            "attention_mask": attention,
            "response_mask": response_mask,
        },
        non_tensors={"data_source": np.array(["demo"] * len(rows), dtype=object)},
    )


@pytest.fixture(scope="module")
def rows(tokenizer: Any) -> list[tuple[list[int], list[int]]]:
    """Three samples of one prompt (a GRPO group, not all adjacent) and one of a shorter prompt
    whose response was cut at the length limit (no EOS)."""
    sort = chat_ids(tokenizer, "Sort ascending: 42 7 19 3")
    short = chat_ids(tokenizer, "Sort: 2 1")
    return [
        (sort, text_ids(tokenizer, "3 7 19 42")),
        (sort, text_ids(tokenizer, "42 19 7 3")),
        (short, text_ids(tokenizer, "1 2 3 4 5 6", eos=False)),
        (sort, text_ids(tokenizer, "3")),
    ]


def direct(demo_url: str, rows: list[tuple[list[int], list[int]]], **item: Any) -> list[np.ndarray]:
    """The same ids scored one item each, straight through the client."""
    items = [{"prompt_token_ids": p, "completion_token_ids": r, **item} for p, r in rows]
    results = RewardClient(demo_url).token_rewards(items, append_eos=False)
    return [np.array([0.0 if v is None else v for v in r["rewards"]]) for r in results]


def test_registered_in_verls_registry_and_built_like_verl_builds_managers(
    demo_url: str, tokenizer: Any
) -> None:
    assert get_reward_manager_cls(MANAGER_NAME) is DenseRewardManager
    # verl loads `custom_reward_function.path` by file path: a second run of the module in
    # this process keeps the registration instead of failing on a duplicate name.
    load_extern_object(
        str(ROOT / "client" / "dense_reward_client" / "adapters" / "verl.py"), "compute_score"
    )
    assert get_reward_manager_cls(MANAGER_NAME) is DenseRewardManager
    # The keywords verl's loader passes, then `reward_model.reward_kwargs`.
    manager = get_reward_manager_cls(MANAGER_NAME)(
        tokenizer=tokenizer,
        num_examine=0,
        compute_score=None,
        reward_fn_key="data_source",
        url=demo_url,
    )
    assert isinstance(manager, DenseRewardManager) and manager.client.base_url == demo_url


def test_token_level_scores_are_the_servers_rewards_in_one_request(
    demo_url: str, tokenizer: Any, rows: list[tuple[list[int], list[int]]]
) -> None:
    transport = Recorder()
    manager = DenseRewardManager(tokenizer, client=RewardClient(demo_url, transport=transport))
    data = rollout_batch(rows)
    output = manager(data, return_dict=True)
    assert isinstance(output, dict)
    scores = output["reward_tensor"]
    assert scores.dtype == torch.float32 and scores.shape == data.batch["responses"].shape

    posts = transport.posts()
    assert len(posts) == 1  # the whole batch in one request
    assert [method for method, _, _ in transport.requests].count("GET") == 1  # /v1/models, once
    body = posts[0]
    assert body["append_eos"] is False
    # The three samples of the shared prompt went as one group, the other as a single item.
    assert [len(item.get("completions", [None])) for item in body["items"]] == [3, 1]
    assert body["items"][0]["prompt_token_ids"] == rows[0][0]  # left padding stripped

    expected = direct(demo_url, rows)
    for i, values in enumerate(expected):
        length = len(rows[i][1])
        np.testing.assert_allclose(scores[i, :length].numpy(), values, atol=1e-5)
        assert torch.all(scores[i, length:] == 0)  # padding
    info = output["reward_extra_info"]
    assert info["dense_total_reward"] == pytest.approx([float(v.sum()) for v in expected], abs=1e-4)
    assert info["dense_scored_tokens"] == [len(r) for _, r in rows]
    assert len(set(info["dense_total_reward"])) == len(rows)

    # Without return_dict: the tensor alone; each further batch is one more request.
    again = manager(data)
    assert isinstance(again, torch.Tensor) and torch.equal(again, scores)
    assert len(transport.posts()) == 2
    assert [method for method, _, _ in transport.requests].count("GET") == 1


def test_tool_tokens_of_multi_turn_rows_get_no_reward(
    demo_url: str, rows: list[tuple[list[int], list[int]]]
) -> None:
    transport = Recorder()
    manager = DenseRewardManager(client=RewardClient(demo_url, transport=transport))
    scores = manager(rollout_batch(rows, tool_mask=True))
    assert isinstance(scores, torch.Tensor)
    group = transport.posts()[0]["items"][0]["completions"]
    assert group[0]["mask"] == [1, 0, 0] + [1] * (len(rows[0][1]) - 3)
    assert "mask" not in group[1]
    assert torch.all(scores[0, 1:3] == 0)
    masked = [1, 0, 0] + [1] * (len(rows[0][1]) - 3)
    np.testing.assert_allclose(
        scores[0, : len(rows[0][1])].numpy(), direct(demo_url, rows[:1], mask=masked)[0], atol=1e-5
    )


def test_the_client_splits_big_batches_and_rows_stay_aligned(
    demo_url: str, rows: list[tuple[list[int], list[int]]]
) -> None:
    data = rollout_batch(rows)
    whole = DenseRewardManager(client=RewardClient(demo_url))(data)
    transport = Recorder()
    small = RewardClient(demo_url, transport=transport, max_items_per_request=2)
    split = DenseRewardManager(client=small)(data)
    assert len(transport.posts()) == 2  # the group of 3, then the single item
    assert isinstance(whole, torch.Tensor) and isinstance(split, torch.Tensor)
    torch.testing.assert_close(split, whole, atol=1e-5, rtol=0)


def test_dense_scores_give_per_token_advantages_in_verls_estimators(
    demo_url: str, rows: list[tuple[list[int], list[int]]]
) -> None:
    data = rollout_batch(rows)
    output = DenseRewardManager(client=RewardClient(demo_url))(data, return_dict=True)
    assert isinstance(output, dict)
    # What verl's trainer does with a reward manager's answer (no KL in the reward).
    data.batch["token_level_scores"] = output["reward_tensor"]
    data.batch["token_level_rewards"] = data.batch["token_level_scores"]
    rewards, mask = data.batch["token_level_rewards"], data.batch["response_mask"].float()
    # Reward-to-go over each row's own tokens (gamma = 1).
    to_go = torch.flip(torch.cumsum(torch.flip(rewards, [1]), 1), [1]) * mask

    advantages, returns = compute_reinforce_plus_plus_outcome_advantage(
        rewards, mask, config=AlgoConfig(gamma=1.0)
    )
    torch.testing.assert_close(returns, to_go, atol=1e-5, rtol=0)
    length = len(rows[0][1])
    assert advantages[0, :length].unique().numel() == length  # a different credit per token
    assert torch.all(advantages[mask == 0] == 0)

    values = torch.zeros_like(rewards)
    advantages, returns = compute_gae_advantage_return(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(returns, to_go, atol=1e-5, rtol=0)
    assert advantages[0, :length].unique().numel() == length


def test_mismatched_answers_and_bad_input_raise(
    demo_url: str, demo_dir: Path, tmp_path: Path, rows: list[tuple[list[int], list[int]]]
) -> None:
    def drop_a_reward(answer: dict[str, Any]) -> None:
        single = answer["results"][1]
        single["rewards"] = encode_floats(decode_floats(single["rewards"])[:-1])

    manager = DenseRewardManager(client=RewardClient(demo_url, transport=Recorder(drop_a_reward)))
    n = len(rows[2][1])  # results[1] is row 2's: the group of rows 0, 1, 3 comes first
    with pytest.raises(ValueError, match=f"row 2: the server returned {n - 1} rewards for {n} "):
        manager(rollout_batch(rows))

    # Left-padded responses: refused before any request.
    data = rollout_batch(rows)
    data.batch["attention_mask"][0, -1] = 1
    transport = Recorder()
    with pytest.raises(ValueError, match="row 0: response is not right-padded"):
        DenseRewardManager(client=RewardClient(demo_url, transport=transport))(data)
    assert transport.posts() == []

    # A token id outside the vocabulary: the server's error, with the item.
    bad = [(rows[0][0], [*rows[0][1][:-1], 10**6])]
    with pytest.raises(InvalidRequestError):
        DenseRewardManager(client=RewardClient(demo_url))(rollout_batch(bad))

    # A policy with another tokenizer: its ids are other tokens.
    from harness.models import swapped_tokens_copy

    swapped_tokens_copy(demo_dir / "sft", tmp_path / "other")
    other = AutoTokenizer.from_pretrained(str(tmp_path / "other"))
    with pytest.raises(ValueError, match="not the reward server's"):
        DenseRewardManager(other, url=demo_url)(rollout_batch(rows))


def test_sequence_level_users_need_no_verl() -> None:
    """Without verl the module still imports (compute_score); the manager is just unregistered."""
    script = """
import importlib.abc, sys
class NoVerl(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "verl":
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, NoVerl())
import dense_reward_client.adapters.verl as adapter
assert adapter.REWARD_MANAGER_REGISTRY is None and callable(adapter.compute_score)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_verl_0_9_trainer_route_puts_dense_rewards_in_token_level_scores(
    demo_url: str,
    demo_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    rows: list[tuple[list[int], list[int]]],
) -> None:
    """verl >= 0.7.1: the agent-loop manager verl loads by name writes `rm_scores`, which verl's
    own `extract_reward` hands to the trainer as `token_level_scores`, per token."""
    from dense_reward_client.adapters.verl import with_dense_rewards
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop import AgentLoopManager
    from verl.trainer.ppo.reward import extract_reward
    from verl.utils.import_utils import load_class_from_fqn

    data = rollout_batch(rows)
    batch = with_dense_rewards(data, DenseRewardManager(client=RewardClient(demo_url)))
    reward_tensor, extra = extract_reward(batch)
    for i, expected in enumerate(direct(demo_url, rows)):
        np.testing.assert_allclose(reward_tensor[i, : len(expected)].numpy(), expected, atol=1e-5)
        assert torch.all(reward_tensor[i, len(expected) :] == 0)
    assert set(extra) == {"dense_total_reward", "dense_scored_tokens"}

    # Built the way verl's trainer builds it (class by name, then its constructor's arguments):
    # the per-sample reward loop is off even when verl hands it workers.
    cls = load_class_from_fqn(
        "dense_reward_client.adapters.verl.DenseRewardAgentLoopManager", "AgentLoopManager"
    )
    assert issubclass(cls, AgentLoopManager)
    monkeypatch.setenv("DRS_REWARD_URL", demo_url)
    model = {"_target_": "verl.workers.config.HFModelConfig", "path": str(demo_dir / "sft")}
    config = OmegaConf.create({"actor_rollout_ref": {"rollout": {}, "model": model}})
    manager = cls(config, llm_client=None, reward_loop_worker_handles=["a reward worker"])
    assert manager.reward_loop_worker_handles is None
    assert manager.dense.client.base_url == demo_url
    manager.dense._check_server()  # the workers' tokenizer is the server's


def test_a_pad_token_verl_added_does_not_fail_the_tokenizer_check(tokenizer: Any) -> None:
    """verl's hf_tokenizer sets pad = EOS where a tokenizer has none (Llama 3); the server
    loads it without. The manager accepts both fingerprints, and only then."""
    import copy

    from dense_reward_client.fingerprint import tokenizer_fingerprint

    bare = copy.deepcopy(tokenizer)
    bare.pad_token = None
    padded = copy.deepcopy(bare)
    padded.pad_token = padded.eos_token
    manager = DenseRewardManager(padded, client=RewardClient("http://127.0.0.1:9"))
    assert manager.fingerprints == {tokenizer_fingerprint(padded), tokenizer_fingerprint(bare)}
    assert len(DenseRewardManager(tokenizer, client=manager.client).fingerprints) == 1
