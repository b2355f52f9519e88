"""Property tests (hypothesis) of the request schema: generated JSON-ish bodies posted over
loopback to a fake-engine server, under the repository's profile (tests/conftest.py). The
maths' properties: tests/rewards/test_properties.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from dense_reward_client import encoding
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from dense_reward_server.sequence import ScoreInput

# Posts over loopback: slower cases, and one server fixture shared by all of them.
HTTP = settings(
    max_examples=200,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ---------------------------------------------------------------------------------------------
# The request schema over HTTP (fake engines, real uvicorn on loopback)

URL = "/v1/token_rewards"
VOCAB = 1024  # the demo tokenizer's
MAX_ITEMS = 8


@pytest.fixture(scope="module")
def fuzz_api(fake_server: Callable[..., Any]) -> Iterator[tuple[httpx.Client, Any]]:
    with (
        fake_server(vocab_size=VOCAB, max_items_per_request=MAX_ITEMS, max_model_len=256) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client, server.pair


# Text without lone surrogates: those are a known 500 (test_lone_surrogates_are_client_errors).
TEXT = st.text(max_size=12)
JSON_SCALAR = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | TEXT
JSON_ANY = st.recursive(
    JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
TOKEN = st.integers(0, VOCAB - 1) | st.sampled_from([-1, VOCAB, 2**40, 2])  # 2 = EOS
IDS = st.lists(TOKEN, max_size=12)
SHORT_TEXT = st.text(alphabet="0123456789 ab\n\u00e9\U0001f600", max_size=16) | TEXT
MASK = st.lists(st.sampled_from([0, 1]), max_size=12) | JSON_ANY
SPANS = st.lists(st.lists(st.integers(-1, 13), min_size=2, max_size=2), max_size=4) | JSON_ANY
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system"]) | TEXT},
    optional={"content": SHORT_TEXT | st.none(), "name": TEXT},
)
MESSAGES = st.lists(MESSAGE, max_size=3) | JSON_ANY
MEMBER = (
    SHORT_TEXT
    | IDS
    | st.fixed_dictionaries(
        {},
        optional={
            "completion": SHORT_TEXT,
            "completion_token_ids": IDS,
            "mask": MASK,
            "step_spans": SPANS,
            "id": TEXT,
            "extra": JSON_ANY,
        },
    )
)
ITEM = st.fixed_dictionaries(
    {},
    optional={
        "prompt": SHORT_TEXT,
        "messages": MESSAGES,
        "prompt_token_ids": IDS | JSON_ANY,
        "completion": SHORT_TEXT | JSON_ANY,
        "completion_token_ids": IDS,
        "completions": st.lists(MEMBER, max_size=4) | JSON_ANY,
        "mask": MASK,
        "step_spans": SPANS,
        "id": TEXT | JSON_ANY,
        "bogus": JSON_ANY,
    },
)
# Items that usually pass validation, so the 200 path gets as many cases as the error paths.
LIKELY_ITEM = st.fixed_dictionaries(
    {
        "prompt_token_ids": st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=10),
        "completion_token_ids": st.lists(st.integers(3, VOCAB - 1), min_size=1, max_size=10),
    },
    optional={"id": st.text(max_size=4)},
) | st.fixed_dictionaries(
    {
        "prompt": st.text(alphabet="0123456789 ab", max_size=12),
        "completions": st.lists(
            st.text(alphabet="0123456789 ab\n", min_size=1, max_size=10)
            | st.lists(st.integers(3, VOCAB - 1), min_size=1, max_size=6),
            min_size=1,
            max_size=3,
        ),
    }
)
OPTIONS = {
    "beta": st.floats(1e-3, 1e4) | JSON_ANY,
    "gamma": st.floats(0, 1) | JSON_ANY,
    "append_eos": st.booleans() | JSON_ANY,
    "include": st.lists(
        st.sampled_from(["tokens", "offsets", "logprobs", "returns", "bogus"]), max_size=4
    )
    | JSON_ANY,
    "tokenizer_fingerprint": TEXT,
    "timeout_s": st.floats(1, 60) | JSON_ANY,
    "steps": st.fixed_dictionaries({"delimiter": st.sampled_from(["\n", " ", "\n\n", "a"])})
    | JSON_ANY,
    "group_baseline": st.sampled_from(["mean", "leave_one_out", "median"]),
    "encoding": st.sampled_from(["json", "base64", "hex"]),
    "unknown_option": JSON_ANY,
}
VALID_OPTIONS = {
    "beta": st.floats(1e-3, 1e4),
    "gamma": st.floats(0, 1),
    "append_eos": st.booleans(),
    "include": st.lists(st.sampled_from(["tokens", "offsets", "logprobs", "returns"])),
    "timeout_s": st.floats(1, 60),
    "steps": st.fixed_dictionaries({"delimiter": st.sampled_from(["\n", " ", "\n\n", "a"])}),
    "group_baseline": st.sampled_from(["mean", "leave_one_out"]),
    "encoding": st.sampled_from(["json", "base64"]),
}
LIKELY_ITEMS = st.lists(LIKELY_ITEM, min_size=1, max_size=MAX_ITEMS + 1)
BODY = (
    st.fixed_dictionaries({"items": LIKELY_ITEMS}, optional=VALID_OPTIONS)
    | st.fixed_dictionaries(
        {"items": LIKELY_ITEMS},
        optional={k: v for k, v in OPTIONS.items() if k != "unknown_option"},
    )
    | st.fixed_dictionaries(
        {},
        optional={"items": st.lists(ITEM | LIKELY_ITEM, max_size=MAX_ITEMS + 2) | JSON_ANY}
        | OPTIONS,
    )
    | JSON_ANY
)


def strict_json(text: str) -> Any:
    """Parse, refusing NaN and Infinity (never valid in a response)."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"the response holds {name}")

    return json.loads(text, parse_constant=refuse)


def check_error(response: httpx.Response, body: Any) -> None:
    data = strict_json(response.text)
    assert set(data) == {"error"}, data
    error = data["error"]
    assert set(error) == {"code", "message", "index", "field"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["index"] is None or isinstance(error["index"], int)
    assert error["field"] is None or isinstance(error["field"], str)
    items = body.get("items") if isinstance(body, dict) else None
    if error["index"] is not None:
        assert isinstance(items, list) and 0 <= error["index"] < len(items), error


def check_rewards(result: dict[str, Any], item: dict[str, Any], body: dict[str, Any], pair: Any):
    """Token-id items: the rewards are the fake engines' (exactly, in float32)."""
    if body.get("encoding") == "base64":
        token_ids = encoding.decode_ints(result["token_ids"]).tolist()
        rewards = encoding.decode_floats(result["rewards"])
    else:
        token_ids = result["token_ids"]
        rewards = np.asarray([np.nan if r is None else r for r in result["rewards"]], np.float32)
    assert result["num_tokens"] == len(token_ids) == len(rewards)
    if "prompt_token_ids" not in item or "completion_token_ids" not in item:
        return
    sent = item["completion_token_ids"]
    assert token_ids[: len(sent)] == sent and len(token_ids) - len(sent) in (0, 1)
    scored = ScoreInput(item["prompt_token_ids"], token_ids)
    beta = np.float32(1.0 if body.get("beta") is None else body["beta"])
    expected = beta * (pair.sft.expected(scored) - pair.base.expected(scored))
    mask = item.get("mask")
    if mask is not None:
        mask = [*mask, 1] if result["eos_appended"] else mask
        expected = np.where(np.asarray(mask, bool), expected, np.float32(np.nan))
    assert rewards.astype(np.float32).tobytes() == expected.astype(np.float32).tobytes()


def check_success(response: httpx.Response, body: Any, pair: Any) -> None:
    data = strict_json(response.text)
    assert isinstance(body, dict) and isinstance(body["items"], list)
    items = body["items"]
    assert len(data["results"]) == len(items)
    for i, (result, item) in enumerate(zip(data["results"], items, strict=True)):
        assert result["index"] == i
        if "completions" in item:
            members = result["completions"]
            assert len(members) == len(item["completions"]) == result["group"]["size"]
            assert [m["index"] for m in members] == list(range(len(members)))
            scores = result["group"].get("scores")
            if scores is not None:
                assert len(scores) == len(members)
        else:
            check_rewards(result, item, body, pair)


@HTTP
@given(BODY)
@example({"items": [{"prompt_token_ids": [1], "completion_token_ids": [5, 6]}]})
@example({"items": []})
@example({"items": [{}]})
@example({"items": [{"prompt": "x", "completion": ""}]})
@example({"items": [{"prompt": "x", "completions": []}]})
@example({"items": [{"prompt_token_ids": [], "completion_token_ids": [5]}]})
@example({"items": [{"prompt_token_ids": [1], "completion_token_ids": [5], "mask": [1, 0]}]})
@example(
    {"items": [{"prompt_token_ids": [1], "completion_token_ids": [5], "step_spans": [[0, 0]]}]}
)
@example({"items": [{"prompt_token_ids": [1], "completion_token_ids": [1] * 300}]})
@example({"items": [{"prompt": "1", "completion": "2"}] * (MAX_ITEMS + 1)})
@example({"items": [{"prompt": "1", "completions": ["2"] * 65}]})
@example({"items": [{"messages": [{"role": "user"}], "completion": "2"}]})
@example({"items": [{"messages": [], "completion": "2"}]})
@example({"items": [{"prompt": "1", "completion": "2"}], "tokenizer_fingerprint": "sha256:x"})
@example({"items": [{"prompt": "1", "completion": "2\n\n3"}], "steps": {"delimiter": "\n\n"}})
@example(
    {
        "items": [{"prompt_token_ids": [1], "completion_token_ids": [5, 6], "mask": [0, 0]}],
        "include": ["returns", "tokens", "offsets"],
        "append_eos": True,
        "encoding": "base64",
    }
)
@example([1, 2])
@example(None)
def test_random_bodies_get_a_spec_answer_never_a_server_error(
    fuzz_api: tuple[httpx.Client, Any], body: Any
) -> None:
    client, pair = fuzz_api
    # ensure_ascii: every string travels as JSON escapes; allow_nan: NaN/Infinity are invalid
    # JSON, which the server must refuse as such.
    raw = json.dumps(body, ensure_ascii=True)
    response = client.post(URL, content=raw, headers={"content-type": "application/json"})
    event(f"status {response.status_code}")
    assert response.headers["content-type"].startswith("application/json")
    if response.status_code == 504:
        # A deadline the request itself set (timeout_s) may expire: that 5xx is the contract.
        assert isinstance(body, dict) and "timeout_s" in body
        assert strict_json(response.text)["error"]["code"] == "deadline_exceeded"
        return
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        check_success(response, body, pair)
    else:
        assert 400 <= response.status_code < 500
        check_error(response, body)


@HTTP
@given(st.binary(max_size=64) | st.text(max_size=32).map(str.encode))
@example(b"")
@example(b'{"items": [')
@example(b'{"items": [{"prompt": "a", "completion": "b"}], "beta": NaN}')
@example(b'{"items": [{"prompt": "a", "completion": "b"}], "beta": 1e400}')
@example(b"\xff\xfe")
def test_raw_bytes_get_a_spec_error(fuzz_api: tuple[httpx.Client, Any], raw: bytes) -> None:
    client, _ = fuzz_api
    response = client.post(URL, content=raw, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    check_error(response, None)


@pytest.mark.parametrize(
    "body",
    [
        {"items": [{"prompt": "\ud800", "completion": "b"}]},
        {"items": [{"prompt": "a", "completion": "\udc00"}]},
        {"items": [{"messages": [{"role": "user", "content": "\ud800"}], "completion": "b"}]},
        {"items": [{"prompt": "a", "completion": "b"}], "tokenizer_fingerprint": "\ud800"},
        {"items": [{"prompt": "a", "completion": "b", "id": "\udfff"}]},
        {"items": [{"prompt": "a", "completions": ["b", "\ud800"]}]},
        {
            "items": [
                {
                    "messages": [{"role": "user", "content": "a", "name": "\ud800"}],
                    "completion": "b",
                }
            ]
        },
    ],
    ids=["prompt", "completion", "messages", "tokenizer_fingerprint", "id", "group", "extra_key"],
)
def test_lone_surrogates_are_client_errors(
    fuzz_api: tuple[httpx.Client, Any], body: dict[str, Any]
) -> None:
    client, _ = fuzz_api
    raw = json.dumps(body, ensure_ascii=True)
    try:
        response = client.post(URL, content=raw, headers={"content-type": "application/json"})
        status, text = response.status_code, response.text
    except httpx.TransportError as error:
        status, text = 0, f"the server dropped the connection: {error!r}"
    if not 400 <= status < 500:
        # No traceback (pytrace=False): on Python 3.11.7 pytest's ast.parse of this file can
        # race the server thread's traceback logging of the 500 (gh-106905) and crash pytest.
        time.sleep(0.2)
        pytest.fail(f"{status}: {text}", pytrace=False)
    check_error(response, body)
