"""Run the app under uvicorn with a graceful drain and a non-zero exit on engine failure.

SIGTERM (what Kubernetes sends): /ready and new requests answer 503 at once while the
listener stays open, admitted requests finish (up to `drain_timeout_s`), then uvicorn shuts
down, the lifespan stops both engines, and the process exits 0. A dead engine stops the
process with status 1 so the orchestrator restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from types import FrameType

import uvicorn

from dense_reward_server.config import Settings
from dense_reward_server.core.lifecycle import Lifecycle, Phase

logger = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn with a drain on SIGTERM, run by the app's lifecycle."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.exit_code = 0
        self._drain_task: asyncio.Future[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A second SIGTERM (already draining), SIGINT, or one before start-up: stop now.
        if sig != signal.SIGTERM or not self.started or self.lifecycle.phase is not Phase.SERVING:
            super().handle_exit(sig, frame)
            return
        self.lifecycle.begin_drain()
        asyncio.get_event_loop().call_soon_threadsafe(self._start_drain, sig, frame)

    def _start_drain(self, sig: int, frame: FrameType | None) -> None:
        self._drain_task = asyncio.ensure_future(self._drain(sig, frame))

    async def _drain(self, sig: int, frame: FrameType | None) -> None:
        await self.lifecycle.drain()
        logger.info("shutting down")
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        """uvicorn asks every 0.1 s whether to exit: yes, with status 1, once an engine died."""
        if self.lifecycle.failure is not None:
            self.exit_code = 1
            return True
        return await super().on_tick(counter)


def run_server(settings: Settings) -> None:
    """The lifecycle first, then the app and uvicorn, both given it."""
    from dense_reward_server.api.app import create_app

    lifecycle = Lifecycle(settings)
    app = create_app(lifecycle)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # ours, configured at the entry point, for uvicorn's loggers too
        access_log=False,
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s)),
        timeout_keep_alive=settings.keep_alive_timeout_s,
    )
    server = DrainingServer(config, lifecycle)
    # After a graceful shutdown uvicorn re-raises the signal that stopped it, which would end
    # the process as "killed by SIGTERM". A completed drain is a clean exit: status 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    if not server.started:
        sys.exit(3)  # start-up failed (the reason is in the log, one line)
    sys.exit(server.exit_code)
