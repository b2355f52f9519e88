"""Turn request items into token sequences, refusing every bad input with its index and field.

An item is one completion, or a group (one prompt, several completions: the prompt is
tokenized once). Nothing is truncated or dropped: what does not fit is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from dense_reward_server.errors import InvalidRequest, PayloadTooLarge
from dense_reward_server.rewards.tokenization import ChatTemplateError, Offsets, RewardTokenizer
from dense_reward_server.sequence import ScoreInput

PROMPT_FIELDS = ("prompt", "messages", "prompt_token_ids")
COMPLETION_FIELDS = ("completion", "completion_token_ids", "completions")


class CompletionLike(Protocol):
    """One completion: text or token ids, optional mask and explicit step spans."""

    @property
    def completion(self) -> str | None: ...
    @property
    def completion_token_ids(self) -> Sequence[int] | None: ...
    @property
    def mask(self) -> Sequence[int] | None: ...
    @property
    def step_spans(self) -> Sequence[tuple[int, int]] | None: ...
    @property
    def id(self) -> str | None: ...


class ItemLike(CompletionLike, Protocol):
    """What an item must carry; the API's request model satisfies it."""

    @property
    def prompt(self) -> str | None: ...
    @property
    def messages(self) -> Sequence[Any] | None: ...
    @property
    def prompt_token_ids(self) -> Sequence[int] | None: ...
    @property
    def completions(self) -> Sequence[Any] | None: ...


@dataclass(frozen=True, slots=True)
class Limits:
    max_model_len: int
    max_tokens_per_request: int
    max_group_size: int = 64
    max_sequences: int = 1 << 30


@dataclass(frozen=True, slots=True)
class RenderedItem:
    """A prompt as a trainer rendered it (OpenRLHF's queries) and its completion text: the
    prompt may already hold the BOS text (`RewardTokenizer.encode_prompt(rendered=True)`)."""

    prompt: str
    completion: str
    messages: None = None
    prompt_token_ids: None = None
    completion_token_ids: None = None
    completions: None = None
    mask: None = None
    step_spans: None = None
    id: None = None


@dataclass(frozen=True, slots=True)
class TextCompletion:
    """A group member given as a bare string."""

    completion: str
    completion_token_ids: None = None
    mask: None = None
    step_spans: None = None
    id: None = None


@dataclass(frozen=True, slots=True)
class IdsCompletion:
    """A group member given as a bare list of token ids."""

    completion_token_ids: Sequence[int]
    completion: None = None
    mask: None = None
    step_spans: None = None
    id: None = None


@dataclass(frozen=True, slots=True)
class PreparedSequence:
    """One completion: the tokens the engines score, and what its result needs besides.

    `offsets` and `text` only for text completions.
    """

    tokens: ScoreInput
    offsets: Offsets | None
    text: str | None
    mask: np.ndarray | None
    eos_appended: bool
    step_spans: list[tuple[int, int]] | None = None
    id: str | None = None

    @property
    def completion_ids(self) -> Sequence[int]:
        return self.tokens.completion_ids


@dataclass(slots=True)
class PreparedItem:
    """One request item: a single sequence, or a group sharing one prompt."""

    index: int
    id: str | None
    sequences: list[PreparedSequence]
    is_group: bool = False


def prepare_items(
    items: Sequence[ItemLike], tokenizer: RewardTokenizer, limits: Limits, *, append_eos: bool
) -> list[PreparedItem]:
    """Tokenize and check every item; raise on the first bad one (its index and field)."""
    # Counted before any tokenizing: a request far over the limit costs nothing.
    sequences = sum(len(item.completions) if item.completions else 1 for item in items)
    if sequences > limits.max_sequences:
        raise PayloadTooLarge(
            f"the request has {sequences} completions; the limit is {limits.max_sequences} "
            "(DRS_MAX_ITEMS_PER_REQUEST counts every completion of a group): split it",
            code="too_many_items",
            field="items",
        )
    prepared = [_prepare(i, item, tokenizer, limits, append_eos) for i, item in enumerate(items)]
    total = sum(s.tokens.num_tokens for p in prepared for s in p.sequences)
    if total > limits.max_tokens_per_request:
        raise PayloadTooLarge(
            f"the request has {total} tokens; the limit is {limits.max_tokens_per_request} "
            "(DRS_MAX_TOKENS_PER_REQUEST): split it into smaller requests",
            code="too_many_tokens",
        )
    return prepared


def _prepare(
    index: int, item: ItemLike, tokenizer: RewardTokenizer, limits: Limits, append_eos: bool
) -> PreparedItem:
    prompt_ids = _prompt_ids(item, tokenizer, index)
    source = _one_of(item, COMPLETION_FIELDS, index)
    if source != "completions":
        sequence = _sequence(prompt_ids, item, "", tokenizer, limits, append_eos, index)
        return PreparedItem(index, item.id, [sequence])
    members = list(item.completions or [])
    if not members:
        raise InvalidRequest(
            "the group has no completions", code="empty_group", index=index, field="completions"
        )
    if len(members) > limits.max_group_size:
        raise PayloadTooLarge(
            f"the group has {len(members)} completions; the limit is {limits.max_group_size} "
            "(DRS_MAX_GROUP_SIZE)",
            code="group_too_large",
            index=index,
            field="completions",
        )
    sequences = [
        _sequence(
            prompt_ids, _member(m), f"completions[{j}].", tokenizer, limits, append_eos, index
        )
        for j, m in enumerate(members)
    ]
    return PreparedItem(index, item.id, sequences, is_group=True)


def _member(member: Any) -> CompletionLike:
    if isinstance(member, str):
        return TextCompletion(member)
    if isinstance(member, list):
        return IdsCompletion(member)
    return member  # type: ignore[no-any-return]


def _one_of(item: Any, names: Sequence[str], index: int, prefix: str = "") -> str:
    present = [name for name in names if getattr(item, name, None) is not None]
    if not present:
        raise InvalidRequest(
            f"{prefix or 'item '}needs one of {', '.join(names)}",
            code="missing_field",
            index=index,
            field=prefix + names[0],
        )
    if len(present) > 1:
        raise InvalidRequest(
            f"{prefix or 'item '}has both {present[0]} and {present[1]}; give exactly one",
            code="conflicting_fields",
            index=index,
            field=prefix + present[1],
        )
    return present[0]


def _check_ids(ids: Sequence[int], tokenizer: RewardTokenizer, index: int, name: str) -> None:
    for position, token in enumerate(ids):
        if not 0 <= token < tokenizer.vocab_size:
            raise InvalidRequest(
                f"{name}[{position}] = {token} is not a token id of this tokenizer "
                f"(0..{tokenizer.vocab_size - 1})",
                code="token_out_of_vocabulary",
                index=index,
                field=name,
            )


def _prompt_ids(item: ItemLike, tokenizer: RewardTokenizer, index: int) -> list[int]:
    source = _one_of(item, PROMPT_FIELDS, index)
    if source == "prompt":
        ids = tokenizer.encode_prompt(str(item.prompt), rendered=isinstance(item, RenderedItem))
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


def _as_dicts(messages: Sequence[Any]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) if hasattr(m, "model_dump") else m for m in messages]


def _sequence(
    prompt_ids: list[int],
    spec: CompletionLike,
    prefix: str,
    tokenizer: RewardTokenizer,
    limits: Limits,
    append_eos: bool,
    index: int,
) -> PreparedSequence:
    source = prefix + _one_of(spec, COMPLETION_FIELDS[:2], index, prefix)
    text, offsets = None, None
    if spec.completion is not None:
        text = spec.completion
        ids, offsets = tokenizer.encode_completion(text)
    else:
        ids = list(spec.completion_token_ids or [])
        _check_ids(ids, tokenizer, index, source)
    if not ids:
        raise InvalidRequest(
            "the completion is empty: there is nothing to score",
            code="empty_completion",
            index=index,
            field=source,
        )
    mask = _mask(spec.mask, len(ids), index, prefix)
    spans = _spans(spec.step_spans, len(ids), index, prefix)
    eos_appended = False
    if append_eos:
        eos_appended = _append_eos(ids, tokenizer, index)
        if eos_appended:
            if offsets is not None:
                offsets.append((offsets[-1][1], offsets[-1][1]))
            if mask is not None:
                mask = np.append(mask, np.int8(1))
    length = len(prompt_ids) + len(ids)
    if length > limits.max_model_len:
        raise InvalidRequest(
            f"prompt ({len(prompt_ids)} tokens) + completion ({len(ids)} tokens) = {length} "
            f"tokens; the model allows {limits.max_model_len}. Nothing is truncated: shorten "
            "the item",
            code="sequence_too_long",
            index=index,
            field=source,
        )
    tokens = ScoreInput(prompt_ids, ids)
    return PreparedSequence(tokens, offsets, text, mask, eos_appended, spans, spec.id)


def _append_eos(ids: list[int], tokenizer: RewardTokenizer, index: int) -> bool:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise InvalidRequest(
            "append_eos is set but the tokenizer has no EOS token",
            code="no_eos_token",
            field="append_eos",
        )
    if ids[-1] == eos:  # a completion that already ends with EOS is not given a second one
        return False
    ids.append(eos)
    return True


def _mask(mask: Sequence[int] | None, count: int, index: int, prefix: str) -> np.ndarray | None:
    if mask is None:
        return None
    if len(mask) != count:
        raise InvalidRequest(
            f"mask has {len(mask)} entries but the completion has {count} tokens",
            code="mask_length_mismatch",
            index=index,
            field=prefix + "mask",
        )
    return np.asarray(mask, dtype=np.int8)


def _spans(
    spans: Sequence[tuple[int, int]] | None, count: int, index: int, prefix: str
) -> list[tuple[int, int]] | None:
    """Explicit step spans: half-open token ranges, in order, inside the completion."""
    if spans is None:
        return None
    previous_end = 0
    for k, (start, end) in enumerate(spans):
        problem = None
        if not 0 <= start < end <= count:
            problem = f"step_spans[{k}] = [{start}, {end}] is empty or leaves the completion "
            problem += f"(0..{count})"
        elif start < previous_end:
            problem = f"step_spans[{k}] = [{start}, {end}] overlaps or precedes the step before"
        if problem:
            raise InvalidRequest(
                problem, code="invalid_step_spans", index=index, field=prefix + "step_spans"
            )
        previous_end = end
    return [(int(a), int(b)) for a, b in spans]
