"""The load generator's HTTP client: one POST of pre-serialized JSON, the answer as bytes.

Two implementations, so the client can be ruled out as the bottleneck: httpx (the project's
client library) and aiohttp (scales better to thousands of requests in flight).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from harness.servers import SERVER_KEEPALIVE_S, pooled_limits

JSON_HEADERS = {"content-type": "application/json"}
# (x-total-time, x-engine-time) headers of a service answer.
Timing = tuple[str | None, str | None]


class ClientError(Exception):
    """A transport error or timeout: the request got no HTTP answer."""


class Client(Protocol):
    async def post(self, url: str, body: bytes) -> tuple[int, Timing, bytes]:
        """(status, timing headers, body); raises ClientError on transport errors."""
        ...

    async def get(self, url: str) -> int:
        """The status of a GET; raises ClientError on transport errors."""
        ...

    async def close(self) -> None: ...


def timing(headers: Mapping[str, Any]) -> Timing:
    return headers.get("x-total-time"), headers.get("x-engine-time")


def parse_ms(value: str | None) -> float | None:
    """Milliseconds from a timing header ("12.3ms"); None when absent or malformed."""
    if not value:
        return None
    try:
        return float(value.removesuffix("ms"))
    except ValueError:
        return None


class HttpxClient:
    def __init__(self) -> None:
        # Open loop: never let the client's pool be the queue.
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(None), limits=pooled_limits())

    async def post(self, url: str, body: bytes) -> tuple[int, Timing, bytes]:
        try:
            response = await self._client.post(url, content=body, headers=JSON_HEADERS)
        except httpx.TransportError as exc:
            raise ClientError(str(exc)) from exc
        return response.status_code, timing(response.headers), response.content

    async def get(self, url: str) -> int:
        try:
            return (await self._client.get(url)).status_code
        except httpx.TransportError as exc:
            raise ClientError(str(exc)) from exc

    async def close(self) -> None:
        await self._client.aclose()


class AiohttpClient:
    def __init__(self) -> None:
        import aiohttp

        self._errors = aiohttp.ClientError
        # No pool limit; keep-alive shorter than the servers'. aiohttp expires only connections
        # that sit in its idle pool, so it has no race like httpcore's (harness.servers).
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=SERVER_KEEPALIVE_S / 2)
        timeout = aiohttp.ClientTimeout(total=None)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def post(self, url: str, body: bytes) -> tuple[int, Timing, bytes]:
        try:
            async with self._session.post(url, data=body, headers=JSON_HEADERS) as response:
                content = await response.read()
                return response.status, timing(response.headers), content
        except self._errors as exc:
            raise ClientError(str(exc)) from exc

    async def get(self, url: str) -> int:
        try:
            async with self._session.get(url) as response:
                await response.read()
                return response.status
        except self._errors as exc:
            raise ClientError(str(exc)) from exc

    async def close(self) -> None:
        await self._session.close()


def make_client(kind: str) -> Client:
    return AiohttpClient() if kind == "aiohttp" else HttpxClient()
