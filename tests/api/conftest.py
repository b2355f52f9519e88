"""The API tier: every response a test here receives is checked against the live OpenAPI spec."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from harness.openapi import ResponseChecker

CHECKER = ResponseChecker()


@pytest.fixture(autouse=True)
def responses_match_the_documented_schema(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        response = sync_send(self, request, **kwargs)
        CHECKER.check(response)
        return response

    async def asend(
        self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any
    ) -> httpx.Response:
        response = await async_send(self, request, **kwargs)
        CHECKER.check(response)
        return response

    monkeypatch.setattr(httpx.Client, "send", send)
    monkeypatch.setattr(httpx.AsyncClient, "send", asend)
    yield
