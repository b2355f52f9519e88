"""Typed results of a scored request, computed once.

`score_items` turns the engines' log-probs into `ScoredItem`s (rewards, totals, returns: each
sequence's maths done once); the response body (`api/wire.py`) and the metrics both read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dense_reward_server.engines.base import PairLogprobs
from dense_reward_server.rewards.items import PreparedItem, PreparedSequence
from dense_reward_server.rewards.maths import (
    PLAIN,
    Guards,
    SequenceRewards,
    check_finite,
    reference_logprobs,
    sequence_rewards,
)


@dataclass(frozen=True, slots=True)
class RewardSpec:
    """Which baselines a request's reward is measured against, and its guards."""

    baselines: tuple[str, ...]  # () : no baseline (reward = beta * log pi_sft)
    guards: Guards = PLAIN


@dataclass(frozen=True, slots=True)
class ScoredSequence:
    """One completion with every model's log-probs and its rewards."""

    prepared: PreparedSequence
    sft: np.ndarray
    base: np.ndarray | None  # the base engine's; None: no base model
    baselines: dict[str, np.ndarray]  # every loaded baseline's, by name
    ref: np.ndarray  # the reference the reward used (max over the spec's baselines, floored)
    rewards: SequenceRewards


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """One request item: a single completion, or a group's completions in order."""

    prepared: PreparedItem
    sequences: list[ScoredSequence]

    def totals(self) -> np.ndarray:
        return np.array([s.rewards.total for s in self.sequences], dtype=np.float64)

    def aggregates(self) -> np.ndarray:
        """Each completion's aggregate reward (NaN where nothing was scored)."""
        values = [s.rewards.aggregate for s in self.sequences]
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def score_items(
    prepared: Sequence[PreparedItem],
    logprobs: PairLogprobs,
    spec: RewardSpec,
    *,
    beta: float,
    gamma: float | None,
) -> list[ScoredItem]:
    """The rewards of every sequence, in the order the engines got them (items, then members).

    A non-finite log-prob is an engine fault and fails the request with the item's index.
    """
    loaded = logprobs.baselines()
    scored, cursor = [], 0
    for item in prepared:
        members = []
        for seq in item.sequences:
            sft_lp = logprobs.sft[cursor]
            check_finite(sft_lp, model="sft", index=item.index)
            by_name = {name: lps[cursor] for name, lps in loaded.items()}
            cursor += 1
            for name, lp in by_name.items():
                check_finite(lp, model=name, index=item.index)
            chosen = [by_name[name] for name in spec.baselines]
            ref = (
                reference_logprobs(chosen, spec.guards.ref_floor)
                if chosen
                else np.zeros_like(sft_lp)
            )
            rewards = sequence_rewards(
                sft_lp, ref, beta=beta, mask=seq.mask, gamma=gamma, guards=spec.guards
            )
            base_lp = by_name.get("base")
            members.append(ScoredSequence(seq, sft_lp, base_lp, by_name, ref, rewards))
        scored.append(ScoredItem(item, members))
    return scored
