"""What a caller asks of the scoring service, free of HTTP (and light: no model libraries)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from dense_reward_server.rewards.items import ItemLike

# Per-token arrays a result may carry besides the rewards.
INCLUDE_OPTIONS = ("tokens", "offsets", "logprobs", "returns")


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """One scoring request; the API's request model maps onto it one to one."""

    items: Sequence[ItemLike]
    beta: float | None = None  # None: the server's default
    gamma: float = 1.0
    append_eos: bool = False
    include: Sequence[str] = ("logprobs",)
    tokenizer_fingerprint: str | None = None
    timeout_s: float | None = None
    delimiter: str | None = None
    group_baseline: Literal["mean", "leave_one_out"] | None = None
    base64: bool = False
