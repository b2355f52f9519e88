"""Degenerate edits of an expert demonstration, off the policy's support.

A reward that a policy can game prefers some cheap corruption of a good answer to the answer
itself: against `sft-half` the demo policy learned to repeat a number, each repeat earning
about +4. Each edit here is a token-id list built from the expert's ids (EOS included where
the edit keeps an ending), so the server scores exactly what is shown.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

EDITS = (
    "repeat_token",  # one token of the answer written 4 more times in place
    "repeat_span",  # the answer's second half written again
    "extend_best",  # the answer's best-rewarded token appended 4 times before the EOS
    "truncate",  # the first half, then EOS
    "drop_eos",  # the whole answer, never ended
    "move_eos",  # EOS inside the answer, the rest after it
    "shuffle",  # the answer's tokens in a random order
    "insert_junk",  # 3 random vocabulary tokens at random places
)
REPEATS = 4
JUNK = 3

Edit = Callable[["Demo", random.Random], list[int] | None]


class Demo:
    """An expert answer as scored: its token ids (ending with EOS) and per-token rewards."""

    def __init__(self, ids: Sequence[int], rewards: Sequence[float], eos: int, vocab: int):
        if not ids or ids[-1] != eos:
            raise ValueError("an expert answer is scored with its EOS as the last token")
        self.ids = list(ids)
        self.body = self.ids[:-1]  # without the EOS
        self.rewards = list(rewards)
        self.eos = eos
        self.vocab = vocab


def repeat_token(demo: Demo, rng: random.Random) -> list[int] | None:
    if not demo.body:
        return None
    at = rng.randrange(len(demo.body))
    return [*demo.body[: at + 1], *[demo.body[at]] * REPEATS, *demo.body[at + 1 :], demo.eos]


def repeat_span(demo: Demo, rng: random.Random) -> list[int] | None:
    if len(demo.body) < 2:
        return None
    half = demo.body[len(demo.body) // 2 :]
    return [*demo.body, *half, demo.eos]


def extend_best(demo: Demo, rng: random.Random) -> list[int] | None:
    if not demo.body:
        return None
    best = max(range(len(demo.body)), key=lambda t: demo.rewards[t])
    return [*demo.body, *[demo.body[best]] * REPEATS, demo.eos]


def truncate(demo: Demo, rng: random.Random) -> list[int] | None:
    if len(demo.body) < 2:
        return None
    return [*demo.body[: len(demo.body) // 2], demo.eos]


def drop_eos(demo: Demo, rng: random.Random) -> list[int] | None:
    return list(demo.body) if demo.body else None


def move_eos(demo: Demo, rng: random.Random) -> list[int] | None:
    if len(demo.body) < 2:
        return None
    at = rng.randrange(1, len(demo.body))
    return [*demo.body[:at], demo.eos, *demo.body[at:], demo.eos]


def shuffle(demo: Demo, rng: random.Random) -> list[int] | None:
    if len(set(demo.body)) < 2:
        return None
    body = list(demo.body)
    while body == demo.body:
        rng.shuffle(body)
    return [*body, demo.eos]


def insert_junk(demo: Demo, rng: random.Random) -> list[int] | None:
    body = list(demo.body)
    for _ in range(JUNK):
        junk = rng.randrange(demo.vocab)
        while junk == demo.eos:
            junk = rng.randrange(demo.vocab)
        body.insert(rng.randrange(len(body) + 1), junk)
    return [*body, demo.eos]


BY_NAME: dict[str, Edit] = {
    "repeat_token": repeat_token,
    "repeat_span": repeat_span,
    "extend_best": extend_best,
    "truncate": truncate,
    "drop_eos": drop_eos,
    "move_eos": move_eos,
    "shuffle": shuffle,
    "insert_junk": insert_junk,
}
assert tuple(BY_NAME) == EDITS


def edits_of(demo: Demo, rng: random.Random) -> dict[str, list[int]]:
    """Every edit that applies to this answer (a one-token answer has no half to repeat)."""
    made = {name: BY_NAME[name](demo, rng) for name in EDITS}
    return {name: ids for name, ids in made.items() if ids is not None}
