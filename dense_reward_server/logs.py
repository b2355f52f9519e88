"""Logging, configured once at the entry point: JSON lines (or text), a request id on each."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

# Attributes every LogRecord has; anything else came from `extra=` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            line["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD and k[0] != "_"}
        request_id = request_id_var.get()
        if request_id:
            extras["request_id"] = request_id
        return f"{text} {extras}" if extras else text


class HideStartupTraceback(logging.Filter):
    """Drops the traceback uvicorn logs when the app's start-up fails.

    The lifecycle has already logged the reason as one line (with the traceback at level
    debug); uvicorn then logs Starlette's formatted traceback as a plain message, 60 lines
    that bury the reason. Only that message is dropped, and only above debug.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        return not message.startswith("Traceback (most recent call last)")


def configure_logging(log_format: str = "json", level: str = "info") -> None:
    """Send every logger (ours, uvicorn's, vLLM's) through one stderr handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "vllm"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    uvicorn_error = logging.getLogger("uvicorn.error")
    for old in [f for f in uvicorn_error.filters if isinstance(f, HideStartupTraceback)]:
        uvicorn_error.removeFilter(old)
    if level != "debug":
        uvicorn_error.addFilter(HideStartupTraceback())
    # One request line is logged by our middleware; uvicorn's access log would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
