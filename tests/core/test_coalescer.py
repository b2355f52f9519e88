"""The coalescer: a lone request goes at once, requests arriving while the engines are busy go
together, each gets its own share, and one request's timeout or failure is never another's.

The engine here is a recording function with a gate, so every order is forced, not timed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from dense_reward_server.core.coalescer import Coalescer
from dense_reward_server.engines.base import PairLogprobs
from dense_reward_server.sequence import ScoreInput

LONG = 3600.0  # a window that never expires within a test


class GatedEngine:
    """Scores token t as -t (sft) and -2t (base); each call waits until its gate opens."""

    def __init__(self, poison: int | None = None) -> None:
        self.calls: list[list[int]] = []  # the first completion token of each sequence, per call
        self.gates: list[asyncio.Event] = []
        self.cancelled = 0
        self.poison = poison  # a token that fails any call containing it

    async def score(self, batch: Sequence[ScoreInput], request_id: str) -> PairLogprobs:
        self.calls.append([s.completion_ids[0] for s in batch])
        gate = asyncio.Event()
        self.gates.append(gate)
        try:
            await gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if any(s.completion_ids[0] == self.poison for s in batch):
            raise RuntimeError("poisoned batch")
        sft = [-np.float32(s.completion_ids) for s in batch]
        return PairLogprobs(sft=sft, base=[2 * x for x in sft])

    async def open(self, call: int) -> None:
        while len(self.gates) <= call:
            await asyncio.sleep(0)
        self.gates[call].set()


def seq(token: int) -> ScoreInput:
    return ScoreInput([1, 2], [token, token + 1])


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def busy(engine: GatedEngine, window_s: float) -> tuple[Coalescer, asyncio.Task[Any]]:
    """A coalescer whose engine is busy with a first request (token 10), held at its gate."""
    coalescer = Coalescer(engine.score, window_s)
    first = asyncio.create_task(coalescer.score([seq(10)], "a"))
    await settle()
    return coalescer, first


def test_a_lone_request_goes_at_once_and_later_ones_go_together() -> None:
    async def run() -> None:
        engine = GatedEngine()
        coalescer, first = await busy(engine, LONG)
        assert engine.calls == [[10]]  # no window waited for
        rest = [
            asyncio.create_task(coalescer.score([seq(t), seq(t + 50)], f"r{t}")) for t in (20, 30)
        ]
        await settle()
        assert engine.calls == [[10]]  # busy: the others wait
        await engine.open(0)
        assert (await first).sft[0].tolist() == [-10, -11]
        await settle()
        assert engine.calls == [[10], [20, 70, 30, 80]]  # the two requests as one batch
        await engine.open(1)
        second, third = await rest[0], await rest[1]
        assert [x.tolist() for x in second.sft] == [[-20, -21], [-70, -71]]
        assert [x.tolist() for x in third.base or []] == [[-60, -62], [-160, -162]]

    asyncio.run(run())


def test_the_window_sends_waiting_requests_while_the_engines_are_still_busy() -> None:
    async def run() -> None:
        engine = GatedEngine()
        coalescer, first = await busy(engine, 0.0)
        second = asyncio.create_task(coalescer.score([seq(20)], "b"))
        while len(engine.calls) < 2:  # sent after the window, the first still unanswered
            await asyncio.sleep(0.001)
        assert not first.done()
        await engine.open(1)
        await engine.open(0)
        assert (await second).sft[0].tolist() == [-20, -21]
        await first

    asyncio.run(run())


def test_a_request_that_leaves_is_dropped_and_an_abandoned_batch_is_cancelled() -> None:
    async def run() -> None:
        engine = GatedEngine()
        coalescer, first = await busy(engine, LONG)
        waiting = asyncio.create_task(coalescer.score([seq(20)], "gone"))
        kept = asyncio.create_task(coalescer.score([seq(30)], "kept"))
        await settle()
        waiting.cancel()  # left before its batch went: never sent
        await settle()
        await engine.open(0)
        await first
        await settle()
        assert engine.calls == [[10], [30]]
        kept.cancel()  # the only request of a batch in flight: the engine call is cancelled
        await settle()
        assert engine.cancelled == 1
        with pytest.raises(asyncio.CancelledError):
            await kept

    asyncio.run(run())


def test_a_failed_batch_is_scored_again_request_by_request() -> None:
    async def run() -> None:
        engine = GatedEngine(poison=66)
        coalescer, first = await busy(engine, LONG)
        good = asyncio.create_task(coalescer.score([seq(20)], "good"))
        bad = asyncio.create_task(coalescer.score([seq(66)], "bad"))
        await settle()
        await engine.open(0)
        await first
        await engine.open(1)  # the merged batch fails on the poisoned sequence
        await engine.open(2)
        await engine.open(3)
        assert (await good).sft[0].tolist() == [-20, -21]
        with pytest.raises(RuntimeError, match="poisoned"):
            await bad
        assert engine.calls == [[10], [20, 66], [20], [66]]

    asyncio.run(run())
