"""The live server the adapter tests score against (one per package run)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from service.api.app import create_app


@pytest.fixture(scope="package")
def url(settings_for: Callable[..., Any], thread_server: Any) -> Iterator[str]:
    with thread_server(create_app(settings_for(backend="transformers"))) as server:
        yield server.url
