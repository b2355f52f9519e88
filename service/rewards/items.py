"""Turn request items into token sequences, refusing every bad input with its index and field.

Nothing is truncated or dropped: an item that does not fit is an error, never a shorter item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from service.errors import InvalidRequest, PayloadTooLarge
from service.rewards.tokenization import ChatTemplateError, Offsets, RewardTokenizer

PROMPT_FIELDS = ("prompt", "messages", "prompt_token_ids")
COMPLETION_FIELDS = ("completion", "completion_token_ids")


class ItemLike(Protocol):
    """What an item must carry; the API's request model satisfies it."""

    @property
    def prompt(self) -> str | None: ...
    @property
    def messages(self) -> Sequence[Any] | None: ...
    @property
    def prompt_token_ids(self) -> Sequence[int] | None: ...
    @property
    def completion(self) -> str | None: ...
    @property
    def completion_token_ids(self) -> Sequence[int] | None: ...
    @property
    def mask(self) -> Sequence[int] | None: ...


@dataclass(frozen=True, slots=True)
class Limits:
    max_model_len: int
    max_tokens_per_request: int


@dataclass(frozen=True, slots=True)
class PreparedItem:
    """One item as token ids; `offsets` only for text completions."""

    prompt_ids: list[int]
    completion_ids: list[int]
    offsets: Offsets | None
    mask: np.ndarray | None
    eos_appended: bool


def prepare_items(
    items: Sequence[ItemLike], tokenizer: RewardTokenizer, limits: Limits, *, append_eos: bool
) -> list[PreparedItem]:
    """Tokenize and check every item; raise on the first bad one (its index and field)."""
    prepared = [_prepare(i, item, tokenizer, limits, append_eos) for i, item in enumerate(items)]
    total = sum(len(p.prompt_ids) + len(p.completion_ids) for p in prepared)
    if total > limits.max_tokens_per_request:
        raise PayloadTooLarge(
            f"the request has {total} tokens; the limit is {limits.max_tokens_per_request} "
            "(DRS_MAX_TOKENS_PER_REQUEST): split it into smaller requests",
            code="too_many_tokens",
        )
    return prepared


def _one_of(item: ItemLike, names: Sequence[str], index: int) -> str:
    present = [name for name in names if getattr(item, name) is not None]
    if not present:
        raise InvalidRequest(
            f"item needs one of {', '.join(names)}",
            code="missing_field",
            index=index,
            field=names[0],
        )
    if len(present) > 1:
        raise InvalidRequest(
            f"item has both {present[0]} and {present[1]}; give exactly one",
            code="conflicting_fields",
            index=index,
            field=present[1],
        )
    return present[0]


def _check_ids(ids: Sequence[int], tokenizer: RewardTokenizer, index: int, field: str) -> None:
    for position, token in enumerate(ids):
        if not 0 <= token < tokenizer.vocab_size:
            raise InvalidRequest(
                f"{field}[{position}] = {token} is not a token id of this tokenizer "
                f"(0..{tokenizer.vocab_size - 1})",
                code="token_out_of_vocabulary",
                index=index,
                field=field,
            )


def _prompt_ids(item: ItemLike, tokenizer: RewardTokenizer, index: int) -> list[int]:
    source = _one_of(item, PROMPT_FIELDS, index)
    if source == "prompt":
        ids = tokenizer.encode_prompt(str(item.prompt))
    elif source == "messages":
        try:
            ids = tokenizer.encode_messages(_as_dicts(item.messages or []))
        except ChatTemplateError as error:
            raise InvalidRequest(
                str(error), code="invalid_messages", index=index, field="messages"
            ) from error
    else:
        ids = list(item.prompt_token_ids or [])
        _check_ids(ids, tokenizer, index, source)
    if not ids:
        # Position 0 is never scored: the first completion token needs at least one before it.
        raise InvalidRequest(
            "the prompt has no tokens; at least one is needed as context",
            code="empty_prompt",
            index=index,
            field=source,
        )
    return ids


def _as_dicts(messages: Sequence[Any]) -> list[Mapping[str, Any]]:
    return [m.model_dump(exclude_none=True) if hasattr(m, "model_dump") else m for m in messages]


def _completion(
    item: ItemLike, tokenizer: RewardTokenizer, index: int
) -> tuple[list[int], Offsets | None, str]:
    source = _one_of(item, COMPLETION_FIELDS, index)
    if source == "completion":
        ids, offsets = tokenizer.encode_completion(str(item.completion))
    else:
        ids, offsets = list(item.completion_token_ids or []), None
        _check_ids(ids, tokenizer, index, source)
    if not ids:
        raise InvalidRequest(
            "the completion is empty: there is nothing to score",
            code="empty_completion",
            index=index,
            field=source,
        )
    return ids, offsets, source


def _mask(item: ItemLike, count: int, index: int) -> np.ndarray | None:
    if item.mask is None:
        return None
    if len(item.mask) != count:
        raise InvalidRequest(
            f"mask has {len(item.mask)} entries but the completion has {count} tokens",
            code="mask_length_mismatch",
            index=index,
            field="mask",
        )
    return np.asarray(item.mask, dtype=np.int8)


def _prepare(
    index: int, item: ItemLike, tokenizer: RewardTokenizer, limits: Limits, append_eos: bool
) -> PreparedItem:
    prompt_ids = _prompt_ids(item, tokenizer, index)
    completion_ids, offsets, source = _completion(item, tokenizer, index)
    mask = _mask(item, len(completion_ids), index)
    eos_appended = False
    if append_eos:
        eos = tokenizer.eos_token_id
        if eos is None:
            raise InvalidRequest(
                "append_eos is set but the tokenizer has no EOS token",
                code="no_eos_token",
                field="append_eos",
            )
        # A completion that already ends with EOS is not given a second one.
        if completion_ids[-1] != eos:
            completion_ids.append(eos)
            eos_appended = True
            if offsets is not None:
                end = offsets[-1][1]
                offsets.append((end, end))
            if mask is not None:
                mask = np.append(mask, np.int8(1))
    length = len(prompt_ids) + len(completion_ids)
    if length > limits.max_model_len:
        raise InvalidRequest(
            f"prompt ({len(prompt_ids)} tokens) + completion ({len(completion_ids)} tokens) = "
            f"{length} tokens; the model allows {limits.max_model_len}. Nothing is truncated: "
            "shorten the item",
            code="sequence_too_long",
            index=index,
            field=source,
        )
    return PreparedItem(prompt_ids, completion_ids, offsets, mask, eos_appended)
