"""Readiness, canary, engine faults and graceful drain, on real servers over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from dense_reward_server import metrics
from dense_reward_server.core.lifecycle import Lifecycle
from dense_reward_server.errors import NotReady, StartupError
from harness.fakes import fake_factory
from harness.probes import ready_code, wait_until

URL = "/v1/token_rewards"


def test_canary_catches_a_changed_model(fake_server: Callable[..., Any]) -> None:
    with fake_server(health_interval_s=0.1, canary_interval_s=0.2) as server:
        pair = server.pair
        assert ready_code(server.url) == (200, None)
        pair.sft.salt = 4  # the "model" now answers differently: a swapped model
        wait_until(lambda: ready_code(server.url) == (503, "canary_failed"), 5)
        body = {"items": [{"prompt": "x", "completion": "1"}]}
        refused = httpx.post(server.url + URL, json=body)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "canary_failed"
        assert httpx.get(server.url + "/health").status_code == 200  # alive, not ready
        pair.sft.salt = 3
        wait_until(lambda: ready_code(server.url) == (200, None), 5)


def test_the_canary_watches_every_baseline(fake_server: Callable[..., Any], demo_dir: Path) -> None:
    settings = {"health_interval_s": 0.1, "canary_interval_s": 0.2}
    half = {"half": str(demo_dir / "sft-half")}  # its tokenizer is checked; the engine is fake
    with fake_server(extra_baselines=half, **settings) as server:
        assert ready_code(server.url) == (200, None)
        server.pair.extra["half"].salt = 4  # a swapped checkpoint behind an extra baseline
        wait_until(lambda: ready_code(server.url) == (503, "canary_failed"), 5)
        message = httpx.get(server.url + "/ready").json()["error"]["message"]
        assert "the half engine's canary log-probs moved" in message
        server.pair.extra["half"].salt = 11
        wait_until(lambda: ready_code(server.url) == (200, None), 5)


def test_dead_engine_turns_ready_503_and_stops_the_process(
    fake_server: Callable[..., Any],
) -> None:
    with fake_server(health_interval_s=0.2) as server:
        server.pair.base.alive = False
        elapsed = wait_until(lambda: ready_code(server.url) == (503, "engine_unavailable"), 5)
        assert elapsed < 5
        lifecycle = server.server.lifecycle  # what the server runner watches (exit 1)
        wait_until(lambda: lifecycle.failure is not None, 5)
        assert "base engine is not running" in lifecycle.failure


# The lifecycle alone, without HTTP: what /ready and the ready gauge say in each phase.


def ready_gauge() -> float:
    return float(metrics.READY._value.get())


def test_lifecycle_phases_and_the_ready_gauge(settings_for: Callable[..., Any]) -> None:
    pair, factory = fake_factory(vocab_size=100_000)
    lifecycle = Lifecycle(settings_for(), factory)

    async def walk() -> list[tuple[str, str | None, float]]:
        seen = []

        async def note() -> None:
            problem = await lifecycle.readiness()
            seen.append((lifecycle.phase.value, problem and problem.code, ready_gauge()))

        await note()  # before start: not loaded
        await lifecycle.start()
        await note()
        pair.base.alive = False  # an engine that stops answering
        await note()
        pair.base.alive = True
        await note()
        lifecycle.begin_drain()
        await note()
        with pytest.raises(NotReady, match="draining"):
            lifecycle.accepting()
        await lifecycle.drain()  # nothing in flight: returns at once
        await lifecycle.stop()
        await lifecycle.stop()  # idempotent
        await note()
        return seen

    assert asyncio.run(walk()) == [
        ("starting", "not_ready", 0.0),
        ("serving", None, 1.0),
        ("serving", "engine_unavailable", 0.0),
        ("serving", None, 1.0),
        ("draining", "draining", 0.0),
        ("stopped", "not_ready", 0.0),
    ]


def test_failed_start_releases_the_engines_and_raises_one_reason(
    settings_for: Callable[..., Any],
) -> None:
    pair, factory = fake_factory(vocab_size=100_000)
    shut: list[str] = []

    def shutdown() -> None:
        shut.append("pair")

    pair.shutdown = shutdown  # type: ignore[method-assign]
    pair.sft.alive = False  # the start-up canary cannot be scored

    async def fail_start() -> None:
        pair.sft.score = broken_score  # type: ignore[method-assign]
        await Lifecycle(settings_for(), factory).start()

    async def broken_score(*_: object) -> list[np.ndarray]:
        raise RuntimeError("device lost\nand a second line")

    with pytest.raises(StartupError, match=r"^RuntimeError: device lost$"):
        asyncio.run(fail_start())
    assert shut == ["pair"]
    assert ready_gauge() == 0.0
