"""Bounded admission: the tokens of all admitted requests never exceed a limit.

vLLM's scheduler is the only queue; in front of it we refuse (429) rather than wait.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dense_reward_server import metrics
from dense_reward_server.errors import Overloaded


class TokenBudget:
    """In-flight token accounting. Single event loop: no lock needed between check and add."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight_tokens = 0
        self.inflight_requests = 0

    @contextmanager
    def admit(self, tokens: int) -> Iterator[None]:
        if self.inflight_tokens + tokens > self.limit:
            raise Overloaded(
                f"{self.inflight_tokens} tokens are being scored; {tokens} more would pass the "
                f"limit of {self.limit} (DRS_MAX_INFLIGHT_TOKENS): retry shortly",
                retry_after_s=1,
                code="inflight_tokens_limit",
            )
        self._move(tokens, 1)
        try:
            yield
        finally:
            self._move(-tokens, -1)

    def _move(self, tokens: int, requests: int) -> None:
        self.inflight_tokens += tokens
        self.inflight_requests += requests
        metrics.INFLIGHT_TOKENS.set(self.inflight_tokens)
        metrics.INFLIGHT_REQUESTS.set(self.inflight_requests)
