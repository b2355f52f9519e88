"""The open- and closed-loop drivers of the systems reached over HTTP.

A system's `send(client, request)` makes one request; the drivers schedule them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from harness import load
from harness.bench.clients import Client, make_client
from harness.workloads import Request


@dataclass
class Outcome:
    """What one request produced, as seen by the client."""

    status: int  # HTTP status (200 ok); 0 = transport error or timeout
    server_ms: float | None = None  # service's x-total-time, when present
    engine_ms: float | None = None  # service's x-engine-time: admission to both engines' answers
    rewards: list[np.ndarray] | None = None  # per sequence, only when asked to keep them


@dataclass
class Record:
    """One request of a sweep point; times in seconds from the point's start."""

    arrival: float  # scheduled (Poisson) arrival
    finish: float
    status: int  # 200 ok, 429 refused, other = error, 0 = transport error / timeout
    scored_tokens: int
    server_ms: float | None = None
    engine_ms: float | None = None

    @property
    def latency(self) -> float:
        return self.finish - self.arrival


Send = Callable[[Client, Request], Awaitable[Outcome]]


async def open_loop(
    send: Send, client_kind: str, requests: list[Request], arrivals: np.ndarray, drain_s: float
) -> list[Record]:
    """Sends request i at arrivals[i] (`harness.load.open_loop`); what is still running
    drain_s after the last arrival is cancelled (recorded as status 0)."""
    loop = asyncio.get_running_loop()
    client = make_client(client_kind)
    try:
        t0 = loop.time()

        async def one(i: int) -> Record:
            request = requests[i % len(requests)]
            outcome = await send(client, request)
            return Record(
                float(arrivals[i]),
                loop.time() - t0,
                outcome.status,
                request.scored_tokens,
                outcome.server_ms,
                outcome.engine_ms,
            )

        records, end = await load.open_loop(one, arrivals.tolist(), drain_s)
    finally:
        await client.close()
    return [
        r or Record(float(arrivals[i]), end, 0, requests[i % len(requests)].scored_tokens)
        for i, r in enumerate(records)
    ]


async def closed_loop(
    send: Send,
    client_kind: str,
    requests: list[Request],
    concurrency: int,
    min_s: float,
    min_n: int,
) -> float:
    """Capacity estimate in requests/s: `concurrency` clients back to back for min_s seconds
    and at least min_n requests, after one warm-up request (first-request costs)."""
    done = 0
    client = make_client(client_kind)
    try:
        await send(client, requests[0])
        start = time.perf_counter()

        async def worker(k: int) -> None:
            nonlocal done
            i = k + 1  # after the warm-up request: no request repeats before the pool cycles
            while time.perf_counter() - start < min_s or done + concurrency <= min_n:
                outcome = await send(client, requests[i % len(requests)])
                if outcome.status != 200:
                    raise RuntimeError(f"calibration request got {outcome.status}")
                done += 1
                i += concurrency

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    finally:
        await client.close()
    return done / (time.perf_counter() - start)


async def one_request(send: Send, client_kind: str, request: Request) -> Outcome:
    client = make_client(client_kind)
    try:
        return await send(client, request)
    finally:
        await client.close()
