"""The response body of POST /v1/token_rewards, built here from core's typed results.

What a result shows (the per-token arrays in `include`, steps, group scores, base64) is the
request's `View`: read once from the body, used only here; core never sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from dense_reward_client import encoding
from dense_reward_client.types import Include

from dense_reward_server.core.results import RewardSpec, ScoredItem, ScoredSequence
from dense_reward_server.core.scoring import Scored, ScoringService
from dense_reward_server.rewards import steps
from dense_reward_server.rewards.groups import GroupBaseline, group_scores, group_stats
from dense_reward_server.rewards.items import PreparedSequence

TokenStrings = Callable[[Sequence[int]], list[str]]


@dataclass(frozen=True, slots=True)
class View:
    """The request's display options: which arrays, steps, group scores, and the encoding."""

    include: frozenset[Include]
    delimiter: str | None
    group_baseline: GroupBaseline | None
    base64: bool


def token_rewards_body(scored: Scored, view: View, service: ScoringService) -> dict[str, Any]:
    """The whole answer (arrays as numpy, for orjson)."""
    runtime = service.runtime
    token_strings = runtime.tokenizer.token_strings
    return {
        "object": "token_rewards",
        "model": {
            "sft": runtime.settings.sft_model,
            "base": runtime.settings.base_model if service.has_baseline else None,
            "beta": scored.beta,
            "tokenizer_fingerprint": runtime.tokenizer.fingerprint,
            "reward": reward_body(scored.spec),
        },
        "results": [item_body(item, view, token_strings) for item in scored.items],
        "usage": {
            "prompt_tokens": scored.usage.prompt_tokens,
            "completion_tokens": scored.usage.completion_tokens,
            "total_tokens": scored.usage.total_tokens,
        },
    }


def reward_body(spec: RewardSpec) -> dict[str, Any]:
    guards = spec.guards
    return {
        "baselines": list(spec.baselines),
        "ref_logprob_floor": guards.ref_floor,
        "reward_clip_min": guards.clip_min,
        "reward_clip_max": guards.clip_max,
        "aggregate": guards.aggregate,
        "soft_min_temperature": guards.temperature,
    }


def item_body(item: ScoredItem, view: View, token_strings: TokenStrings) -> dict[str, Any]:
    """A single item's result, or a group's: its members' results plus group statistics."""
    members = [sequence_body(j, seq, view, token_strings) for j, seq in enumerate(item.sequences)]
    prepared = item.prepared
    if not prepared.is_group:
        members[0]["index"] = prepared.index
        return members[0]
    # A member with nothing scored counts 0, as its total does.
    scores = np.nan_to_num(item.aggregates(), nan=0.0)
    group: dict[str, Any] = group_stats(scores)
    if view.group_baseline is not None:
        group["baseline"] = view.group_baseline
        group["scores"] = group_scores(scores, view.group_baseline)
    return {"index": prepared.index, "id": prepared.id, "completions": members, "group": group}


def sequence_body(
    position: int, scored: ScoredSequence, view: View, token_strings: TokenStrings
) -> dict[str, Any]:
    seq, rewards = scored.prepared, scored.rewards
    arrays: dict[str, np.ndarray | None] = {"rewards": rewards.rewards}
    if "logprobs" in view.include:
        arrays["sft_logprobs"] = scored.sft
        arrays["base_logprobs"] = scored.base
    if "baselines" in view.include:
        arrays["ref_logprobs"] = scored.ref
    if rewards.returns is not None:
        arrays["returns"] = rewards.returns.astype(np.float32)
    ids = seq.completion_ids
    result: dict[str, Any] = {
        "index": position,
        "id": seq.id,
        "num_tokens": len(ids),
        "eos_appended": seq.eos_appended,
        "token_ids": encoding.encode_ints(ids) if view.base64 else ids,
        "total_reward": rewards.total,
        "mean_reward": rewards.mean,
        "aggregate_reward": rewards.aggregate,
        "scored_tokens": rewards.scored_tokens,
    }
    for name, values in arrays.items():
        # NaN (masked) serializes as null through orjson, and stays NaN in base64.
        result[name] = (
            encoding.encode_floats(values) if view.base64 and values is not None else values
        )
    if "baselines" in view.include:
        result["baseline_logprobs"] = {
            name: encoding.encode_floats(values) if view.base64 else values
            for name, values in scored.baselines.items()
        }
    if "tokens" in view.include:
        result["tokens"] = token_strings(ids)
    if "offsets" in view.include:
        offsets = seq.offsets
        result["offsets"] = encoding.encode_ints(offsets) if view.base64 and offsets else offsets
    if view.delimiter is not None or seq.step_spans is not None:
        found = sequence_steps(seq, rewards.rewards, view.delimiter, token_strings)
        result["steps"] = [s.as_dict() for s in found]
    return result


def sequence_steps(
    seq: PreparedSequence, rewards: np.ndarray, delimiter: str | None, token_strings: TokenStrings
) -> list[steps.Step]:
    """Explicit spans win over the request's delimiter."""
    offsets = seq.offsets
    if offsets is None:
        offsets = steps.piece_offsets(token_strings(seq.completion_ids))
    if seq.step_spans is not None:
        char_spans = [(offsets[a][0], offsets[b - 1][1]) for a, b in seq.step_spans]
        return steps.step_rewards(rewards, seq.step_spans, char_spans)
    text = seq.text if seq.text is not None else "".join(token_strings(seq.completion_ids))
    assert delimiter is not None
    char_spans = steps.text_steps(text, delimiter)
    return steps.step_rewards(rewards, steps.tokens_per_step(offsets, char_spans), char_spans)
