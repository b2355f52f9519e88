"""The step view: per-token rewards summed over reasoning steps (a process-reward view).

Steps come from a text delimiter or from explicit token spans. With a delimiter, the text is
cut after each occurrence (the delimiter ends its step), and each token belongs to the step
that contains its first character, so a token that straddles a delimiter goes to the step it
starts in. A step can then hold no token (reward 0, empty token span); it is still listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Step:
    token_span: Span
    char_span: Span | None
    reward: float
    scored_tokens: int

    def as_dict(self) -> dict[str, object]:
        return {
            "token_span": list(self.token_span),
            "char_span": None if self.char_span is None else list(self.char_span),
            "reward": self.reward,
            "scored_tokens": self.scored_tokens,
        }


def text_steps(text: str, delimiter: str) -> list[Span]:
    """Character spans of the steps: each ends just after a delimiter, the last at the end."""
    spans, start = [], 0
    while (found := text.find(delimiter, start)) != -1:
        end = found + len(delimiter)
        spans.append((start, end))
        start = end
    if start < len(text) or not spans:
        spans.append((start, len(text)))
    return spans


def tokens_per_step(offsets: Sequence[Span], char_spans: Sequence[Span]) -> list[Span]:
    """Token spans: a token goes to the step containing its first character.

    A zero-width token inside the text (a later byte of a multi-byte character) has no first
    character: it stays in the step of the token before it. Tokens at or past the end of the
    text (an appended EOS) go to the last step.
    """
    starts = np.asarray([start for start, _ in offsets], dtype=np.int64)
    step_ends = np.asarray([end for _, end in char_spans], dtype=np.int64)
    owner = np.minimum(np.searchsorted(step_ends, starts, side="right"), len(char_spans) - 1)
    text_end = step_ends[-1]
    for t, (start, end) in enumerate(offsets):
        if start >= text_end:
            owner[t] = len(char_spans) - 1
        elif start == end and t > 0:
            owner[t] = owner[t - 1]
    bounds = np.searchsorted(owner, np.arange(len(char_spans) + 1), side="left")
    return [(int(bounds[k]), int(bounds[k + 1])) for k in range(len(char_spans))]


def piece_offsets(pieces: Sequence[str]) -> list[Span]:
    """Offsets of token-id completions: each token's decoded text, laid end to end."""
    spans, position = [], 0
    for piece in pieces:
        spans.append((position, position + len(piece)))
        position += len(piece)
    return spans


def step_rewards(
    rewards: np.ndarray, token_spans: Sequence[Span], char_spans: Sequence[Span] | None
) -> list[Step]:
    """Sum of the scored (non-null) token rewards of each step."""
    steps = []
    for k, (start, end) in enumerate(token_spans):
        values = rewards[start:end]
        scored = values[np.isfinite(values)]
        steps.append(
            Step(
                token_span=(start, end),
                char_span=None if char_spans is None else char_spans[k],
                reward=float(np.sum(scored, dtype=np.float64)),
                scored_tokens=int(scored.size),
            )
        )
    return steps
