"""The ScoringEngine protocol and the engines the service scores with: SFT, base, and any
further baselines (the pessimistic reward takes the most likely of them per token)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
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
    extra: dict[str, list[np.ndarray]] = field(default_factory=dict)  # further baselines

    def baselines(self) -> dict[str, list[np.ndarray]]:
        """Every baseline's log-probs by name, `base` first."""
        return ({} if self.base is None else {"base": self.base}) | self.extra

    def sliced(self, start: int, end: int) -> PairLogprobs:
        return PairLogprobs(
            sft=self.sft[start:end],
            base=None if self.base is None else self.base[start:end],
            extra={name: lps[start:end] for name, lps in self.extra.items()},
        )


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
    """The SFT and base engines (and further baselines); scores every batch under every model
    at the same time."""

    def __init__(
        self,
        sft: ScoringEngine,
        base: ScoringEngine | None,
        extra: Mapping[str, ScoringEngine] | None = None,
    ) -> None:
        self.sft = sft
        self.base = base  # None: no baseline, log pi_base taken as 0
        self.extra = dict(extra or {})  # further baselines, by name

    @property
    def engines(self) -> list[ScoringEngine]:
        return [e for e in (self.sft, self.base, *self.extra.values()) if e is not None]

    def named(self) -> dict[str, ScoringEngine]:
        base = {} if self.base is None else {"base": self.base}
        return {"sft": self.sft} | base | self.extra

    async def score(self, batch: Sequence[ScoreInput], request_id: str) -> PairLogprobs:
        named = self.named()
        if len(named) == 1:
            sft_only = await _counted(self.sft, "sft", batch, f"{request_id}-sft")
            return PairLogprobs(sft=sft_only, base=None)
        # A TaskGroup cancels the siblings when one engine fails, so no orphan work is left.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = {
                    name: group.create_task(_counted(engine, name, batch, f"{request_id}-{name}"))
                    for name, engine in named.items()
                }
        except ExceptionGroup as errors:
            raise first_error(errors) from None
        results = {name: task.result() for name, task in tasks.items()}
        return PairLogprobs(sft=results.pop("sft"), base=results.pop("base", None), extra=results)

    async def check_health(self) -> None:
        for engine in self.engines:
            await engine.check_health()

    def shutdown(self) -> None:
        # Shut every engine down even if one fails to; the first failure is raised at the end.
        failure: BaseException | None = None
        for engine in self.engines:
            try:
                engine.shutdown()
            except BaseException as error:
                failure = failure or error
        if failure is not None:
            raise failure
