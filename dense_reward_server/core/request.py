"""What a caller asks of the scoring service, free of HTTP (and light: no model libraries).

Only what scoring needs: how the answer is shown (arrays, steps, group scores, encoding) is the
API's business (`dense_reward_server.api.wire`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dense_reward_server.rewards.items import ItemLike


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """One scoring request."""

    items: Sequence[ItemLike]
    beta: float | None = None  # None: the server's default
    returns_gamma: float | None = None  # the discount of returns-to-go; None: no returns
    append_eos: bool = False
    tokenizer_fingerprint: str | None = None
    timeout_s: float | None = None
    # The reward fields the request set (null included: "off"); the rest are the server's
    # defaults of the same names (`baselines` <- reward_baselines, the others alike).
    reward: Mapping[str, Any] = field(default_factory=dict)
