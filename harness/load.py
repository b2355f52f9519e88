"""The one open-loop load driver and the one latency summary, shared by the benchmark's sweep
points and the soak.

Open loop: request i starts at its scheduled arrival whatever happened to earlier ones (a
server that falls behind sees its queue grow, as under real traffic); arrivals are Poisson.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def poisson_arrivals(rate: float, n: int, seed: int) -> np.ndarray:
    """n arrival times (seconds from the first, which is at 0) at `rate` per second."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n)
    return np.concatenate([[0.0], np.cumsum(gaps[:-1])])


def poisson_arrivals_within(rate: float, duration_s: float, seed: int) -> np.ndarray:
    """The Poisson arrivals (as `poisson_arrivals`) that fall before `duration_s`."""
    n = max(1, int(rate * duration_s * 2) + 10)
    while True:
        arrivals = poisson_arrivals(rate, n, seed)
        if arrivals[-1] >= duration_s:
            return arrivals[arrivals < duration_s]
        n *= 2


async def open_loop(
    fire: Callable[[int], Coroutine[Any, Any, T]],
    arrivals: Sequence[float],
    drain_s: float | None,
) -> tuple[list[T | None], float]:
    """Start `fire(i)` at `arrivals[i]` seconds; wait for all (or `drain_s` after the last
    arrival, then cancel the rest: None). Returns the results and the seconds it all took."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    tasks: list[asyncio.Task[T]] = []
    for i, at in enumerate(arrivals):
        delay = t0 + float(at) - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(i)))
    _, pending = await asyncio.wait(tasks, timeout=drain_s) if tasks else (set(), set())
    for task in pending:
        task.cancel()  # disconnects: the server aborts the work
    await asyncio.gather(*pending, return_exceptions=True)
    results = [None if task in pending else task.result() for task in tasks]
    return results, loop.time() - t0


def latency_summary(latencies: Sequence[float]) -> dict[str, float | None]:
    """p50, p90, p99 (numpy's linear interpolation) and the mean, in seconds; None if empty."""
    if not latencies:
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    values = np.asarray(latencies, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99]).tolist()
    return {"p50": p50, "p90": p90, "p99": p99, "mean": float(values.mean())}


def spread(values: Sequence[float]) -> dict[str, float]:
    """min, median and max of repeated measurements (rounds of a benchmark)."""
    return {"min": min(values), "median": float(np.median(values)), "max": max(values)}
