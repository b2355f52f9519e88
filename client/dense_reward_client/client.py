"""Python client of dense-reward-server: `RewardClient` (sync) and `AsyncRewardClient`.

    from dense_reward_client import RewardClient
    with RewardClient("http://127.0.0.1:8000", api_key=None) as client:
        results = client.token_rewards(items, append_eos=True, encoding="base64")

Results come back in item order however the batch was split: the client sends at most the
server's `max_items_per_request` completions per request (read from /v1/models), halves a
request the server refuses as too large (413 `too_many_tokens`), retries 429/502/503 and
transport errors with backoff honouring `Retry-After` (never other 4xx), and decodes base64
arrays to numpy. Every request carries `X-DRS-Prompt-Key` (`routing.py`): behind a balancer
that hashes it, a prompt's requests reach one replica and share its prefix cache.
Errors raise `RewardServerError` subclasses carrying the server's code and item index.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx

from dense_reward_client.encoding import decode_floats, decode_ints
from dense_reward_client.routing import routing_headers

# 502: a balancer in front of replicas lost one mid-request; scoring is idempotent, so retry.
RETRY_STATUSES = frozenset({429, 502, 503})
FLOAT_ARRAYS = ("rewards", "sft_logprobs", "base_logprobs", "ref_logprobs", "returns")


class RewardServerError(Exception):
    """An error answer of the server: `code`, `message`, `index` (of your item), `field`."""

    def __init__(
        self, status: int, code: str, message: str, index: int | None, field: str | None
    ) -> None:
        super().__init__(
            f"{status} {code}: {message}" + (f" (item {index})" if index is not None else "")
        )
        self.status, self.code, self.message, self.index, self.field = (
            status,
            code,
            message,
            index,
            field,
        )


class InvalidRequestError(RewardServerError):
    """400/422: the request is wrong; fix it."""


class AuthenticationError(RewardServerError):
    """401: missing or wrong API key."""


class TokenizerMismatchError(RewardServerError):
    """409: the server's tokenizer is not the one you tokenized with."""


class PayloadTooLargeError(RewardServerError):
    """413: even a single item is over the server's limits."""


class OverloadedError(RewardServerError):
    """429 after all retries."""


class ServiceUnavailableError(RewardServerError):
    """503 after all retries (not ready, draining, engine down)."""


class DeadlineExceededError(RewardServerError):
    """504: the request's deadline passed."""


ERROR_TYPES: dict[int, type[RewardServerError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    409: TokenizerMismatchError,
    413: PayloadTooLargeError,
    422: InvalidRequestError,
    429: OverloadedError,
    503: ServiceUnavailableError,
    504: DeadlineExceededError,
}


def error_from(response: httpx.Response, offset: int) -> RewardServerError:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        error = {"code": "http_error", "message": response.text[:500]}
    index = error.get("index")
    kind = ERROR_TYPES.get(response.status_code, RewardServerError)
    return kind(
        response.status_code,
        str(error.get("code")),
        str(error.get("message")),
        None if index is None else index + offset,
        error.get("field"),
    )


def completions_in(item: Any) -> int:
    completions = item.get("completions") if isinstance(item, dict) else None
    return len(completions) if completions else 1


def chunks(items: Sequence[Any], max_completions: int) -> list[tuple[int, list[Any]]]:
    """Consecutive (offset, items) runs of at most `max_completions` completions each."""
    runs: list[tuple[int, list[Any]]] = []
    current: list[Any] = []
    start, count = 0, 0
    for i, item in enumerate(items):
        size = completions_in(item)
        if current and count + size > max_completions:
            runs.append((start, current))
            current, start, count = [], i, 0
        current.append(item)
        count += size
    if current:
        runs.append((start, current))
    return runs


def decode_result(result: dict[str, Any]) -> dict[str, Any]:
    """base64 arrays to numpy (in place, groups included)."""
    for member in result.get("completions", []):
        decode_result(member)
    for name in FLOAT_ARRAYS:
        if isinstance(result.get(name), str):
            result[name] = decode_floats(result[name])
    for name, values in (result.get("baseline_logprobs") or {}).items():
        if isinstance(values, str):
            result["baseline_logprobs"][name] = decode_floats(values)
    if isinstance(result.get("token_ids"), str):
        result["token_ids"] = decode_ints(result["token_ids"])
    if isinstance(result.get("offsets"), str):
        result["offsets"] = decode_ints(result["offsets"]).reshape(-1, 2)
    return result


def retry_delay(response: httpx.Response | None, attempt: int, backoff_s: float) -> float:
    """Retry-After when the server gives it, else exponential backoff with jitter."""
    if response is not None:
        header = response.headers.get("retry-after")
        if header is not None:
            try:
                return max(0.0, float(header))
            except ValueError:
                pass
    return float(backoff_s * (2**attempt) * (0.5 + random.random()))


class _Base:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        max_retries: int,
        backoff_s: float,
        max_items_per_request: int | None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_items = max_items_per_request

    def _body(self, items: list[Any], options: dict[str, Any]) -> dict[str, Any]:
        # The server validates (one schema, one set of error codes, each with the item's index).
        return {"items": items, **options}

    def _decide(
        self, response: httpx.Response | None, attempt: int, offset: int, count: int
    ) -> tuple[str, Any]:
        """What to do with an answer: ("done", results), ("split", half) or ("retry", delay).

        Raises the typed error when the answer is final and bad.
        """
        if response is not None:
            if response.status_code == 200:
                return "done", [decode_result(r) for r in response.json()["results"]]
            too_large = response.status_code == 413 and "too_many" in response.text
            if too_large and count > 1:
                return "split", count // 2
            if response.status_code not in RETRY_STATUSES or attempt == self.max_retries:
                raise error_from(response, offset)
        return "retry", retry_delay(response, attempt, self.backoff_s)


class RewardClient(_Base):
    """Synchronous client over a pooled `httpx.Client`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 600.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_items_per_request: int | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, max_retries, backoff_s, max_items_per_request)
        self.http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=timeout_s, transport=transport
        )

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def models(self) -> dict[str, Any]:
        response = self.http.get("/v1/models")
        if response.status_code != 200:
            raise error_from(response, 0)
        return dict(response.json())

    def token_rewards(self, items: Sequence[Any], **options: Any) -> list[dict[str, Any]]:
        """Score `items` (any number); results in item order. Options as in the API."""
        if self.max_items is None:
            self.max_items = int(self.models()["limits"]["max_items_per_request"])
        results: list[dict[str, Any]] = []
        for offset, chunk in chunks(list(items), self.max_items):
            results += self._send(offset, chunk, options)
        return results

    def _send(self, offset: int, items: list[Any], options: dict[str, Any]) -> list[dict[str, Any]]:
        body = self._body(items, options)
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                response = self.http.post(
                    "/v1/token_rewards", json=body, headers=routing_headers(items)
                )
            except httpx.TransportError:
                if attempt == self.max_retries:
                    raise
            action, value = self._decide(response, attempt, offset, len(items))
            if action == "done":
                return list(value)
            if action == "split":
                first = self._send(offset, items[:value], options)
                return first + self._send(offset + value, items[value:], options)
            time.sleep(value)
        raise AssertionError("unreachable: the last attempt returns or raises")


class AsyncRewardClient(_Base):
    """asyncio client over a pooled `httpx.AsyncClient`; same behaviour as RewardClient."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 600.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_items_per_request: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, max_retries, backoff_s, max_items_per_request)
        self.http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=timeout_s, transport=transport
        )

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def models(self) -> dict[str, Any]:
        response = await self.http.get("/v1/models")
        if response.status_code != 200:
            raise error_from(response, 0)
        return dict(response.json())

    async def token_rewards(self, items: Sequence[Any], **options: Any) -> list[dict[str, Any]]:
        """Score `items`; the server-sized requests go out concurrently; results in order."""
        if self.max_items is None:
            self.max_items = int((await self.models())["limits"]["max_items_per_request"])
        parts = await asyncio.gather(
            *(self._send(o, c, options) for o, c in chunks(list(items), self.max_items))
        )
        return [result for part in parts for result in part]

    async def _send(
        self, offset: int, items: list[Any], options: dict[str, Any]
    ) -> list[dict[str, Any]]:
        body = self._body(items, options)
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                response = await self.http.post(
                    "/v1/token_rewards", json=body, headers=routing_headers(items)
                )
            except httpx.TransportError:
                if attempt == self.max_retries:
                    raise
            action, value = self._decide(response, attempt, offset, len(items))
            if action == "done":
                return list(value)
            if action == "split":
                first = await self._send(offset, items[:value], options)
                return first + await self._send(offset + value, items[value:], options)
            await asyncio.sleep(value)
        raise AssertionError("unreachable: the last attempt returns or raises")


__all__ = [
    "AsyncRewardClient",
    "AuthenticationError",
    "DeadlineExceededError",
    "InvalidRequestError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RewardClient",
    "RewardServerError",
    "ServiceUnavailableError",
    "TokenizerMismatchError",
]
