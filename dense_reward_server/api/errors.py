"""The one mapping from errors to the SPEC error body. Routes raise; they never build errors."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from dense_reward_server import metrics
from dense_reward_server.errors import (
    InvalidRequest,
    MalformedRequest,
    Overloaded,
    PayloadTooLarge,
    ServiceError,
    Unauthorized,
)

logger = logging.getLogger(__name__)


def error_response(error: ServiceError, headers: Mapping[str, str] | None = None) -> Response:
    """The SPEC error body; every refusal (413, 429) is counted here, and only here."""
    if isinstance(error, PayloadTooLarge | Overloaded):
        metrics.count_rejection(error.code)
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "index": error.index,
            "field": error.field,
        }
    }
    headers = dict(headers or {})
    if isinstance(error, Overloaded):
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return Response(
        orjson.dumps(body), status_code=error.status, headers=headers, media_type="application/json"
    )


def from_validation_error(error: RequestValidationError) -> ServiceError:
    """The first pydantic error, with the item index and field it points at."""
    first: dict[str, Any] = error.errors()[0]
    kind, loc = str(first.get("type", "")), tuple(first.get("loc", ()))
    if kind == "json_invalid":
        return MalformedRequest(f"the body is not valid JSON: {first.get('msg', '')}")
    path = loc[1:] if loc and loc[0] == "body" else loc
    index = path[1] if len(path) > 1 and path[0] == "items" and isinstance(path[1], int) else None
    field_path = path[2:] if index is not None else path
    field = str(field_path[0]) if field_path else None
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    message = f"{where or 'body'}: {first.get('msg', 'invalid')}"
    if kind == "missing" and not path:
        return MalformedRequest("the request needs a JSON body", code="missing_body")
    return InvalidRequest(message, code=_code(kind, field), index=index, field=field)


def _code(kind: str, field: str | None) -> str:
    if kind == "literal_error" and field == "include":
        return "unknown_include"
    if kind == "missing":
        return "missing_field"
    if kind == "extra_forbidden":
        return "unknown_field"
    if kind.endswith(("_type", "_parsing")):
        return "invalid_type"
    return "invalid_value"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service(_: Request, error: ServiceError) -> Response:
        if error.status >= 500:
            logger.error("request failed", extra={"code": error.code, "detail": error.message})
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, error: RequestValidationError) -> Response:
        return error_response(from_validation_error(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        wrapped = ServiceError(str(error.detail), code=code)
        wrapped.status = error.status_code  # type: ignore[misc]
        # Keep the exception's headers: a 405 must carry Allow (RFC 9110).
        return error_response(wrapped, headers=error.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> Response:
        # Full trace in the log, never in the response.
        logger.exception("unhandled error")
        return error_response(ServiceError("internal server error"))
