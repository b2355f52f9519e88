"""The ScoringEngine protocol and the pair of engines (SFT, base) the service scores with."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from dense_reward_server import metrics
from dense_reward_server.sequence import ScoreInput


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What /v1/models says about one engine."""

    role: str
    model: str
    revision: str | None
    backend: str
    engine_version: str
    dtype: str
    device: str
    max_model_len: int
    vocab_size: int
    prefix_sharing: bool = False
    block_size: int | None = None  # vLLM KV-cache block: the unit of prefix sharing
    extra: dict[str, object] = field(default_factory=dict)


class ScoringEngine(Protocol):
    """Scores completion tokens under one model. Implementations never see HTTP."""

    @property
    def info(self) -> EngineInfo: ...

    async def score(self, batch: Sequence[ScoreInput], request_id: str) -> list[np.ndarray]:
        """Return, per input, a float32 array of log pi(completion_j | prompt, completion_<j).

        Cancelling the call aborts the engine work it started.
        """
        ...

    async def check_health(self) -> None:
        """Raise if the engine cannot answer (dead process, broken device)."""
        ...

    def shutdown(self) -> None:
        """Release the model and any child processes. Idempotent; blocking and loop-free, so
        start-up can release what it started from anywhere (a failed start, a lifespan)."""
        ...


@dataclass(frozen=True, slots=True)
class PairLogprobs:
    sft: list[np.ndarray]
    base: list[np.ndarray] | None  # None: no base engine (no baseline)


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The first real failure inside (possibly nested) task-group errors."""
    first = group.exceptions[0]
    return first_error(first) if isinstance(first, BaseExceptionGroup) else first


async def _counted(
    engine: ScoringEngine, model: str, batch: Sequence[ScoreInput], request_id: str
) -> list[np.ndarray]:
    try:
        return await engine.score(batch, request_id)
    except Exception:  # cancellation is a BaseException: not an engine error
        metrics.ENGINE_ERRORS.labels(model=model).inc()
        raise


class EnginePair:
    """The SFT and base engines; scores every batch under both models at the same time."""

    def __init__(self, sft: ScoringEngine, base: ScoringEngine | None) -> None:
        self.sft = sft
        self.base = base  # None: no baseline, log pi_base taken as 0

    @property
    def engines(self) -> list[ScoringEngine]:
        return [self.sft] if self.base is None else [self.sft, self.base]

    async def score(self, batch: Sequence[ScoreInput], request_id: str) -> PairLogprobs:
        if self.base is None:
            sft_only = await _counted(self.sft, "sft", batch, f"{request_id}-sft")
            return PairLogprobs(sft=sft_only, base=None)
        # A TaskGroup cancels the sibling when one engine fails, so no orphan work is left.
        try:
            async with asyncio.TaskGroup() as group:
                sft = group.create_task(_counted(self.sft, "sft", batch, f"{request_id}-sft"))
                base = group.create_task(_counted(self.base, "base", batch, f"{request_id}-base"))
        except ExceptionGroup as errors:
            raise first_error(errors) from None
        return PairLogprobs(sft=sft.result(), base=base.result())

    async def check_health(self) -> None:
        for engine in self.engines:
            await engine.check_health()

    def shutdown(self) -> None:
        # Shut both down even if the first one fails to.
        try:
            self.sft.shutdown()
        finally:
            if self.base is not None:
                self.base.shutdown()
