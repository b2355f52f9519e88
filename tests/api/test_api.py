"""HTTP API over real loopback (uvicorn in a thread) with a deterministic fake engine pair.

Correctness of the numbers against real models lives in test_vllm_engine.py; here the
contract: shapes, order, options, and every error in the SPEC error shape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from dense_reward_server.sequence import ScoreInput

URL = "/v1/token_rewards"


@pytest.fixture(scope="module")
def api(fake_server: Callable[..., Any]) -> Iterator[tuple[httpx.Client, Any]]:
    settings = {"max_items_per_request": 8, "max_model_len": 256, "max_body_bytes": 64 * 1024}
    with (
        fake_server(**settings) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client, server.pair


def post(client: httpx.Client, body: Any) -> httpx.Response:
    return client.post(URL, json=body)


def expected_rewards(
    pair: Any, prompt_ids: list[int], completion_ids: list[int], beta: float
) -> np.ndarray:
    item = ScoreInput(prompt_ids, completion_ids)
    return np.float32(beta) * (pair.sft.expected(item) - pair.base.expected(item))


def test_health_ready_models_docs(api: tuple[httpx.Client, Any]) -> None:
    client, _ = api
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    models = client.get("/v1/models").json()
    assert [m["role"] for m in models["data"]] == ["sft", "base"]
    assert models["tokenizer_fingerprint"].startswith("sha256:")
    for key in ("dtype", "max_model_len", "backend", "engine_version", "revision"):
        assert key in models["data"][0]
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert URL in spec["paths"]


def test_results_answer_items_in_order_with_all_input_kinds(api: tuple[httpx.Client, Any]) -> None:
    client, pair = api
    body = {
        "items": [
            {"prompt": "Sort ascending: 3 1 2", "completion": "1 2 3", "id": "a"},
            {
                "messages": [{"role": "user", "content": "Sort ascending: 3 1 2"}],
                "completion": "1 2 3",
            },
            {"prompt_token_ids": [1, 40, 41], "completion_token_ids": [50, 51, 52], "id": "c"},
        ],
        "beta": 0.5,
        "include": ["tokens", "offsets", "logprobs", "returns"],
    }
    response = post(client, body)
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] and response.headers["x-total-time"]
    data = response.json()
    assert data["object"] == "token_rewards" and data["model"]["beta"] == 0.5
    assert [r["index"] for r in data["results"]] == [0, 1, 2]
    assert [r["id"] for r in data["results"]] == ["a", None, "c"]
    ids_result = data["results"][2]
    assert ids_result["token_ids"] == [50, 51, 52]
    want = expected_rewards(pair, [1, 40, 41], [50, 51, 52], 0.5)
    assert np.array_equal(np.asarray(ids_result["rewards"], dtype=np.float32), want)
    assert ids_result["total_reward"] == pytest.approx(float(want.sum()), abs=1e-6)
    assert ids_result["mean_reward"] == pytest.approx(float(want.mean()), abs=1e-6)
    assert ids_result["returns"] == pytest.approx(np.cumsum(want[::-1])[::-1].tolist(), abs=1e-6)
    assert ids_result["offsets"] is None
    text_result = data["results"][0]
    assert "".join(text_result["tokens"]) == "1 2 3"
    assert text_result["offsets"][-1][1] == 5
    usage = data["usage"]
    assert usage["completion_tokens"] == sum(r["num_tokens"] for r in data["results"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_default_include_and_server_beta(api: tuple[httpx.Client, Any]) -> None:
    client, _ = api
    result = post(client, {"items": [{"prompt": "x", "completion": "1 2"}]}).json()["results"][0]
    assert "sft_logprobs" in result and "base_logprobs" in result
    assert "tokens" not in result and "returns" not in result
    rewards = np.float32(1.0) * (
        np.float32(result["sft_logprobs"]) - np.float32(result["base_logprobs"])
    )
    assert np.array_equal(np.float32(result["rewards"]), rewards)
    only = post(client, {"items": [{"prompt": "x", "completion": "1 2"}], "include": []}).json()
    assert "sft_logprobs" not in only["results"][0]


def test_mask_gives_null_rewards_and_excludes_them(api: tuple[httpx.Client, Any]) -> None:
    client, _ = api
    body = {
        "items": [
            {"prompt_token_ids": [1, 2], "completion_token_ids": [5, 6, 7], "mask": [1, 0, 1]}
        ]
    }
    result = post(client, {**body, "include": ["returns"]}).json()["results"][0]
    assert result["rewards"][1] is None and result["returns"][1] is None
    assert result["scored_tokens"] == 2
    assert result["total_reward"] == pytest.approx(
        result["rewards"][0] + result["rewards"][2], abs=1e-6
    )


def test_append_eos_is_scored_and_reported(api: tuple[httpx.Client, Any]) -> None:
    client, _ = api
    plain = post(client, {"items": [{"prompt": "x", "completion": "1 2"}]}).json()["results"][0]
    eos = post(client, {"items": [{"prompt": "x", "completion": "1 2"}], "append_eos": True}).json()
    result = eos["results"][0]
    assert result["eos_appended"] and result["num_tokens"] == plain["num_tokens"] + 1
    assert result["token_ids"][:-1] == plain["token_ids"]


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "index", "field"}
    assert "Traceback" not in response.text
    return dict(body["error"])


GOOD = {"prompt": "Sort ascending: 2 1", "completion": "1 2"}


@pytest.mark.parametrize(
    ("body", "status", "code", "index", "field"),
    [
        ({"items": [GOOD, {"completion": "1"}]}, 422, "missing_field", 1, "prompt"),
        ({"items": [GOOD, {"prompt": "x"}]}, 422, "missing_field", 1, "completion"),
        (
            {
                "items": [
                    GOOD,
                    {
                        "prompt": "x",
                        "messages": [{"role": "user", "content": "x"}],
                        "completion": "1",
                    },
                ]
            },
            422,
            "conflicting_fields",
            1,
            "messages",
        ),
        (
            {"items": [GOOD, {"prompt": "x", "completion": "1", "completion_token_ids": [4]}]},
            422,
            "conflicting_fields",
            1,
            "completion_token_ids",
        ),
        (
            {"items": [GOOD, GOOD, {"prompt": "x", "completion": ""}]},
            422,
            "empty_completion",
            2,
            "completion",
        ),
        (
            {"items": [{"prompt": "x", "completion_token_ids": [1, 10**7]}]},
            422,
            "token_out_of_vocabulary",
            0,
            "completion_token_ids",
        ),
        (
            {"items": [GOOD, {"prompt_token_ids": [1] * 200, "completion_token_ids": [5] * 100}]},
            422,
            "sequence_too_long",
            1,
            "completion_token_ids",
        ),
        ({"items": [GOOD], "beta": "high"}, 422, "invalid_type", None, "beta"),
        ({"items": [GOOD], "beta": 0}, 422, "invalid_value", None, "beta"),
        (
            {"items": [GOOD, {"prompt": "x", "completion": "1 2", "mask": [1]}]},
            422,
            "mask_length_mismatch",
            1,
            "mask",
        ),
        (
            {"items": [GOOD, {"prompt": "x", "completion": "1", "mask": [2]}]},
            422,
            "invalid_value",
            1,
            "mask",
        ),
        (
            {"items": [GOOD], "include": ["tokens", "attention"]},
            422,
            "unknown_include",
            None,
            "include",
        ),
        (
            {"items": [GOOD, {"prompt": "x", "completion": "1", "extra": 1}]},
            422,
            "unknown_field",
            1,
            "extra",
        ),
        (
            {"items": [{"prompt_token_ids": ["1"], "completion": "1"}]},
            422,
            "invalid_type",
            0,
            "prompt_token_ids",
        ),
        ({"items": []}, 422, "invalid_value", None, "items"),
        ({}, 422, "missing_field", None, "items"),
        ({"items": [GOOD] * 9}, 413, "too_many_items", None, "items"),
        (
            {"items": [GOOD], "tokenizer_fingerprint": "sha256:0"},
            409,
            "tokenizer_mismatch",
            None,
            "tokenizer_fingerprint",
        ),
    ],
)
def test_bad_requests_get_the_error_shape(
    api: tuple[httpx.Client, Any],
    body: Any,
    status: int,
    code: str,
    index: int | None,
    field: str | None,
) -> None:
    client, _ = api
    response = post(client, body)
    assert response.status_code == status, response.text
    error = error_of(response)
    assert (error["code"], error["index"], error["field"]) == (code, index, field)
    assert error["message"]


@pytest.mark.parametrize("raw", [b"{not json", b'{"items": [', b"", b"\xff\xfe"])
def test_malformed_json_is_400(api: tuple[httpx.Client, Any], raw: bytes) -> None:
    client, _ = api
    response = client.post(URL, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] in ("malformed_json", "missing_body")


def test_unknown_route_and_method_use_the_error_shape(api: tuple[httpx.Client, Any]) -> None:
    client, _ = api
    assert error_of(client.get("/nope"))["code"] == "not_found"
    assert error_of(client.get(URL))["code"] == "method_not_allowed"
    assert client.get(URL).headers["allow"] == "POST"


def test_body_over_the_byte_limit_is_413_before_parsing(api: tuple[httpx.Client, Any]) -> None:
    client, _ = api
    body = orjson.dumps({"items": [{"prompt": "x", "completion": "y"}], "pad": "z" * 70_000})
    declared = client.post(URL, content=body, headers={"content-type": "application/json"})
    assert declared.status_code == 413
    assert error_of(declared)["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    streamed = client.post(URL, content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert error_of(streamed)["code"] == "body_too_large"
    # Under the limit, the same route still answers.
    assert post(client, {"items": [{"prompt": "x", "completion": "y"}]}).status_code == 200


def test_matching_fingerprint_is_accepted(api: tuple[httpx.Client, Any]) -> None:
    client, _ = api
    fingerprint = client.get("/v1/models").json()["tokenizer_fingerprint"]
    assert post(client, {"items": [GOOD], "tokenizer_fingerprint": fingerprint}).status_code == 200


def test_request_id_is_echoed(api: tuple[httpx.Client, Any]) -> None:
    client, _ = api
    response = client.post(URL, json={"items": [GOOD]}, headers={"x-request-id": "trainer-step-7"})
    assert response.headers["x-request-id"] == "trainer-step-7"


def test_concurrent_requests_get_their_own_results(api: tuple[httpx.Client, Any]) -> None:
    client, pair = api

    def one(n: int) -> bool:
        ids = [10 + n, 11 + n, 12 + n]
        result = post(
            client, {"items": [{"prompt_token_ids": [1, n + 2], "completion_token_ids": ids}]}
        )
        got = np.float32(result.json()["results"][0]["rewards"])
        return bool(np.array_equal(got, expected_rewards(pair, [1, n + 2], ids, 1.0)))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(one, range(32)))


# Deadlines, admission and auth need their own server settings.


@pytest.fixture
def slow_server(fake_server: Callable[..., Any]) -> Iterator[tuple[str, Any]]:
    with fake_server(delay_s=1.5, max_inflight_tokens=40, request_timeout_s=30) as server:
        yield server.url, server.pair


def test_timing_headers_split_engine_time_from_server_time(slow_server: tuple[str, Any]) -> None:
    url, _ = slow_server
    response = httpx.post(url + URL, json={"items": [GOOD]}, timeout=30)
    assert response.status_code == 200
    total = float(response.headers["x-total-time"].removesuffix("ms"))
    engine = float(response.headers["x-engine-time"].removesuffix("ms"))
    # The fake engines sleep 1.5 s: that wait is inside the engine share (a lower bound only,
    # never a timed upper bound), and the server's time holds the engine time. uvloop's timers
    # count whole milliseconds of a cached loop clock: the sleep may end up to 1 ms early.
    assert 1499 <= engine <= total


def test_deadline_expiry_is_504_and_aborts_both_engines(slow_server: tuple[str, Any]) -> None:
    url, pair = slow_server
    body = {"items": [GOOD], "timeout_s": 0.2}
    response = httpx.post(url + URL, json=body, timeout=30)
    assert response.status_code == 504
    assert error_of(response)["code"] == "deadline_exceeded"
    assert pair.sft.cancelled == 1 and pair.base.cancelled == 1
    assert pair.sft.inflight == 0 and pair.base.inflight == 0


def test_over_the_inflight_token_limit_is_429_with_retry_after(
    slow_server: tuple[str, Any],
) -> None:
    url, _ = slow_server
    body = {"items": [{"prompt_token_ids": [1] * 10, "completion_token_ids": [5] * 20}]}

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            first = asyncio.create_task(client.post(URL, json=body))
            await asyncio.sleep(0.5)
            second = await client.post(URL, json=body)
            return [await first, second]

    first, second = asyncio.run(race())
    assert first.status_code == 200
    assert second.status_code == 429 and second.headers["retry-after"] == "1"
    assert error_of(second)["code"] == "inflight_tokens_limit"
    time.sleep(0.1)
    assert httpx.post(url + URL, json=body, timeout=30).status_code == 200


def test_api_keys_guard_everything_but_health_ready(fake_server: Callable[..., Any]) -> None:
    with (
        fake_server(api_keys=["s3cret-key"]) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
        for headers in (
            {},
            {"authorization": "Bearer wrong"},
            {"authorization": "Basic s3cret-key"},
        ):
            response = client.post(URL, json={"items": [GOOD]}, headers=headers)
            assert response.status_code == 401
            assert error_of(response) == {
                "code": "unauthorized",
                "message": "missing or invalid API key",
                "index": None,
                "field": None,
            }
        ok = client.post(
            URL, json={"items": [GOOD]}, headers={"authorization": "Bearer s3cret-key"}
        )
        assert ok.status_code == 200
        assert client.get("/v1/models").status_code == 401


def test_client_disconnect_aborts_the_work_in_both_engines(slow_server: tuple[str, Any]) -> None:
    url, pair = slow_server
    body = {"items": [GOOD]}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + URL, json=body, timeout=0.3)  # the client gives up and disconnects
    deadline = time.monotonic() + 5
    while pair.sft.cancelled + pair.base.cancelled < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pair.sft.cancelled == 1 and pair.base.cancelled == 1
    assert pair.sft.inflight == 0 and pair.base.inflight == 0
    metrics = httpx.get(url + "/metrics").text
    assert "drs_inflight_tokens 0.0" in metrics and "drs_inflight_requests 0.0" in metrics
