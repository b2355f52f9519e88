"""The request's shapes as typed dicts, for a trainer's type checker; the server validates them
(SPEC section 2) and answers a wrong item with a 4xx naming its index.

An item holds exactly one of `prompt` / `messages` / `prompt_token_ids`, and exactly one of
`completion` / `completion_token_ids` / `completions` (a group: one prompt, several answers).
"""

from __future__ import annotations

from typing import Literal, TypedDict


class ChatMessage(TypedDict, total=False):
    role: str
    content: str | None


class GroupCompletion(TypedDict, total=False):
    completion: str
    completion_token_ids: list[int]
    mask: list[Literal[0, 1]]
    step_spans: list[tuple[int, int]]
    id: str


class RewardItem(TypedDict, total=False):
    prompt: str
    messages: list[ChatMessage]
    prompt_token_ids: list[int]
    completion: str
    completion_token_ids: list[int]
    completions: list[str | list[int] | GroupCompletion]
    mask: list[Literal[0, 1]]
    step_spans: list[tuple[int, int]]
    id: str


# Per-token arrays a result may carry besides the rewards (the server's schema uses this one).
# `baselines`: every loaded baseline's log-probs and the reference the reward used.
Include = Literal["tokens", "offsets", "logprobs", "returns", "baselines"]
