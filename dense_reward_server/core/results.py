"""Typed results of a scored request, computed once, and their shape in the response body.

`score_items` turns the engines' log-probs into `ScoredItem`s (rewards, totals, returns: each
sequence's maths done once); the response body (`item_body`) and the metrics both read them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from dense_reward_client import encoding

from dense_reward_server.rewards import steps
from dense_reward_server.rewards.groups import GroupBaseline, group_scores, group_stats
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


@dataclass(frozen=True, slots=True)
class ShapeOptions:
    """How the response shows each result (what the request asked for)."""

    include: frozenset[str]
    delimiter: str | None
    group_baseline: GroupBaseline | None
    base64: bool
    token_strings: Callable[[Sequence[int]], list[str]]


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


def item_body(item: ScoredItem, opts: ShapeOptions) -> dict[str, Any]:
    """A single item's result, or a group's: its members' results plus group statistics."""
    members = [sequence_body(j, seq, opts) for j, seq in enumerate(item.sequences)]
    prepared = item.prepared
    if not prepared.is_group:
        members[0]["index"] = prepared.index
        return members[0]
    totals = item.totals()
    group: dict[str, Any] = group_stats(totals)
    if opts.group_baseline is not None:
        group["baseline"] = opts.group_baseline
        group["scores"] = group_scores(totals, opts.group_baseline)
    return {"index": prepared.index, "id": prepared.id, "completions": members, "group": group}


def sequence_body(position: int, scored: ScoredSequence, opts: ShapeOptions) -> dict[str, Any]:
    seq, rewards = scored.prepared, scored.rewards
    arrays: dict[str, np.ndarray | None] = {"rewards": rewards.rewards}
    if "logprobs" in opts.include:
        arrays["sft_logprobs"] = scored.sft
        arrays["base_logprobs"] = scored.base
    if rewards.returns is not None:
        arrays["returns"] = rewards.returns.astype(np.float32)
    ids = seq.completion_ids
    result: dict[str, Any] = {
        "index": position,
        "id": seq.id,
        "num_tokens": len(ids),
        "eos_appended": seq.eos_appended,
        "token_ids": encoding.encode_ints(ids) if opts.base64 else ids,
        "total_reward": rewards.total,
        "mean_reward": rewards.mean,
        "scored_tokens": rewards.scored_tokens,
    }
    for name, values in arrays.items():
        # NaN (masked) serializes as null through orjson, and stays NaN in base64.
        result[name] = (
            encoding.encode_floats(values) if opts.base64 and values is not None else values
        )
    if "tokens" in opts.include:
        result["tokens"] = opts.token_strings(ids)
    if "offsets" in opts.include:
        offsets = seq.offsets
        result["offsets"] = encoding.encode_ints(offsets) if opts.base64 and offsets else offsets
    if opts.delimiter is not None or seq.step_spans is not None:
        result["steps"] = [s.as_dict() for s in sequence_steps(seq, rewards.rewards, opts)]
    return result


def sequence_steps(
    seq: PreparedSequence, rewards: np.ndarray, opts: ShapeOptions
) -> list[steps.Step]:
    """Explicit spans win over the request's delimiter."""
    offsets = seq.offsets
    if offsets is None:
        offsets = steps.piece_offsets(opts.token_strings(seq.completion_ids))
    if seq.step_spans is not None:
        char_spans = [(offsets[a][0], offsets[b - 1][1]) for a, b in seq.step_spans]
        return steps.step_rewards(rewards, seq.step_spans, char_spans)
    text = seq.text if seq.text is not None else "".join(opts.token_strings(seq.completion_ids))
    assert opts.delimiter is not None
    char_spans = steps.text_steps(text, opts.delimiter)
    return steps.step_rewards(rewards, steps.tokens_per_step(offsets, char_spans), char_spans)
