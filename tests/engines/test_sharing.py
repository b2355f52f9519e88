"""Primers: of the sequences that share a prompt, in flight in any requests, one primes and the
rest wait for it; a primer that fails or is cancelled hands over at once and fails nobody else."""

from __future__ import annotations

import asyncio

import pytest

from dense_reward_server.engines.sharing import Primers

PROMPT = (1, 2, 3)


class Scorer:
    """Records the order sequences start and end in; each waits until released."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.release: dict[int, asyncio.Future[None]] = {}

    async def score(self, index: int) -> None:
        self.log.append(f"start {index}")
        self.release[index] = asyncio.get_running_loop().create_future()
        await self.release[index]
        self.log.append(f"end {index}")


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_followers_wait_for_the_primer_then_read_the_cache() -> None:
    async def run() -> None:
        primers, scorer = Primers(), Scorer()
        primer = asyncio.create_task(primers.prime_or_wait(PROMPT, scorer.score, 0))
        await settle()
        follower = asyncio.create_task(primers.prime_or_wait(PROMPT, scorer.score, 1))
        other = asyncio.create_task(primers.prime_or_wait((9,), scorer.score, 2))
        await settle()
        assert scorer.log == ["start 0", "start 2"]  # another prompt does not wait
        scorer.release[0].set_result(None)
        assert await primer is True
        assert await follower is False  # primed by someone else: score it on the cache now
        scorer.release[2].set_result(None)
        assert await other is True

    asyncio.run(run())


@pytest.mark.parametrize("ending", ["cancelled", "failed"])
def test_a_primer_that_does_not_finish_hands_over(ending: str) -> None:
    async def run() -> None:
        primers, scorer = Primers(), Scorer()
        primer = asyncio.create_task(primers.prime_or_wait(PROMPT, scorer.score, 0))
        await settle()
        followers = [
            asyncio.create_task(primers.prime_or_wait(PROMPT, scorer.score, i)) for i in (1, 2)
        ]
        await settle()
        if ending == "cancelled":
            primer.cancel()
        else:
            scorer.release[0].set_exception(RuntimeError("engine error"))
        with pytest.raises(asyncio.CancelledError if ending == "cancelled" else RuntimeError):
            await primer
        await settle()
        assert scorer.log == ["start 0", "start 1"]  # one follower primes instead, at once
        scorer.release[1].set_result(None)
        assert [await f for f in followers] == [True, False]

    asyncio.run(run())
