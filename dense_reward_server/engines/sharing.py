"""Which sequences of a batch share a prompt: the unit both engines reuse prompt work over."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from dense_reward_server.sequence import ScoreInput


def prompt_groups(batch: Sequence[ScoreInput], share: bool = True) -> list[list[int]]:
    """Indices of `batch` grouped by identical prompt ids, groups and members in input order
    (`share` off: every sequence a group of its own).

    Not only a request's declared group: any items with equal prompts share (a trainer's flat
    batch of K samples per prompt is the common case).
    """
    if not share:
        return [[index] for index in range(len(batch))]
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, item in enumerate(batch):
        groups.setdefault(tuple(item.prompt_ids), []).append(index)
    return list(groups.values())


@dataclass(slots=True)
class Priming:
    """One primer in flight: `done` is set when it ends, `ok` when it put the prompt in cache."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    ok: bool = False


class Primers:
    """Prompts being put in an engine's prefix cache right now, by prompt token ids.

    Sequences scheduled in the same engine step do not read each other's cache, so of the
    sequences that share a prompt (in one request or in several in flight together) one goes
    first and the rest wait for it, then read the cache. A primer that fails or is cancelled
    releases its waiters at once and one of them primes instead: a waiter is never failed by
    another request, and waits for at most one sequence of its own prompt to be scored before
    its own (about what scoring it alone would take).
    """

    def __init__(self) -> None:
        self._priming: dict[tuple[int, ...], Priming] = {}

    async def prime_or_wait(
        self, prompt_ids: Sequence[int], score: Callable[[int], Awaitable[None]], index: int
    ) -> bool:
        """Score sequence `index` as the prompt's primer, or wait for the primer in flight.

        True: `index` was scored here (as the primer); False: another primer put the prompt
        in the cache and `index` is still to be scored (on the cache).
        """
        key = tuple(prompt_ids)
        while (running := self._priming.get(key)) is not None:
            await running.done.wait()
            if running.ok:
                return False
        mine = self._priming[key] = Priming()
        try:
            await score(index)
            mine.ok = True
        finally:
            del self._priming[key]
            mine.done.set()
        return True
