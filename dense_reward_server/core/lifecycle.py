"""One owner of the service's life: load, start, ready or not (and why), drain, stop.

The server runner builds it first and hands it to the app (which keeps only this object, as
`app.state.lifecycle`) and to uvicorn: it asks it to drain on SIGTERM and stops the process when
`failure` is set (a dead engine). It alone sets the ready gauge, from the same answer `/ready`
gives. Three separate questions, three answers: start-up (the port opens only after `start()`
returns), liveness (the process answers at all: `/health`), readiness (`readiness()`: loaded,
not draining, engines alive, canary agreeing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import Enum

from dense_reward_server import metrics
from dense_reward_server.config import Settings
from dense_reward_server.core.health import HealthMonitor
from dense_reward_server.core.runtime import EngineFactory, load_runtime
from dense_reward_server.core.scoring import ScoringService
from dense_reward_server.engines.factory import load_engine_pair
from dense_reward_server.errors import NotReady, ServiceError, StartupError

logger = logging.getLogger(__name__)


class Phase(Enum):
    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"  # start-up failed


class Lifecycle:
    def __init__(
        self, settings: Settings, engine_factory: EngineFactory = load_engine_pair
    ) -> None:
        self.settings = settings
        self._engine_factory = engine_factory
        self.phase = Phase.STARTING
        self._service: ScoringService | None = None
        self._monitor: HealthMonitor | None = None
        # Why the process must stop (an engine died and the settings say stop); the server
        # runner watches it and exits 1.
        self.failure: str | None = None

    async def start(self) -> None:
        """Load both engines, record the canary, start the health checks.

        Any failure is logged as one line (the traceback only at log level debug), the
        engines already started are shut down, and StartupError is raised.
        """
        settings = self.settings
        logger.info("starting", extra={"settings": settings.summary()})
        if not settings.is_loopback() and not settings.all_api_keys():
            logger.warning(
                "LISTENING ON A NON-LOOPBACK ADDRESS WITHOUT API KEYS: anyone who can reach "
                "this port can use the models. Set DRS_API_KEYS or DRS_API_KEYS_FILE.",
                extra={"host": settings.host},
            )
        try:
            runtime = load_runtime(settings, self._engine_factory)
            self._service = ScoringService(runtime)
            self._monitor = HealthMonitor(
                runtime.engines, runtime.tokenizer, settings, self._publish, self._fatal
            )
            await self._monitor.start()
        except Exception as error:
            self.phase = Phase.FAILED
            trace = error if logger.isEnabledFor(logging.DEBUG) else None
            logger.error("refusing to start: %s", describe(error), exc_info=trace)
            await self._release()
            raise StartupError(describe(error)) from error
        for model, seconds in runtime.load_seconds.items():
            metrics.MODEL_LOAD_SECONDS.labels(model=model).set(seconds)
        self.phase = Phase.SERVING
        self._publish()

    @property
    def service(self) -> ScoringService | None:
        return self._service

    def problem(self) -> ServiceError | None:
        """Why the service may not take work now, or None."""
        if self.phase is Phase.DRAINING:
            return NotReady("the server is draining before shutdown", code="draining")
        if self.phase is not Phase.SERVING or self._monitor is None:
            return NotReady("the models are not loaded")
        return self._monitor.state.problem()

    def accepting(self) -> ScoringService:
        """The scoring service, if it may take work now; else raise why not (503)."""
        problem = self.problem()
        if problem is not None:
            raise problem
        assert self._service is not None
        return self._service

    async def readiness(self) -> ServiceError | None:
        """The answer of /ready: `problem()`, then a live check of both engines."""
        problem = self.problem()
        if problem is None and self._service is not None:
            try:
                await self._service.runtime.engines.check_health()
            except ServiceError as error:
                problem = error
        self._publish(problem)
        return problem

    def begin_drain(self) -> None:
        """SIGTERM: refuse new work at once (503 draining); admitted requests go on."""
        if self.phase is Phase.SERVING:
            self.phase = Phase.DRAINING
            logger.info("draining", extra={"drain_timeout_s": self.settings.drain_timeout_s})
        self._publish()

    async def drain(self) -> None:
        """Wait until admitted requests have finished, at most `drain_timeout_s`."""
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while self.inflight_requests() > 0:
            if time.monotonic() > deadline:
                logger.warning(
                    "drain timeout: requests still running",
                    extra={"inflight_requests": self.inflight_requests()},
                )
                return
            await asyncio.sleep(0.05)
        logger.info("drained")

    def inflight_requests(self) -> int:
        return 0 if self._service is None else self._service.budget.inflight_requests

    async def stop(self) -> None:
        """Stop the checks and shut both engines down. Idempotent."""
        if self.phase is not Phase.FAILED:
            self.phase = Phase.STOPPED
        self._publish()
        await self._release()

    async def _release(self) -> None:
        monitor, self._monitor = self._monitor, None
        service, self._service = self._service, None
        if monitor is not None:
            await monitor.stop()
        if service is not None:
            logger.info("shutting down engines")
            service.close()
            service.runtime.engines.shutdown()
            logger.info("engines shut down")

    def _fatal(self, reason: str) -> None:
        logger.error("stopping: an engine failed", extra={"detail": reason})
        self.failure = reason

    def _publish(self, problem: ServiceError | None = None) -> None:
        """The ready gauge, set here only: 1 exactly when /ready would answer 200."""
        if problem is None:
            problem = self.problem()
        metrics.READY.set(0 if problem is not None else 1)


def describe(error: BaseException) -> str:
    """One line for a start-up failure: our own errors say it all, others get their type."""
    if isinstance(error, StartupError):
        return str(error)
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
