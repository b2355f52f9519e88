"""verl adapter: a sequence-level custom reward function (`compute_score`), and a batch reward
manager (`DenseRewardManager`, registered as "dense_reward") that writes the server's per-token
rewards into verl's `[batch, response_length]` reward tensor.

Sequence level, with any verl reward manager (verl 0.9's `main_ppo` reads these keys under
`reward:`, `reward.custom_reward_function.path`; releases up to 0.8 read them at the top level):

    custom_reward_function:
      path: /path/to/client/dense_reward_client/adapters/verl.py
      name: compute_score

`compute_score(data_source, solution_str, ground_truth, extra_info)` returns one score per
response (the total dense reward), which verl places on the response's last valid token. It
re-tokenizes the decoded text; the dense rewards come back too (`dense_rewards`, a JSON list,
kept by verl in `reward_extra_info`).

Token level: `DenseRewardManager` implements verl's batch reward-manager contract
(`verl.workers.reward_manager.AbstractRewardManager`: `manager(data, return_dict=True)` ->
`{"reward_tensor", "reward_extra_info"}`, and the trainer sets `token_level_scores =
reward_tensor`). It scores the batch's own prompt and response token ids, not decoded text,
in one `token_rewards` call (the client splits it to the server's limits), and puts row i's
rewards on its L_i valid response tokens, 0 on padding, so per-token advantage estimators
(GAE, REINFORCE++) see per-token credit. Importing this module registers it when verl is
installed (so does verl loading this file as `custom_reward_function`, which it does before it
looks the manager up); without verl, `compute_score` still works. verl's PPO trainer calls
batch managers up to 0.6.x (and 0.7.0 with `reward_model.use_reward_loop=False`). From 0.7.1
(0.9.1 included) it scores each sample alone in its reward loop and keeps one float per
response; there `DenseRewardAgentLoopManager` (selected with
`actor_rollout_ref.rollout.agent.agent_loop_manager_class`) turns that loop off and writes the
batch's dense rewards as the rollout's `rm_scores`, which the trainer takes as
`token_level_scores`.

Server address and key: the manager's `url` / `api_key` arguments (verl passes
`reward_model.reward_kwargs` to a manager), else env `DRS_REWARD_URL` (default
http://127.0.0.1:8000) and `DRS_REWARD_API_KEY`. For `compute_score` the prompt, when verl
passes it in `extra_info["prompt"]` (text or chat messages), is the scoring context; otherwise
a single space.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dense_reward_client import RewardClient
from dense_reward_client.fingerprint import tokenizer_fingerprint

# verl is optional: `compute_score` needs only the HTTP client, and verl (ray, tensordict) is a
# heavy install that sequence-level users need not have. The manager is registered only with it.
try:
    from verl.experimental.agent_loop import AgentLoopManager
    from verl.workers.reward_manager import register
    from verl.workers.reward_manager.abstract import AbstractRewardManager
    from verl.workers.reward_manager.registry import REWARD_MANAGER_REGISTRY
except ImportError:
    AbstractRewardManager = object  # type: ignore[misc,assignment]
    AgentLoopManager = None  # type: ignore[misc,assignment]
    REWARD_MANAGER_REGISTRY = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from verl import DataProto

MANAGER_NAME = "dense_reward"


def new_client(url: str | None = None, api_key: str | None = None) -> RewardClient:
    """A client of the given server, else the one in env DRS_REWARD_URL / DRS_REWARD_API_KEY."""
    return RewardClient(
        url or os.environ.get("DRS_REWARD_URL", "http://127.0.0.1:8000"),
        api_key or os.environ.get("DRS_REWARD_API_KEY"),
    )


@cache
def client() -> RewardClient:
    return new_client()


def compute_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None = None
) -> dict[str, Any]:
    """verl's custom reward function: `score` = total dense reward of the response."""
    prompt = (extra_info or {}).get("prompt") or " "
    item: dict[str, Any] = (
        {"prompt": prompt} if isinstance(prompt, str) else {"messages": list(prompt)}
    )
    item["completion"] = solution_str or " "
    result = client().token_rewards([item], append_eos=False)[0]
    return {
        "score": float(result["total_reward"]),
        "mean_reward": result["mean_reward"],
        # A JSON string, not a list: verl stacks every extra key across rows with np.array,
        # which refuses lists of different lengths.
        "dense_rewards": json.dumps([0.0 if v is None else float(v) for v in result["rewards"]]),
    }


def token_level_tensor(
    dense_rewards: Sequence[Sequence[float] | np.ndarray],
    valid_lengths: Sequence[int],
    response_length: int,
) -> np.ndarray:
    """verl's `[batch, response_length]` token-level reward layout from per-token rewards.

    Each row gets its rewards over its first `valid_lengths[i]` positions and 0 after (padding).
    """
    tensor = np.zeros((len(dense_rewards), response_length), dtype=np.float32)
    for i, (values, length) in enumerate(zip(dense_rewards, valid_lengths, strict=True)):
        if len(values) < length:
            raise ValueError(f"row {i}: {len(values)} rewards for {length} response tokens")
        tensor[i, :length] = np.asarray(values[:length], dtype=np.float32)
    return tensor


def valid_ids(data: DataProto) -> tuple[list[list[int]], list[list[int]], list[list[int] | None]]:
    """Each row's prompt ids (left padding dropped), response ids (right padding dropped) and,
    for multi-turn rows whose `response_mask` marks tool output (0), that mask.

    The layout verl's own managers assume: `attention_mask` = [prompt part | response part].
    """
    prompts, responses = data.batch["prompts"], data.batch["responses"]
    attention = data.batch["attention_mask"].bool()
    width = prompts.shape[1]
    if attention.shape[1] != width + responses.shape[1]:
        raise ValueError(
            f"attention_mask has {attention.shape[1]} columns, not prompts {width} + "
            f"responses {responses.shape[1]}"
        )
    policy = data.batch["response_mask"].bool() if "response_mask" in data.batch else None
    prompt_ids, response_ids, masks = [], [], []
    for i in range(len(data)):
        valid = attention[i, width:]
        length = int(valid.sum())
        if not valid[:length].all():  # [:L] below would take padding and drop real tokens
            raise ValueError(f"row {i}: response is not right-padded (attention {valid.tolist()})")
        prompt_ids.append(prompts[i][attention[i, :width]].tolist())
        response_ids.append(responses[i, :length].tolist())
        mask = None if policy is None else policy[i, :length]
        masks.append(None if mask is None or mask.all() else mask.int().tolist())
    return prompt_ids, response_ids, masks


class DenseRewardManager(AbstractRewardManager):
    """verl batch reward manager: the server's per-token rewards as verl's reward tensor.

    The constructor takes what verl's loader passes (`tokenizer`, `num_examine`,
    `compute_score`, `reward_fn_key`, then `reward_model.reward_kwargs`); rewards come from the
    server only, so `compute_score` and the rest are accepted and unused.
    """

    def __init__(
        self,
        tokenizer: Any = None,
        num_examine: int = 0,
        compute_score: Any = None,
        reward_fn_key: str = "data_source",
        *,
        url: str | None = None,
        api_key: str | None = None,
        client: RewardClient | None = None,
        **_: Any,
    ) -> None:
        self.client = client or new_client(url, api_key)
        # Token ids only mean the same tokens under the server's tokenizer: checked once.
        self.fingerprints = set() if tokenizer is None else {tokenizer_fingerprint(tokenizer)}
        if tokenizer is not None and tokenizer.pad_token in (None, tokenizer.eos_token):
            # verl's hf_tokenizer makes EOS the pad token of a tokenizer that has none (Llama 3):
            # no id changes, so the server's tokenizer without a pad token matches too.
            bare = copy.deepcopy(tokenizer)
            bare.pad_token = None
            self.fingerprints.add(tokenizer_fingerprint(bare))
        self.max_group_size: int | None = None

    def _check_server(self) -> None:
        """One GET /v1/models per manager: the tokenizer check and the server's limits (so the
        client does not ask again, and no group exceeds `max_group_size`)."""
        models = self.client.models()
        if self.fingerprints and models["tokenizer_fingerprint"] not in self.fingerprints:
            raise ValueError(
                f"the policy's tokenizer ({min(self.fingerprints)}) is not the reward server's "
                f"({models['tokenizer_fingerprint']}): token-level rewards would not line up"
            )
        limits = models["limits"]
        self.max_group_size = int(limits["max_group_size"])
        if self.client.max_items is None:
            self.client.max_items = int(limits["max_items_per_request"])

    def dense_rewards(self, data: DataProto) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
        """Each row's per-token rewards over its valid response tokens (masked -> 0), and the
        server's result for the row."""
        if self.max_group_size is None:
            self._check_server()
        assert self.max_group_size is not None
        prompt_ids, response_ids, masks = valid_ids(data)
        # Rows with the same prompt (GRPO's n samples) go as one group item: the server
        # computes the shared prompt once. An empty response has no token to reward.
        groups: dict[tuple[int, ...], list[list[int]]] = {}
        for i, ids in enumerate(response_ids):
            if ids:
                runs = groups.setdefault(tuple(prompt_ids[i]), [[]])
                if len(runs[-1]) == self.max_group_size:
                    runs.append([])
                runs[-1].append(i)
        items: list[dict[str, Any]] = []
        rows: list[list[int]] = []
        for prompt, runs in groups.items():
            for members in runs:
                completions: list[dict[str, Any]] = []
                for i in members:
                    mask = {} if masks[i] is None else {"mask": masks[i]}
                    completions.append({"completion_token_ids": response_ids[i], **mask})
                if len(members) == 1:
                    items.append({"prompt_token_ids": list(prompt), **completions[0]})
                else:
                    items.append({"prompt_token_ids": list(prompt), "completions": completions})
                rows.append(members)
        # append_eos=False: the ids are exactly what the policy sampled, with its EOS when it
        # stopped on one; a response cut at the length limit has none and must not gain one
        # (nor one reward more than it has tokens).
        answers = self.client.token_rewards(items, append_eos=False, include=[], encoding="base64")
        rewards = [np.zeros(0, dtype=np.float32) for _ in response_ids]
        results: list[dict[str, Any]] = [
            {"total_reward": 0.0, "scored_tokens": 0} for _ in response_ids
        ]
        for members, answer in zip(rows, answers, strict=True):
            for i, result in zip(members, answer.get("completions", [answer]), strict=True):
                values = np.nan_to_num(np.asarray(result["rewards"], dtype=np.float32), nan=0.0)
                if len(values) != len(response_ids[i]):
                    raise ValueError(
                        f"row {i}: the server returned {len(values)} rewards for "
                        f"{len(response_ids[i])} response tokens"
                    )
                rewards[i], results[i] = values, result
        return rewards, results

    def __call__(self, data: DataProto, return_dict: bool = False) -> torch.Tensor | dict[str, Any]:
        responses = data.batch["responses"]
        rewards, results = self.dense_rewards(data)
        table = token_level_tensor(rewards, [len(r) for r in rewards], responses.shape[1])
        reward_tensor = torch.from_numpy(table).to(responses.device)
        if not return_dict:
            return reward_tensor
        # One value per row (verl stores each key in non_tensor_batch and logs it).
        extra = {
            "dense_total_reward": [float(r["total_reward"]) for r in results],
            "dense_scored_tokens": [int(r["scored_tokens"]) for r in results],
        }
        return {"reward_tensor": reward_tensor, "reward_extra_info": extra}


def with_dense_rewards(batch: DataProto, manager: DenseRewardManager) -> DataProto:
    """`batch` with `rm_scores` set to the server's per-token rewards, plus their extra info.

    verl >= 0.7.1's trainer takes `token_level_scores` from a rollout's `rm_scores`
    (`verl.trainer.ppo.reward.extract_reward`), and logs the `reward_extra_keys` it names.
    """
    result = manager(batch, return_dict=True)
    assert isinstance(result, dict)
    batch.batch["rm_scores"] = result["reward_tensor"]
    for key, values in result["reward_extra_info"].items():
        batch.non_tensor_batch[key] = np.asarray(values)
    batch.meta_info["reward_extra_keys"] = list(result["reward_extra_info"])
    return batch


if AgentLoopManager is not None:

    class DenseRewardAgentLoopManager(AgentLoopManager):  # type: ignore[misc,valid-type]
        """verl >= 0.7.1 (0.9.1 included): rollouts as usual, then the dense rewards of the
        whole batch in one request, as `rm_scores` (so `token_level_scores`) per token.

        verl's own reward loop scores each sample alone and keeps one float per response; this
        manager switches it off (no reward-loop workers) and scores the batch itself. Select it
        with `actor_rollout_ref.rollout.agent.agent_loop_manager_class=
        dense_reward_client.adapters.verl.DenseRewardAgentLoopManager`; server from
        `DRS_REWARD_URL` / `DRS_REWARD_API_KEY`. The dense rewards are then the only reward: a
        configured `custom_reward_function` or verifier is not called, and verl's validation score
        is the total dense reward, not a task accuracy.
        """

        def __init__(
            self,
            config: Any,
            llm_client: Any,
            teacher_client: Any = None,
            reward_loop_worker_handles: Any = None,
        ) -> None:
            # verl's annotation says a list; None (its default) is what turns the loop off.
            super().__init__(config, llm_client, teacher_client, None)  # type: ignore[arg-type]
            from verl.utils.config import omega_conf_to_dataclass

            # The rollout workers' own tokenizer (local copy, tokenizer_path, remote code).
            model = omega_conf_to_dataclass(config.actor_rollout_ref.model)
            self.dense = DenseRewardManager(model.tokenizer)

        def generate_sequences(self, prompts: DataProto) -> DataProto:
            output = AgentLoopManager.generate_sequences(self, prompts)  # verl's auto_await runs it
            return with_dense_rewards(output, self.dense)


if REWARD_MANAGER_REGISTRY is not None:
    # verl may run this file twice in one process (imported as
    # `dense_reward_client.adapters.verl`, and loaded by path for `custom_reward_function`): keep
    # the first class, not verl's error.
    registered = REWARD_MANAGER_REGISTRY.get(MANAGER_NAME)
    if registered is None or registered.__qualname__ != DenseRewardManager.__qualname__:
        register(MANAGER_NAME)(DenseRewardManager)
