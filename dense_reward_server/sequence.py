"""The one type of a sequence to score, shared by the request path, the engines and the harness.

A bottom module (imports nothing of the service) so that `rewards/` and `engines/` can both use
it without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ScoreInput:
    """One sequence to score: the prompt is context only, every completion token is scored."""

    prompt_ids: Sequence[int]
    completion_ids: Sequence[int]

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)
