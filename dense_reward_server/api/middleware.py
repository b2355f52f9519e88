"""Pure ASGI middleware: request id, timing header, one log line per request, API keys, body size.

Pure ASGI (not BaseHTTPMiddleware) so that a client disconnect still cancels the route.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dense_reward_server import metrics
from dense_reward_server.api.errors import error_response
from dense_reward_server.errors import PayloadTooLarge, Unauthorized
from dense_reward_server.logs import request_id_var

logger = logging.getLogger("dense_reward_server.access")

OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})
# The page's static files hold no data; the page sends the key with its API calls.
OPEN_PREFIXES = ("/ui/",)


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path == "/ui" or path.startswith(OPEN_PREFIXES)


class RequestContextMiddleware:
    """Accepts X-Request-ID (or makes one), echoes it, adds x-total-time, logs the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = Headers(scope=scope).get("x-request-id") or uuid.uuid4().hex
        request_id = request_id[:128]
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                headers["x-total-time"] = f"{(time.perf_counter() - start) * 1000:.1f}ms"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if scope["path"] not in OPEN_PATHS:
                elapsed = time.perf_counter() - start
                route = getattr(scope.get("route"), "path", "unmatched")
                metrics.REQUESTS.labels(route=route, status=str(status)).inc()
                metrics.REQUEST_DURATION.labels(route=route).observe(elapsed)
                logger.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "latency_ms": round((time.perf_counter() - start) * 1000, 1),
                        **scope["state"].get("log_fields", {}),
                    },
                )
            request_id_var.reset(token)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeyMiddleware:
    """Bearer API keys, stored hashed and compared in constant time.

    Every route but health, readiness and metrics needs a key when keys are configured.
    """

    def __init__(self, app: ASGIApp, keys: Iterable[str]) -> None:
        self.app = app
        self._hashes = [hash_key(key) for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]) or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        # One message whatever failed (no header, wrong scheme, wrong key): leak nothing.
        response = error_response(Unauthorized("missing or invalid API key"))
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        scheme, _, key = Headers(scope=scope).get("authorization", "").partition(" ")
        presented = hash_key(key.strip())
        matches = [hmac.compare_digest(presented, known) for known in self._hashes]
        return scheme.lower() == "bearer" and any(matches)


class BodyLimitMiddleware:
    """Refuses a body over `max_bytes` with 413 before it is read into memory or parsed.

    A declared Content-Length is checked up front; a chunked body is counted as it arrives,
    and past the limit we answer 413 ourselves and tell the app the client left (an exception
    raised here would reach FastAPI's body parser, which turns every error into a 400).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received, refused = 0, False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                refused = True
                await self._refuse(scope, receive, send)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # the 413 is the answer; drop whatever the app says after it
                await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(
            f"the request body exceeds max_body_bytes={self.max_bytes}", code="body_too_large"
        )
        await error_response(error)(scope, receive, send)
