"""create_app: the FastAPI app whose lifespan owns both engines."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service import __version__, metrics
from service.api.errors import install_error_handlers
from service.api.health import HealthMonitor, HealthState
from service.api.middleware import ApiKeyMiddleware, BodyLimitMiddleware, RequestContextMiddleware
from service.api.openrlhf import router as openrlhf_router
from service.api.routes import router
from service.api.serving import RewardService
from service.config import Settings
from service.engines.factory import load_engine_pair
from service.errors import StartupError
from service.runtime import EngineFactory, load_runtime

logger = logging.getLogger(__name__)

UI_DIR = Path(__file__).resolve().parents[1] / "ui"


def create_app(settings: Settings, engine_factory: EngineFactory = load_engine_pair) -> FastAPI:
    """The app; engines load in its lifespan (nothing heavy at import or creation time)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info("starting", extra={"settings": settings.summary()})
        if not settings.is_loopback() and not settings.all_api_keys():
            logger.warning(
                "LISTENING ON A NON-LOOPBACK ADDRESS WITHOUT API KEYS: anyone who can reach "
                "this port can use the models. Set DRS_API_KEYS or DRS_API_KEYS_FILE.",
                extra={"host": settings.host},
            )
        try:
            runtime = load_runtime(settings, engine_factory)
        except StartupError as error:
            logger.error("refusing to start: %s", error)
            raise
        app.state.service = RewardService(runtime)
        monitor = HealthMonitor(runtime.engines, runtime.tokenizer, settings, app.state.on_fatal)
        await monitor.start()
        app.state.health = monitor.state
        app.state.ready = True
        for model, seconds in runtime.load_seconds.items():
            metrics.MODEL_LOAD_SECONDS.labels(model=model).set(seconds)
        metrics.READY.set(1)
        try:
            yield
        finally:
            app.state.ready = False
            metrics.READY.set(0)
            await monitor.stop()
            logger.info("shutting down engines")
            await runtime.engines.shutdown()
            logger.info("engines shut down")

    app = FastAPI(
        title="dense-reward-server",
        version=__version__,
        description="Dense token-level rewards from an SFT model and its base: "
        "r_t = beta * (log pi_sft - log pi_base).",
        lifespan=lifespan,
    )
    app.state.ready = False
    app.state.service = None
    app.state.health = HealthState()
    # Replaced by the server runner with a function that stops the process (exit status 1).
    app.state.on_fatal = lambda reason: None
    app.include_router(router)
    app.include_router(openrlhf_router)
    # The heatmap page: static files, no build step, no CDN. Its API calls carry the key.
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    keys = settings.all_api_keys()
    if keys:
        app.add_middleware(ApiKeyMiddleware, keys=keys)
    # Added last = outermost: every response, even a 401, gets a request id.
    app.add_middleware(RequestContextMiddleware)
    return app
