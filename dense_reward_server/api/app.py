"""create_app: the FastAPI app; its lifespan runs the lifecycle (both engines, health, stop)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from dense_reward_server import __version__
from dense_reward_server.api.errors import install_error_handlers
from dense_reward_server.api.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    RequestContextMiddleware,
)
from dense_reward_server.api.openrlhf import router as openrlhf_router
from dense_reward_server.api.routes import router
from dense_reward_server.core.lifecycle import Lifecycle

UI_DIR = Path(__file__).resolve().parents[1] / "ui"


def create_app(lifecycle: Lifecycle) -> FastAPI:
    """The app of this lifecycle; engines load in its lifespan (nothing heavy at import or
    creation time). `app.state.lifecycle` is the only state the app keeps."""
    settings = lifecycle.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await lifecycle.start()  # raises StartupError: uvicorn then exits
        try:
            yield
        finally:
            await lifecycle.stop()

    app = FastAPI(
        title="dense-reward-server",
        version=__version__,
        description="Dense token-level rewards from an SFT model and its base: "
        "r_t = beta * (log pi_sft - log pi_base).",
        lifespan=lifespan,
    )
    app.state.lifecycle = lifecycle
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
