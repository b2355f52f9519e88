"""Turning items into token sequences: every refusal names its code, index and field."""

from __future__ import annotations

from typing import Any

import pytest

from dense_reward_server.api.schemas import RewardItem
from dense_reward_server.errors import InvalidRequest, PayloadTooLarge
from dense_reward_server.rewards.items import Limits, prepare_items
from dense_reward_server.rewards.tokenization import RewardTokenizer

LIMITS = Limits(max_model_len=64, max_tokens_per_request=200)


def prep(tok: RewardTokenizer, *items: dict[str, Any], append_eos: bool = False) -> Any:
    """The prepared sequences, one per single item (groups: see test_groups_steps)."""
    prepared = prepare_items([RewardItem(**i) for i in items], tok, LIMITS, append_eos=append_eos)
    return [p.sequences[0] for p in prepared]


GOOD = {"prompt": "Sort ascending: 2 1", "completion": "1 2"}


@pytest.mark.parametrize(
    ("item", "code", "field"),
    [
        ({"completion": "1"}, "missing_field", "prompt"),
        ({"prompt": "x"}, "missing_field", "completion"),
        (
            {"prompt": "x", "prompt_token_ids": [1], "completion": "1"},
            "conflicting_fields",
            "prompt_token_ids",
        ),
        (
            {"prompt": "x", "messages": [{"role": "user", "content": "x"}], "completion": "1"},
            "conflicting_fields",
            "messages",
        ),
        (
            {"prompt": "x", "completion": "1", "completion_token_ids": [5]},
            "conflicting_fields",
            "completion_token_ids",
        ),
        ({"prompt": "x", "completion": ""}, "empty_completion", "completion"),
        ({"prompt": "x", "completion_token_ids": []}, "empty_completion", "completion_token_ids"),
        ({"prompt_token_ids": [], "completion": "1"}, "empty_prompt", "prompt_token_ids"),
        (
            {"prompt_token_ids": [1, 10**6], "completion": "1"},
            "token_out_of_vocabulary",
            "prompt_token_ids",
        ),
        (
            {"prompt": "x", "completion_token_ids": [5, -1]},
            "token_out_of_vocabulary",
            "completion_token_ids",
        ),
        ({"prompt": "x", "completion": "1 2 3", "mask": [1]}, "mask_length_mismatch", "mask"),
        (
            {"prompt": "x", "completion_token_ids": [5] * 80},
            "sequence_too_long",
            "completion_token_ids",
        ),
    ],
)
def test_bad_item_is_refused_with_code_index_and_field(
    tok: RewardTokenizer, item: dict[str, Any], code: str, field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        prep(tok, GOOD, GOOD, item)
    assert (caught.value.code, caught.value.index, caught.value.field) == (code, 2, field)
    assert caught.value.status == 422


def test_too_many_tokens_in_a_request_is_413_not_truncation(tok: RewardTokenizer) -> None:
    item = {"prompt_token_ids": [1] * 30, "completion_token_ids": [5] * 30}
    with pytest.raises(PayloadTooLarge) as caught:
        prep(tok, *([item] * 4))
    assert caught.value.code == "too_many_tokens"


def test_append_eos_appends_once_and_extends_mask_and_offsets(tok: RewardTokenizer) -> None:
    eos = tok.eos_token_id
    item = prep(tok, {"prompt": "x", "completion": "1 2", "mask": None}, append_eos=True)[0]
    assert item.completion_ids[-1] == eos and item.eos_appended
    assert item.offsets[-1] == (3, 3)
    ids = [*tok.encode_completion("1 2")[0], eos]
    again = prep(
        tok, {"prompt": "x", "completion_token_ids": ids, "mask": [1] * len(ids)}, append_eos=True
    )[0]
    assert again.completion_ids == ids and not again.eos_appended
    masked = prep(
        tok,
        {"prompt": "x", "completion_token_ids": ids[:-1], "mask": [0] * (len(ids) - 1)},
        append_eos=True,
    )[0]
    assert masked.mask.tolist() == [0] * (len(ids) - 1) + [1]


def test_token_ids_are_scored_exactly_as_given(tok: RewardTokenizer) -> None:
    item = prep(tok, {"prompt_token_ids": [7, 8, 9], "completion_token_ids": [10, 11]})[0]
    assert item.tokens.prompt_ids == [7, 8, 9] and item.completion_ids == [10, 11]
    assert item.offsets is None
