"""The real-engine tier's fixtures: a client of the session's vLLM server, and the reference it
is checked against (the transformers engines, every sequence computed whole)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.engines.base import EnginePair
from service.engines.factory import load_engine_pair


@pytest.fixture(scope="module")
def client(vllm_server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=vllm_server.url, timeout=300) as http:
        yield http


@pytest.fixture(scope="module")
def reference(settings_for: Any) -> Iterator[EnginePair]:
    """The transformers engines with prompt sharing off: nothing shared with what is tested."""
    pair = load_engine_pair(settings_for(backend="transformers", prefix_sharing=False)).pair
    yield pair
    asyncio.run(pair.shutdown())
