"""A deterministic fake engine for the API tier. Never used where correctness is claimed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from service.config import Settings
from service.engines.base import EngineInfo, EnginePair, ScoreInput
from service.engines.factory import LoadedPair
from service.errors import EngineUnavailable


class FakeEngine:
    """log p(token) = -(1 + (token + position * salt) % 5) / 4, a function of context position."""

    def __init__(self, role: str, salt: int, vocab_size: int, delay_s: float = 0.0) -> None:
        self.salt = salt
        self.delay_s = delay_s
        self.calls = 0
        self.cancelled = 0
        self.inflight = 0
        self.alive = True
        self._info = EngineInfo(
            role=role,
            model=f"fake-{role}",
            revision=None,
            backend="fake",
            engine_version="fake 0",
            dtype="float32",
            device="cpu",
            max_model_len=1024,
            vocab_size=vocab_size,
        )

    @property
    def info(self) -> EngineInfo:
        return self._info

    def expected(self, item: ScoreInput) -> np.ndarray:
        start = len(item.prompt_ids)
        values = [
            -(1 + (token + (start + j) * self.salt) % 5) / 4
            for j, token in enumerate(item.completion_ids)
        ]
        return np.asarray(values, dtype=np.float32)

    async def score(self, batch: Sequence[ScoreInput], request_id: str) -> list[np.ndarray]:
        self.calls += 1
        self.inflight += 1
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return [self.expected(item) for item in batch]
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.inflight -= 1

    async def check_health(self) -> None:
        if not self.alive:
            raise EngineUnavailable(f"{self._info.role} engine is not running")

    async def shutdown(self) -> None:
        return None


def fake_factory(vocab_size: int, delay_s: float = 0.0) -> tuple[EnginePair, object]:
    pair = EnginePair(
        FakeEngine("sft", 3, vocab_size, delay_s), FakeEngine("base", 7, vocab_size, delay_s)
    )

    def factory(_: Settings) -> LoadedPair:
        return LoadedPair(pair, {"sft": 0.0, "base": 0.0})

    return pair, factory
