"""Shape the result of one scored completion (and of a group) for the response body."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.rewards import encoding, steps
from service.rewards.groups import GroupBaseline, group_scores, group_stats
from service.rewards.items import PreparedItem, PreparedSequence
from service.rewards.maths import check_finite, sequence_rewards


@dataclass(frozen=True, slots=True)
class ResultOptions:
    beta: float
    gamma: float | None  # None: no returns
    include: frozenset[str]
    delimiter: str | None
    group_baseline: GroupBaseline | None
    base64: bool
    has_baseline: bool
    token_strings: Callable[[Sequence[int]], list[str]]


def item_result(
    item: PreparedItem, sft: Sequence[np.ndarray], base: Sequence[np.ndarray], opts: ResultOptions
) -> dict[str, Any]:
    """A single item's result, or a group's: its members' results plus group statistics."""
    members = [
        sequence_result(j, seq, sft[j], base[j], opts, item.index)
        for j, seq in enumerate(item.sequences)
    ]
    if not item.is_group:
        members[0]["index"] = item.index
        return members[0]
    totals = np.array([m["total_reward"] for m in members], dtype=np.float64)
    group: dict[str, Any] = group_stats(totals)
    if opts.group_baseline is not None:
        group["baseline"] = opts.group_baseline
        group["scores"] = group_scores(totals, opts.group_baseline)
    return {"index": item.index, "id": item.id, "completions": members, "group": group}


def sequence_result(
    position: int,
    seq: PreparedSequence,
    sft: np.ndarray,
    base: np.ndarray,
    opts: ResultOptions,
    item_index: int,
) -> dict[str, Any]:
    check_finite(sft, model="sft", index=item_index)
    check_finite(base, model="base", index=item_index)
    scored = sequence_rewards(sft, base, beta=opts.beta, mask=seq.mask, gamma=opts.gamma)
    arrays: dict[str, np.ndarray | None] = {"rewards": scored.rewards}
    if "logprobs" in opts.include:
        arrays["sft_logprobs"] = sft
        arrays["base_logprobs"] = base if opts.has_baseline else None
    if scored.returns is not None:
        arrays["returns"] = scored.returns.astype(np.float32)
    result: dict[str, Any] = {
        "index": position,
        "id": seq.id,
        "num_tokens": len(seq.completion_ids),
        "eos_appended": seq.eos_appended,
        "token_ids": encoding.encode_ints(seq.completion_ids)
        if opts.base64
        else seq.completion_ids,
        "total_reward": scored.total,
        "mean_reward": scored.mean,
        "scored_tokens": scored.scored_tokens,
    }
    for name, values in arrays.items():
        # NaN (masked) serializes as null through orjson, and stays NaN in base64.
        result[name] = (
            encoding.encode_floats(values) if opts.base64 and values is not None else values
        )
    if "tokens" in opts.include:
        result["tokens"] = opts.token_strings(seq.completion_ids)
    if "offsets" in opts.include:
        offsets = seq.offsets
        result["offsets"] = encoding.encode_ints(offsets) if opts.base64 and offsets else offsets
    if opts.delimiter is not None or seq.step_spans is not None:
        result["steps"] = [s.as_dict() for s in sequence_steps(seq, scored.rewards, opts)]
    return result


def sequence_steps(
    seq: PreparedSequence, rewards: np.ndarray, opts: ResultOptions
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
