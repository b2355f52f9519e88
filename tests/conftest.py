"""Shared fixtures: the demo pair (built once if missing), live servers over loopback.

The servers themselves are the harness's (harness/servers.py), shared with the benchmark and
the soak; their logs go to results/logs/.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import hypothesis
import pytest

from dense_reward_server.config import Settings
from dense_reward_server.engines.base import EnginePair
from dense_reward_server.engines.factory import load_engine_pair
from dense_reward_server.rewards.tokenization import RewardTokenizer
from harness.fakes import fake_factory
from harness.paths import DEMO, pair_settings
from harness.servers import ServiceProcess, ThreadServer

DEMO_DIR = Path(os.environ.get("DRS_TEST_DEMO_DIR", DEMO))

# Every property test: bounded, the same cases on every run (CI stays reproducible on a shared
# CPU), no example database (nothing written into the work tree). A test may ask for more.
hypothesis.settings.register_profile(
    "repo", max_examples=150, derandomize=True, database=None, deadline=None
)
hypothesis.settings.load_profile("repo")


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """The demo pair; built here if `make demo` has not built it (never skipped)."""
    if not (DEMO_DIR / "sft" / "config.json").exists():
        from harness.demo.build import build_demo

        build_demo(DEMO_DIR, seed=0, progress=False)
    return DEMO_DIR


@dataclass(frozen=True)
class FakeServer:
    """An in-thread server on fake engines (harness/fakes.py): its URL and its engines."""

    url: str
    pair: EnginePair
    server: ThreadServer


@pytest.fixture(scope="session")
def fake_server(
    settings_for: Callable[..., Settings],
) -> Callable[..., AbstractContextManager[FakeServer]]:
    """The one fake-engine server of the API-contract tests:
    `with fake_server(delay_s=..., vocab_size=..., **settings) as server: ...`."""

    @contextmanager
    def start(
        *, vocab_size: int = 100_000, delay_s: float = 0.0, **settings: object
    ) -> Iterator[FakeServer]:
        baseline = settings.get("baseline", "model") == "model"
        extra = list(settings.get("extra_baselines", {}))  # type: ignore[call-overload]
        pair, factory = fake_factory(vocab_size, delay_s, baseline=baseline, extra=extra)
        with ThreadServer(settings_for(**settings), factory) as server:
            yield FakeServer(server.url, pair, server)

    return start


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
def demo_url(settings_for: Callable[..., Settings]) -> Iterator[str]:
    """An in-thread server on the demo pair (transformers engine), shared by the trainer
    adapters' tests, the client's install test and the DPR trainer's."""
    with ThreadServer(settings_for(backend="transformers")) as server:
        yield server.url


@pytest.fixture(scope="session")
def tok(demo_dir: Path) -> RewardTokenizer:
    """The demo SFT tokenizer as the server wraps it, loaded once per run."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(demo_dir / "sft"))
    return RewardTokenizer(hf, len(hf))


@pytest.fixture(scope="session")
def reference(settings_for: Callable[..., Settings]) -> Iterator[EnginePair]:
    """The transformers engines on the demo pair with prompt sharing off (every sequence
    computed whole): what the vLLM engine and the server are checked against, loaded once."""
    pair = load_engine_pair(settings_for(backend="transformers", prefix_sharing=False)).pair
    yield pair
    pair.shutdown()


@pytest.fixture(scope="session")
def settings_for(demo_dir: Path) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {**pair_settings(demo_dir), "backend": "transformers"}
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make
