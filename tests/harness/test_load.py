"""The one open-loop driver: requests start on schedule whatever earlier ones do, the rest is
cancelled after the drain, and the latency summary is numpy's percentiles."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from harness import load


def test_arrivals_are_seeded_poisson_and_bounded_by_the_duration() -> None:
    first = load.poisson_arrivals(50.0, 2000, seed=3)
    assert first[0] == 0.0 and np.all(np.diff(first) >= 0)
    assert np.array_equal(first, load.poisson_arrivals(50.0, 2000, seed=3))
    assert np.mean(np.diff(first)) == pytest.approx(1 / 50.0, rel=0.1)
    within = load.poisson_arrivals_within(50.0, 4.0, seed=3)
    assert within.max() < 4.0 and np.array_equal(within, first[: len(within)])
    assert len(within) == pytest.approx(200, rel=0.25)


def test_open_loop_never_waits_for_answers_and_cancels_after_the_drain() -> None:
    order: list[int] = []

    async def run() -> tuple[list[str | None], float]:
        never = asyncio.Event()

        async def fire(i: int) -> str:
            order.append(i)
            if i == 0:
                await never.wait()  # the first request never gets an answer
            return f"done {i}"

        return await load.open_loop(fire, [0.0, 0.05, 0.1], drain_s=0.2)

    results, elapsed = asyncio.run(run())
    assert order == [0, 1, 2]  # the later ones went out while the first hung
    assert results == [None, "done 1", "done 2"]  # the hung one was cancelled at the drain
    assert elapsed >= 0.29  # the last arrival (0.1 s), then the drain (0.2 s)


def test_latency_summary_is_numpys_linear_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    summary = load.latency_summary(values)
    assert summary["p50"] == pytest.approx(50.5) and summary["p99"] == pytest.approx(99.01)
    assert summary["mean"] == pytest.approx(50.5)
    assert load.latency_summary([]) == {"p50": None, "p90": None, "p99": None, "mean": None}
