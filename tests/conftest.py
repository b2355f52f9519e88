"""Shared fixtures: the demo pair (built once if missing), live servers over loopback.

The servers themselves are the harness's (harness/servers.py), shared with the benchmark and
the soak; their logs go to results/logs/.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.paths import DEMO, pair_settings
from harness.servers import ServiceProcess, ThreadServer
from service.config import Settings

DEMO_DIR = Path(os.environ.get("DRS_TEST_DEMO_DIR", DEMO))


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """The demo pair; built here if `make demo` has not built it (never skipped)."""
    if not (DEMO_DIR / "sft" / "config.json").exists():
        from service.demo.build import build_demo

        build_demo(DEMO_DIR, seed=0, progress=False)
    return DEMO_DIR


@pytest.fixture(scope="session")
def thread_server() -> Callable[..., ThreadServer]:
    return ThreadServer


@pytest.fixture(scope="session")
def vllm_server(demo_dir: Path) -> Iterator[ServiceProcess]:
    """One vLLM-backed server for the whole run (two engines take ~1 min to start)."""
    server = ServiceProcess(
        name="test-vllm-server",
        backend="vllm",
        log_format="text",
        **pair_settings(demo_dir),
    )
    try:
        server.wait_ready()
        yield server
    finally:
        assert server.stop() == 0, f"the server did not shut down cleanly; see {server.log_path}"


@pytest.fixture(scope="session")
def demo_url(settings_for: Callable[..., Settings], thread_server: Any) -> Iterator[str]:
    """An in-thread server on the demo pair (transformers engine), shared by the trainer
    adapters' tests and the DPR trainer's: the reward model they score against."""
    from service.api.app import create_app

    with thread_server(create_app(settings_for(backend="transformers"))) as server:
        yield server.url


@pytest.fixture(scope="session")
def settings_for(demo_dir: Path) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {**pair_settings(demo_dir), "backend": "transformers"}
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make
