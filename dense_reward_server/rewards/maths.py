"""The reward maths of SPEC section 1, in numpy, with the reward guards.

ref[t]       = max(max_k ref_logprob_k[t], floor)                 (the pessimistic reference;
                                                                   no floor: max_k alone)
reward[t]    = clip(beta * (sft_logprob[t] - ref[t]), lo, hi)     (float32, as the engines give)
total_reward = sum of reward[t] over scored (unmasked) tokens      (accumulated in float64)
mean_reward  = total_reward / scored tokens
aggregate    = sum | mean | min | soft_min_T of the scored rewards (soft_min_T = sum_t w_t r_t,
               w = softmax(-r / T): the min as T -> 0, the mean as T -> inf; PURE's min-form)
returns[t]   = sum_{k>=t} gamma^(k-t) * c[k], c the rewards as the aggregate weighs them
               (sum: r; mean: r / n; soft_min: w * r), so returns[0] = aggregate at gamma 1;
               min: min_{k>=t} r[k]                               (masked rewards count as 0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dense_reward_server.errors import NonFiniteLogprob
from dense_reward_server.guards import Aggregate


@dataclass(frozen=True, slots=True)
class Guards:
    """How log-probs become rewards beyond the plain log-ratio (README, Reward guards)."""

    ref_floor: float | None = None  # floor on the reference log-prob
    clip_min: float | None = None  # bounds of each token's reward (after beta)
    clip_max: float | None = None
    aggregate: Aggregate = "sum"  # the sequence score and what returns sum up
    temperature: float = 1.0  # of soft_min


PLAIN = Guards()


@dataclass(frozen=True, slots=True)
class SequenceRewards:
    """Per-token rewards of one completion. Masked positions hold NaN in `rewards`/`returns`."""

    rewards: np.ndarray
    total: float
    mean: float | None
    scored_tokens: int
    returns: np.ndarray | None
    aggregate: float | None  # the guards' aggregate of the scored rewards; None: none scored


def check_finite(logprobs: np.ndarray, *, model: str, index: int) -> None:
    """A log-prob of -inf or NaN is an engine fault, never a reward to hand to a trainer."""
    if not np.all(np.isfinite(logprobs)):
        position = int(np.flatnonzero(~np.isfinite(logprobs))[0])
        raise NonFiniteLogprob(
            f"{model} engine returned a non-finite log-prob at completion token {position}",
            index=index,
        )


def reference_logprobs(baselines: Sequence[np.ndarray], floor: float | None) -> np.ndarray:
    """The pessimistic reference: per token the most likely baseline's log-prob, floored.

    The reward of a token is then the smallest log-ratio over the baselines: a completion must
    beat every baseline to earn. The floor caps a token's reward at `log pi_sft - floor`, so
    a token the SFT model finds absurd earns nothing however absurd the baselines find it.
    """
    ref: np.ndarray = np.max(np.stack([b.astype(np.float32) for b in baselines]), axis=0)
    if floor is not None:
        ref = np.maximum(ref, np.float32(floor))
    return ref


def token_rewards(
    sft: np.ndarray,
    base: np.ndarray,
    beta: float,
    clip_min: float | None = None,
    clip_max: float | None = None,
) -> np.ndarray:
    """clip(beta * (log pi_sft - log pi_base), clip_min, clip_max), float32."""
    rewards = np.float32(beta) * (sft.astype(np.float32) - base.astype(np.float32))
    if clip_min is not None or clip_max is not None:
        rewards = np.clip(rewards, clip_min, clip_max)
    return rewards.astype(np.float32)


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """returns[t] = sum_{k>=t} gamma^(k-t) rewards[k], by the backward recursion in float64."""
    out = np.empty(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = float(rewards[t]) + gamma * running
        out[t] = running
    return out


def soft_min_weights(rewards: np.ndarray, scored: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(-r / T) over the scored tokens (0 elsewhere), in float64, overflow-safe."""
    logits = np.where(scored, -rewards.astype(np.float64) / temperature, -np.inf)
    if not scored.any():
        return np.zeros(len(rewards))
    weights: np.ndarray = np.exp(logits - np.max(logits))
    weights /= weights.sum()
    return weights


def suffix_min(rewards: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """out[t] = min of the scored rewards at t and after (+inf where none is left)."""
    values = np.where(scored, rewards.astype(np.float64), np.inf)
    out: np.ndarray = np.minimum.accumulate(values[::-1])[::-1]
    return out


def aggregate_parts(
    rewards: np.ndarray, scored: np.ndarray, guards: Guards
) -> tuple[float | None, np.ndarray]:
    """The aggregate and each token's contribution to the returns (not for min)."""
    count = int(np.count_nonzero(scored))
    plain = np.where(scored, rewards.astype(np.float64), 0.0)
    if guards.aggregate == "sum":
        return float(np.sum(plain)), plain
    if count == 0:
        return None, plain
    if guards.aggregate == "mean":
        return float(np.sum(plain)) / count, plain / count
    if guards.aggregate == "soft_min":
        weighted = soft_min_weights(rewards, scored, guards.temperature) * plain
        return float(np.sum(weighted)), weighted
    return float(np.min(rewards[scored])), plain


def sequence_rewards(
    sft: np.ndarray,
    base: np.ndarray,
    *,
    beta: float,
    mask: np.ndarray | None = None,
    gamma: float | None = None,
    guards: Guards = PLAIN,
) -> SequenceRewards:
    """Rewards, totals, aggregate and (when gamma is given) returns of one completion.

    `base` is the reference log-prob (`reference_logprobs` of the baselines, floor included).
    `mask[t] == 0` marks a token that is context, not the policy's action (tool output):
    it gets no reward (NaN here, null in JSON) and is left out of totals and aggregates.
    """
    rewards = token_rewards(sft, base, beta, guards.clip_min, guards.clip_max)
    scored_at = np.ones(len(rewards), bool) if mask is None else mask.astype(bool)
    scored = np.where(scored_at, rewards, np.float32(0))
    count = int(np.count_nonzero(scored_at))
    total = float(np.sum(scored, dtype=np.float64))
    aggregate, contributions = aggregate_parts(rewards, scored_at, guards)
    returns = None
    if gamma is not None:
        returns = (
            suffix_min(rewards, scored_at)
            if guards.aggregate == "min"
            else discounted_returns(contributions, gamma)
        )
    if mask is not None:
        rewards = np.where(scored_at, rewards, np.float32(np.nan))
        if returns is not None:
            returns = np.where(scored_at, returns, np.nan)
    return SequenceRewards(
        rewards=rewards,
        total=total,
        mean=total / count if count else None,
        scored_tokens=count,
        returns=returns,
        aggregate=aggregate,
    )
