"""Polling a live server from a test: wait for a condition, read /ready's answer."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


def wait_until(condition: Callable[[], bool], timeout_s: float) -> float:
    """Poll every 50 ms; the seconds it took, or AssertionError after `timeout_s`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
    return time.monotonic() - start


def ready_code(url: str) -> tuple[int, str | None]:
    """/ready's status and, when not ready, its error code."""
    response = httpx.get(url + "/ready", timeout=5)
    code = response.json().get("error", {}).get("code") if response.status_code != 200 else None
    return response.status_code, code
