"""verl adapter: a custom reward function (`custom_reward_function.path` / `.name`) and the
token-level reward tensor verl's PPO loop consumes.

verl config:

    custom_reward_function:
      path: /path/to/service/adapters/verl.py
      name: compute_score

With verl's default reward manager, `compute_score(data_source, solution_str, ground_truth,
extra_info)` returns one score per response, which verl places on the response's last valid
token of its `[batch, response_length]` reward tensor. The dense rewards come back too
(`dense_rewards` in the returned dict: verl keeps extra keys in `reward_extra_info`); a
custom reward manager can instead write them over the whole response with
`token_level_tensor` below: `reward_tensor[i, :L_i] = r_i` (L_i = valid response length),
the exact token-level credit the server computed.

Server address and key: env `DRS_REWARD_URL` (default http://127.0.0.1:8000) and
`DRS_REWARD_API_KEY`. The prompt, when verl passes it in `extra_info["prompt"]` (text or chat
messages), is the scoring context; otherwise a single space.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

from service.client import RewardClient


@cache
def client() -> RewardClient:
    return RewardClient(
        os.environ.get("DRS_REWARD_URL", "http://127.0.0.1:8000"),
        os.environ.get("DRS_REWARD_API_KEY"),
    )


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
        "dense_rewards": [0.0 if v is None else float(v) for v in result["rewards"]],
    }


def token_level_tensor(
    dense_rewards: Sequence[Sequence[float]], valid_lengths: Sequence[int], response_length: int
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
