"""Readiness beyond "loaded": engine liveness and a canary score.

- Engine faults: every `health_interval_s` the engines are asked whether they are alive; a dead
  engine turns /ready 503 and (by default) stops the process with a non-zero status so the
  orchestrator restarts it.
- Canary: after loading, a fixed item is scored through both engines and its log-probs kept;
  every `canary_interval_s` it is scored again. A different answer (a broken device, a swapped
  model) turns /ready 503; no answer within `canary_timeout_s` counts as an engine fault.

Draining is the lifecycle's (`dense_reward_server.core.lifecycle`), not a health check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dense_reward_server.config import Settings
from dense_reward_server.engines.base import EnginePair, PairLogprobs
from dense_reward_server.errors import NotReady, ServiceError
from dense_reward_server.rewards.tokenization import RewardTokenizer
from dense_reward_server.sequence import ScoreInput

logger = logging.getLogger(__name__)

CANARY_PROMPT = "Canary: the reward service checks that its engines still agree with themselves."
CANARY_COMPLETION = " 1 2 3 4 5, and then the end."
# The start-up canary (the first request a fresh engine sees) may take this long.
STARTUP_CANARY_TIMEOUT_S = 300.0


@dataclass
class HealthState:
    engine_failure: str | None = None
    canary_failure: str | None = None

    def problem(self) -> ServiceError | None:
        if self.engine_failure:
            return NotReady(self.engine_failure, code="engine_unavailable")
        if self.canary_failure:
            return NotReady(self.canary_failure, code="canary_failed")
        return None


def canary_input(tokenizer: RewardTokenizer) -> ScoreInput:
    return ScoreInput(
        tokenizer.encode_prompt(CANARY_PROMPT), tokenizer.encode_completion(CANARY_COMPLETION)[0]
    )


class HealthMonitor:
    """Background checks that keep `state` current.

    `on_change` is called whenever the state may have changed (the lifecycle republishes
    readiness); `on_fatal` when an engine died and the settings say to stop the process.
    """

    def __init__(
        self,
        engines: EnginePair,
        tokenizer: RewardTokenizer,
        settings: Settings,
        on_change: Callable[[], None],
        on_fatal: Callable[[str], None],
    ) -> None:
        self.engines = engines
        self.settings = settings
        self.on_change = on_change
        self.on_fatal = on_fatal
        self.state = HealthState()
        self.canary = canary_input(tokenizer)
        self.reference: PairLogprobs | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Record the canary's answer, then watch in the background."""
        # The first pass through a fresh engine also warms it up (oneDNN primitives on CPU,
        # compilation on GPU) and may take far longer than a periodic canary: bound it by the
        # start-up budget, not by canary_timeout_s (a slow start once failed CI that way).
        timeout = max(self.settings.canary_timeout_s, STARTUP_CANARY_TIMEOUT_S)
        self.reference = await self._score_canary(timeout)
        self._task = asyncio.create_task(self._watch(), name="health-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _score_canary(self, timeout_s: float | None = None) -> PairLogprobs:
        async with asyncio.timeout(timeout_s or self.settings.canary_timeout_s):
            return await self.engines.score([self.canary], "canary")

    async def _watch(self) -> None:
        elapsed = 0.0
        while True:
            await asyncio.sleep(self.settings.health_interval_s)
            elapsed += self.settings.health_interval_s
            await self.check_engines()
            if elapsed >= self.settings.canary_interval_s:
                elapsed = 0.0
                await self.check_canary()

    async def check_engines(self) -> None:
        try:
            await self.engines.check_health()
        except Exception as error:  # any failure to answer is a failure
            self.fail(f"an engine is not running: {error}")

    async def check_canary(self) -> None:
        # A slow or wrong canary makes the server unready, not dead: it may recover (a
        # canary queued behind a huge batch); a dead engine process is what stops it.
        try:
            answer = await self._score_canary()
        except TimeoutError:
            failure: str | None = (
                f"the canary got no answer within {self.settings.canary_timeout_s:g} s"
            )
        except Exception as error:
            failure = f"the canary failed: {error}"
        else:
            failure = self._compare(answer)
        if failure and failure != self.state.canary_failure:
            logger.error("canary mismatch", extra={"detail": failure})
        elif self.state.canary_failure and not failure:
            logger.info("canary agrees again")
        self.state.canary_failure = failure
        self.on_change()

    def _compare(self, answer: PairLogprobs) -> str | None:
        assert self.reference is not None
        # Every engine: the SFT model, base and each extra baseline (a swapped checkpoint
        # behind any of them changes the rewards of the requests that pick it).
        before = self.reference.baselines()
        pairs = [("sft", answer.sft[0], self.reference.sft[0])]
        pairs += [(name, now[0], before[name][0]) for name, now in answer.baselines().items()]
        for model, now, then in pairs:
            difference = float(np.max(np.abs(now - then))) if np.all(np.isfinite(now)) else np.inf
            if difference > self.settings.canary_tolerance:
                return (
                    f"the {model} engine's canary log-probs moved by {difference:.3g} "
                    f"(tolerance {self.settings.canary_tolerance:g}) since start-up"
                )
        return None

    def fail(self, reason: str) -> None:
        if self.state.engine_failure is None:
            logger.error("engine failure", extra={"detail": reason})
            self.state.engine_failure = reason
            self.on_change()
            if self.settings.exit_on_engine_failure:
                self.on_fatal(reason)
