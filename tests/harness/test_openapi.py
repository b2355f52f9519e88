"""The response checker of the API tier fails on a body the spec does not describe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from harness.openapi import ResponseChecker, SchemaViolation


def test_checker_accepts_real_answers_and_refuses_altered_ones(
    fake_server: Callable[..., Any],
) -> None:
    checker = ResponseChecker()
    with fake_server(vocab_size=1024) as server:
        body = {"items": [{"prompt_token_ids": [1, 2], "completion_token_ids": [3, 4]}]}
        real = httpx.post(server.url + "/v1/token_rewards", json=body)
        checker.check(real)
        assert checker.checked == 1
        altered = real.json()
        del altered["results"][0]["total_reward"]
        with pytest.raises(SchemaViolation, match="at results/0"):
            checker.check(httpx.Response(200, json=altered, request=real.request))
        with pytest.raises(SchemaViolation, match="status 418 is not documented"):
            checker.check(httpx.Response(418, json={}, request=real.request))
        models = httpx.get(server.url + "/v1/models")
        broken = models.json()
        broken["data"][0]["prefix_sharing"] = "maybe"
        with pytest.raises(SchemaViolation, match="prefix_sharing"):
            checker.check(httpx.Response(200, json=broken, request=models.request))
