"""TRL adapter: a reward function for `GRPOTrainer(reward_funcs=[...])` and per-token rewards
aligned with the trainer's completion ids.

    from dense_reward_client.adapters.trl import DenseReward
    trainer = GRPOTrainer(model=..., reward_funcs=[DenseReward("http://127.0.0.1:8000")], ...)

TRL calls reward functions with `prompts`, `completions` and `completion_ids` (the sampled
token ids, ending with EOS when the policy stopped). The adapter scores those exact ids, so
no re-tokenization can shift a token boundary; the policy must use the server's tokenizer
(checked once against the server's fingerprint when a tokenizer is given).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from dense_reward_client import RewardClient
from dense_reward_client.fingerprint import tokenizer_fingerprint


def prompt_field(prompt: Any) -> dict[str, Any]:
    """TRL prompts are text or chat messages (conversational datasets)."""
    if isinstance(prompt, str):
        return {"prompt": prompt}
    return {"messages": list(prompt)}


def completion_text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content") or "") for message in completion)


class DenseReward:
    """Sequence reward for GRPO: the total (or mean) dense reward of each completion."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        reduction: Literal["total", "mean"] = "total",
        tokenizer: Any = None,
        client: RewardClient | None = None,
    ) -> None:
        # TRL logs each reward function under its __name__.
        self.__name__ = f"dense_reward_{reduction}"
        self.reduction = reduction
        self.client = client or RewardClient(base_url, api_key)
        if tokenizer is not None:
            ours = tokenizer_fingerprint(tokenizer)
            theirs = self.client.models()["tokenizer_fingerprint"]
            if ours != theirs:
                raise ValueError(
                    f"the policy's tokenizer ({ours}) is not the reward server's ({theirs}): "
                    "token-level rewards would not line up"
                )

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]] | None = None,
        **_: Any,
    ) -> list[float]:
        results = self.score(prompts, completions, completion_ids)
        key = "total_reward" if self.reduction == "total" else "mean_reward"
        return [float(r[key]) if r[key] is not None else 0.0 for r in results]

    def score(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]] | None = None,
    ) -> list[dict[str, Any]]:
        items = []
        for i, prompt in enumerate(prompts):
            item = prompt_field(prompt)
            if completion_ids is not None and len(completion_ids[i]) > 0:
                item["completion_token_ids"] = list(completion_ids[i])
            else:
                item["completion"] = completion_text(completions[i]) or " "
            items.append(item)
        return self.client.token_rewards(items, encoding="base64", include=[])


def token_rewards(
    reward: DenseReward, prompts: Sequence[Any], completion_ids: Sequence[Sequence[int]]
) -> list[np.ndarray]:
    """Per-token rewards, one float32 array per completion, aligned with `completion_ids`
    (what a PPO/REINFORCE loss over the trainer's completion mask needs)."""
    results = reward.score(prompts, [""] * len(prompts), completion_ids)
    return [np.asarray(r["rewards"], dtype=np.float32) for r in results]


def padded(rewards: Sequence[np.ndarray], width: int | None = None) -> np.ndarray:
    """Stack per-token rewards right-padded with 0 into [batch, width] (the completion-mask
    layout TRL uses); masked (NaN) tokens become 0."""
    width = width or max(len(r) for r in rewards)
    out = np.zeros((len(rewards), width), dtype=np.float32)
    for i, values in enumerate(rewards):
        out[i, : len(values)] = np.nan_to_num(values[:width], nan=0.0)
    return out
