"""A deterministic fake engine for the API-contract tests. Never used where correctness is
claimed (the vLLM and transformers engines are tested against each other for that)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from dense_reward_server.config import Settings
from dense_reward_server.engines.base import EngineInfo, EnginePair
from dense_reward_server.engines.factory import LoadedPair
from dense_reward_server.errors import EngineUnavailable
from dense_reward_server.sequence import ScoreInput


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

    def shutdown(self) -> None:
        return None


def fake_factory(
    vocab_size: int,
    delay_s: float = 0.0,
    *,
    baseline: bool = True,
    extra: Sequence[str] = (),
) -> tuple[EnginePair, object]:
    """A fake pair and the engine factory that hands it out; `baseline=False`: SFT only;
    `extra`: names of further baselines (salts 11, 13, ...)."""
    base = FakeEngine("base", 7, vocab_size, delay_s) if baseline else None
    extras = {
        name: FakeEngine(name, 11 + 2 * k, vocab_size, delay_s) for k, name in enumerate(extra)
    }
    pair = EnginePair(FakeEngine("sft", 3, vocab_size, delay_s), base, extras)

    def factory(_: Settings) -> LoadedPair:
        seconds = {engine.info.role: 0.0 for engine in pair.engines}
        return LoadedPair(pair, seconds)

    return pair, factory
