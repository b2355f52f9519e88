"""The reward maths of SPEC section 1, in numpy.

reward[t]    = beta * (sft_logprob[t] - base_logprob[t])       (float32, as the engines give)
total_reward = sum of reward[t] over scored (unmasked) tokens    (accumulated in float64)
mean_reward  = total_reward / scored tokens
returns[t]   = sum_{k>=t} gamma^(k-t) * reward[k]                (masked rewards count as 0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dense_reward_server.errors import NonFiniteLogprob


@dataclass(frozen=True, slots=True)
class SequenceRewards:
    """Per-token rewards of one completion. Masked positions hold NaN in `rewards`/`returns`."""

    rewards: np.ndarray
    total: float
    mean: float | None
    scored_tokens: int
    returns: np.ndarray | None


def check_finite(logprobs: np.ndarray, *, model: str, index: int) -> None:
    """A log-prob of -inf or NaN is an engine fault, never a reward to hand to a trainer."""
    if not np.all(np.isfinite(logprobs)):
        position = int(np.flatnonzero(~np.isfinite(logprobs))[0])
        raise NonFiniteLogprob(
            f"{model} engine returned a non-finite log-prob at completion token {position}",
            index=index,
        )


def token_rewards(sft: np.ndarray, base: np.ndarray, beta: float) -> np.ndarray:
    """beta * (log pi_sft - log pi_base), float32."""
    return (np.float32(beta) * (sft.astype(np.float32) - base.astype(np.float32))).astype(
        np.float32
    )


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """returns[t] = sum_{k>=t} gamma^(k-t) rewards[k], by the backward recursion in float64."""
    out = np.empty(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = float(rewards[t]) + gamma * running
        out[t] = running
    return out


def sequence_rewards(
    sft: np.ndarray,
    base: np.ndarray,
    *,
    beta: float,
    mask: np.ndarray | None = None,
    gamma: float | None = None,
) -> SequenceRewards:
    """Rewards, totals and (when gamma is given) returns of one completion.

    `mask[t] == 0` marks a token that is context, not the policy's action (tool output):
    it gets no reward (NaN here, null in JSON) and is left out of the totals.
    """
    rewards = token_rewards(sft, base, beta)
    scored = rewards if mask is None else np.where(mask.astype(bool), rewards, np.float32(0))
    count = len(rewards) if mask is None else int(np.count_nonzero(mask))
    total = float(np.sum(scored, dtype=np.float64))
    returns = None if gamma is None else discounted_returns(scored, gamma)
    if mask is not None:
        rewards = np.where(mask.astype(bool), rewards, np.float32(np.nan))
        if returns is not None:
            returns = np.where(mask.astype(bool), returns, np.nan)
    return SequenceRewards(
        rewards=rewards,
        total=total,
        mean=total / count if count else None,
        scored_tokens=count,
        returns=returns,
    )
