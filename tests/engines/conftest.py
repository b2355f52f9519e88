"""The real-engine tier's fixture: a client of the session's vLLM server (the reference it is
checked against is the session's, tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest


@pytest.fixture(scope="module")
def client(vllm_server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=vllm_server.url, timeout=300) as http:
        yield http
