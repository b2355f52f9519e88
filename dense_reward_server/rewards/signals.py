"""Per-completion signals that move when a policy games the reward (README, Reward guards).

A policy that learns to exploit a log-ratio reward drifts off the SFT model's support: its
completions get longer, repeat themselves, and collect positive rewards on tokens the SFT model
itself finds implausible (measured in the demo experiment: against `sft-half` the policy wrote
`34 34 34 ...`, each repeat log pi_sft ~ -10 yet rewarded ~ +4). Each signal is one number per
completion, cheap enough to compute on every answer (numpy, no Python loop over tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NGRAM = 4  # repeats of 4 tokens: a list that repeats one number, or text that loops
_MIX = np.uint64(0x9E3779B97F4A7C15)  # 64-bit golden-ratio multiplier for the n-gram hash


@dataclass(frozen=True, slots=True)
class Signals:
    tokens: int  # scored tokens
    sft_logprob: float | None  # mean log pi_sft over the scored tokens
    repeated_ngrams: float  # share of the completion's n-grams seen earlier in it
    implausible_reward: float | None  # share of scored tokens rewarded > 0 with log pi_sft < t


def repeated_ngram_share(ids: Sequence[int], n: int = NGRAM) -> float:
    """Share of the n-grams that repeat an earlier one (0 for fewer than n + 1 tokens)."""
    tokens = np.asarray(ids, dtype=np.uint64)
    if len(tokens) <= n:
        return 0.0
    windows = np.lib.stride_tricks.sliding_window_view(tokens, n)
    hashes = np.zeros(len(windows), dtype=np.uint64)
    for column in range(n):  # n steps, not one per token
        hashes = (hashes ^ windows[:, column]) * _MIX
    return 1.0 - len(np.unique(hashes)) / len(hashes)


def completion_signals(
    ids: Sequence[int],
    sft: np.ndarray,
    rewards: np.ndarray,
    scored: np.ndarray | None,
    implausible_logprob: float,
) -> Signals:
    """The signals of one completion; `scored` the mask (None: every token), rewards NaN where
    masked."""
    at = np.ones(len(sft), bool) if scored is None else scored.astype(bool)
    count = int(np.count_nonzero(at))
    if count == 0:
        return Signals(0, None, repeated_ngram_share(ids), None)
    implausible = (rewards[at] > 0) & (sft[at] < implausible_logprob)
    return Signals(
        tokens=count,
        sft_logprob=float(np.mean(sft[at], dtype=np.float64)),
        repeated_ngrams=repeated_ngram_share(ids),
        implausible_reward=float(np.count_nonzero(implausible)) / count,
    )
