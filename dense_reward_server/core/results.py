"""Typed results of a scored request, computed once.

`score_items` turns the engines' log-probs into `ScoredItem`s (rewards, totals, returns: each
sequence's maths done once); the response body (`api/wire.py`) and the metrics both read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dense_reward_server.rewards.items import PreparedItem, PreparedSequence
from dense_reward_server.rewards.maths import SequenceRewards, check_finite, sequence_rewards


@dataclass(frozen=True, slots=True)
class ScoredSequence:
    """One completion with both models' log-probs and its rewards."""

    prepared: PreparedSequence
    sft: np.ndarray
    base: np.ndarray | None  # None: no baseline model (reward = beta * log pi_sft)
    rewards: SequenceRewards


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """One request item: a single completion, or a group's completions in order."""

    prepared: PreparedItem
    sequences: list[ScoredSequence]

    def totals(self) -> np.ndarray:
        return np.array([s.rewards.total for s in self.sequences], dtype=np.float64)


def score_items(
    prepared: Sequence[PreparedItem],
    sft: Sequence[np.ndarray],
    base: Sequence[np.ndarray] | None,
    *,
    beta: float,
    gamma: float | None,
) -> list[ScoredItem]:
    """The rewards of every sequence, in the order the engines got them (items, then members).

    A non-finite log-prob is an engine fault and fails the request with the item's index.
    """
    scored, cursor = [], 0
    for item in prepared:
        members = []
        for seq in item.sequences:
            sft_lp = sft[cursor]
            base_lp = None if base is None else base[cursor]
            cursor += 1
            check_finite(sft_lp, model="sft", index=item.index)
            if base_lp is not None:
                check_finite(base_lp, model="base", index=item.index)
            rewards = sequence_rewards(
                sft_lp,
                np.zeros_like(sft_lp) if base_lp is None else base_lp,
                beta=beta,
                mask=seq.mask,
                gamma=gamma,
            )
            members.append(ScoredSequence(seq, sft_lp, base_lp, rewards))
        scored.append(ScoredItem(item, members))
    return scored
