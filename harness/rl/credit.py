"""Credit assignment for Dense-Path REINFORCE: per-token rewards, returns-to-go, advantages.

Pure numpy on one prompt's K samples at a time, so every rule here is testable by hand.

- Rewards per token come from the server (`dense`), or are collapsed onto the last token
  (`sparse`: the same total, no credit assignment), or are a verifier's 0/1 at the last token.
- The KL penalty to the SFT policy is folded into each token's reward, as in RLHF's PPO:
  `r_t - kl_coef * (log pi_theta(y_t) - log pi_sft(y_t))`, with `log pi_sft` the `sft_logprobs`
  the server returned for the same response (its SFT engine is the KL reference).
- Returns-to-go are undiscounted (`gamma = 1`): the paper found discounting worse.
- Baseline: per prompt, leave-one-out, per position: sample i's baseline at token t is the
  mean return-to-go at t of the prompt's other K-1 samples (0 where one has already ended).
  It does not depend on sample i's own tokens, so the gradient stays unbiased; it is per
  prompt because a prompt's length sets the scale of its returns (a list of 8 numbers earns
  about twice the total of a list of 3, which a batch mean would read as quality); and it is
  per position because a return-to-go changes along the answer (it shrinks where rewards are
  mostly positive, as against `base`): a single per-sequence baseline would give every early
  token one sign of advantage and every late token the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Credit = Literal["dense", "sparse", "verifier"]
CREDITS: tuple[Credit, ...] = ("dense", "sparse", "verifier")


def token_rewards(credit: Credit, dense: np.ndarray, correct: bool) -> np.ndarray:
    """One sample's reward per token under a credit rule (float64, same length as `dense`)."""
    rewards = np.zeros(len(dense))
    if credit == "dense":
        rewards[:] = dense
    elif credit == "sparse":
        rewards[-1] = dense.sum()
    elif credit == "verifier":
        rewards[-1] = float(correct)
    else:
        raise ValueError(f"unknown credit {credit!r}; known: {', '.join(CREDITS)}")
    return rewards


def kl_shaped(
    rewards: np.ndarray, policy_logprobs: np.ndarray, sft_logprobs: np.ndarray, kl_coef: float
) -> np.ndarray:
    """Rewards minus the per-token KL penalty (k1 estimate: log pi_theta - log pi_sft).

    `policy_logprobs` may be shorter than `rewards`: positions past it (an EOS the trainer
    appended, which the policy never drew) carry no penalty.
    """
    kl = np.zeros(len(rewards))
    kl[: len(policy_logprobs)] = policy_logprobs - sft_logprobs[: len(policy_logprobs)]
    return rewards - kl_coef * kl


def returns_to_go(rewards: np.ndarray) -> np.ndarray:
    """G_t = sum_{k >= t} r_k (undiscounted)."""
    return np.cumsum(rewards[::-1])[::-1].copy()


def loo_advantages(returns: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each sample's returns-to-go minus the leave-one-out, per-position baseline (above).

    With one sample there is no one left to compare with: its advantage is its return.
    """
    count = len(returns)
    width = max(len(g) for g in returns)
    padded = np.zeros((count, width))
    for i, g in enumerate(returns):
        padded[i, : len(g)] = g  # a sample that has ended earns nothing more
    if count == 1:
        return [returns[0].copy()]
    others = (padded.sum(axis=0, keepdims=True) - padded) / (count - 1)
    return [g - others[i, : len(g)] for i, g in enumerate(returns)]


def whiten(advantages: Sequence[np.ndarray], floor: float = 1e-3) -> list[np.ndarray]:
    """Advantages over a whole batch divided by their standard deviation (not re-centred: the
    leave-one-out baseline already centres them per prompt, wherever all K answers run).

    Lets one learning rate serve rewards of very different scales (a 0/1 verifier, log-ratio
    totals of tens of nats). The floor keeps a batch with no reward spread (every verdict the
    same) from blowing float noise up to full steps."""
    flat = np.concatenate(list(advantages))
    scale = max(float(flat.std()), floor)
    return [a / scale for a in advantages]
