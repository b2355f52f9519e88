"""Concurrent requests scored as one engine batch: what one-sample traffic needs.

Trainers (verl's reward loop, OpenRLHF's remote reward model, slime, AReaL) send each sample in
its own request, a whole batch in flight. Passed to the engines one by one, such a burst reaches
vLLM a few sequences per engine step, and the K samples of a prompt rarely meet in one batch, so
their prompt is computed K times. Here a request goes to the engines at once when nothing is
being scored (a lone request waits for nothing); while a batch is being scored, arriving requests
wait at most `window_s` and go together, so the engines see one batch: a group's prompt is shared
however its samples arrive (`engines.sharing.prompt_groups`), and vLLM's steps are full.

A request that leaves (timeout, disconnect) is taken out of its batch if the batch has not gone
yet; a batch whose every request left is cancelled, which aborts its engine work. A batch of
several requests that fails is scored again request by request, so that one request's failure is
never another's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from dense_reward_server import metrics
from dense_reward_server.engines.base import PairLogprobs
from dense_reward_server.sequence import ScoreInput

logger = logging.getLogger(__name__)

ScoreFn = Callable[[Sequence[ScoreInput], str], Awaitable[PairLogprobs]]


@dataclass(eq=False, slots=True)
class Waiting:
    """One request's sequences, waiting for (or part of) a batch."""

    batch: Sequence[ScoreInput]
    request_id: str
    future: asyncio.Future[PairLogprobs]
    task: asyncio.Task[None] | None = field(default=None)  # the batch it went with


def split(merged: PairLogprobs, sizes: Sequence[int]) -> list[PairLogprobs]:
    """Each request's share of a merged batch's results, in the order they were merged."""
    bounds = list(itertools.accumulate(sizes, initial=0))
    return [merged.sliced(start, end) for start, end in itertools.pairwise(bounds)]


class Coalescer:
    """Merges the requests that arrive while the engines are busy into one batch."""

    def __init__(self, score: ScoreFn, window_s: float | None) -> None:
        """`window_s` None: waiting requests go only when the running batch ends (an engine
        that scores one batch at a time gains nothing from sending earlier)."""
        self._score = score
        self._window_s = window_s
        self._pending: list[Waiting] = []
        self._timer: asyncio.TimerHandle | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._members: dict[asyncio.Task[None], list[Waiting]] = {}
        self._batches = itertools.count()

    async def score(self, batch: Sequence[ScoreInput], request_id: str) -> PairLogprobs:
        """Both models' log-probs of `batch`, scored together with whatever else is waiting."""
        waiting = Waiting(batch, request_id, asyncio.get_running_loop().create_future())
        self._pending.append(waiting)
        if not self._inflight:
            self._flush()
        elif self._timer is None and self._window_s is not None:
            self._timer = asyncio.get_running_loop().call_later(self._window_s, self._flush)
        try:
            return await waiting.future
        except asyncio.CancelledError:
            self._leave(waiting)
            raise

    def _leave(self, waiting: Waiting) -> None:
        """A request gone before its answer: out of the queue, or its batch cancelled when no
        request of it is left."""
        if waiting in self._pending:
            self._pending.remove(waiting)
            return
        task = waiting.task
        if task is not None and all(w.future.done() for w in self._members.get(task, [])):
            task.cancel()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        members, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._run(members))
        for waiting in members:
            waiting.task = task
        self._members[task] = members
        self._inflight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._members.pop(task, None)
        # Whatever arrived meanwhile goes now: the engines have room again.
        if self._pending and not self._inflight:
            self._flush()

    async def _run(self, members: list[Waiting]) -> None:
        metrics.BATCH_REQUESTS.observe(len(members))
        if len(members) == 1:
            await self._alone(members[0])
            return
        merged = [item for waiting in members for item in waiting.batch]
        request_id = f"batch{next(self._batches)}"
        logger.debug(
            "scoring requests together",
            extra={"batch": request_id, "requests": [w.request_id for w in members]},
        )
        try:
            result = await self._score(merged, request_id)
        except Exception:
            # One request's failure must not be the others': each alone, so it fails alone.
            logger.warning("a merged batch failed; scoring its requests one by one")
            async with asyncio.TaskGroup() as group:
                for waiting in members:
                    if not waiting.future.done():
                        group.create_task(self._alone(waiting))
            return
        for waiting, part in zip(
            members, split(result, [len(w.batch) for w in members]), strict=True
        ):
            if not waiting.future.done():
                waiting.future.set_result(part)

    async def _alone(self, waiting: Waiting) -> None:
        try:
            result = await self._score(waiting.batch, waiting.request_id)
        except Exception as error:
            if not waiting.future.done():
                waiting.future.set_exception(error)
            return
        if not waiting.future.done():
            waiting.future.set_result(result)
