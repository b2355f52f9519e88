"""Property tests (hypothesis): the reward maths, groups, steps, base64, and the request schema.

Pure functions get generated inputs; the HTTP contract gets generated JSON-ish bodies posted
over loopback to a fake-engine server. Every test has a bounded `max_examples` and
`derandomize=True` (the same cases on every run: CI stays reproducible on a shared CPU) and
no example database (nothing written into the work tree).
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from dense_reward_client import encoding
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dense_reward_server.errors import NonFiniteLogprob
from dense_reward_server.rewards import steps
from dense_reward_server.rewards.groups import group_scores, group_stats
from dense_reward_server.rewards.maths import check_finite, sequence_rewards, token_rewards
from dense_reward_server.sequence import ScoreInput

FAST = settings(max_examples=150, derandomize=True, database=None, deadline=None)
HTTP = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Log-probs as engines give them: float32, <= 0, bounded (a real vocabulary of 1e6 gives ~-14
# on average; -100 leaves room for confident mistakes).
LOGPROB = st.floats(-100, 0, width=32, allow_nan=False, allow_infinity=False)
BETA = st.floats(1e-3, 1e4, allow_nan=False, allow_infinity=False)
GAMMA = st.floats(0, 1, allow_nan=False)


@st.composite
def scored_sequence(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    n = draw(st.integers(1, 40))
    sft = draw(arrays(np.float32, n, elements=LOGPROB))
    base = draw(arrays(np.float32, n, elements=LOGPROB))
    mask = draw(st.none() | arrays(np.int8, n, elements=st.integers(0, 1)))
    return sft, base, mask


# ---------------------------------------------------------------------------------------------
# Reward maths


@FAST
@given(scored_sequence(), BETA)
def test_rewards_are_beta_times_logprob_difference_in_float32(
    seq: tuple[np.ndarray, np.ndarray, np.ndarray | None], beta: float
) -> None:
    sft, base, mask = seq
    result = sequence_rewards(sft, base, beta=beta, mask=mask)
    assert result.rewards.dtype == np.float32
    expected = [
        np.float32(np.float32(beta) * np.float32(s - b)) for s, b in zip(sft, base, strict=True)
    ]
    for t, value in enumerate(result.rewards):
        if mask is not None and mask[t] == 0:
            assert np.isnan(value), "a masked token has no reward"
        else:
            # Bit for bit: the reward is the float32 product, not a float64 re-rounding.
            assert np.float32(value).tobytes() == expected[t].tobytes()
    np.testing.assert_array_equal(token_rewards(sft, base, beta), np.asarray(expected))


@FAST
@given(scored_sequence(), BETA)
def test_total_is_the_sum_of_unmasked_rewards_and_mean_is_total_over_scored(
    seq: tuple[np.ndarray, np.ndarray, np.ndarray | None], beta: float
) -> None:
    sft, base, mask = seq
    result = sequence_rewards(sft, base, beta=beta, mask=mask)
    rewards = token_rewards(sft, base, beta)
    keep = np.ones(len(sft), bool) if mask is None else mask.astype(bool)
    exact = math.fsum(float(r) for r in rewards[keep])
    scale = math.fsum(abs(float(r)) for r in rewards[keep])
    assert result.scored_tokens == int(keep.sum())
    assert math.isclose(result.total, exact, rel_tol=1e-12, abs_tol=1e-12 * (scale + 1))
    if result.scored_tokens == 0:
        assert result.mean is None and result.total == 0.0
    else:
        assert result.mean == result.total / result.scored_tokens
    assert math.isfinite(result.total)


@FAST
@given(scored_sequence(), BETA, GAMMA)
def test_returns_satisfy_the_discounted_recursion(
    seq: tuple[np.ndarray, np.ndarray, np.ndarray | None], beta: float, gamma: float
) -> None:
    sft, base, mask = seq
    result = sequence_rewards(sft, base, beta=beta, mask=mask, gamma=gamma)
    assert result.returns is not None
    rewards = token_rewards(sft, base, beta).astype(np.float64)
    keep = np.ones(len(sft), bool) if mask is None else mask.astype(bool)
    acting = np.where(keep, rewards, 0.0)  # masked rewards count as 0 in the returns
    n = len(acting)
    tol = 1e-9 * (float(np.abs(acting).sum()) + 1)
    # Closed form: returns[t] = sum_{k>=t} gamma^(k-t) r_k.
    for t in range(n):
        if not keep[t]:
            assert np.isnan(result.returns[t]), "a masked token has no return"
            continue
        closed = math.fsum(gamma ** (k - t) * acting[k] for k in range(t, n))
        assert abs(result.returns[t] - closed) <= tol
        # Recursion with the next position, where it is reported.
        following = 0.0 if t == n - 1 else result.returns[t + 1]
        if t == n - 1 or keep[t + 1]:
            assert abs(result.returns[t] - (acting[t] + gamma * following)) <= tol


@FAST
@given(scored_sequence(), BETA)
def test_no_gamma_means_no_returns(
    seq: tuple[np.ndarray, np.ndarray, np.ndarray | None], beta: float
) -> None:
    sft, base, mask = seq
    assert sequence_rewards(sft, base, beta=beta, mask=mask).returns is None


@FAST
@given(
    arrays(np.float32, st.integers(1, 20), elements=LOGPROB),
    st.sampled_from([np.nan, np.inf, -np.inf]),
    st.data(),
)
def test_a_non_finite_logprob_is_an_engine_fault_at_its_position(
    logprobs: np.ndarray, bad: float, data: st.DataObject
) -> None:
    position = data.draw(st.integers(0, len(logprobs) - 1))
    logprobs = logprobs.copy()
    logprobs[position:] = bad
    with pytest.raises(NonFiniteLogprob) as raised:
        check_finite(logprobs, model="sft", index=3)
    assert raised.value.index == 3 and f"token {position}" in raised.value.message


# ---------------------------------------------------------------------------------------------
# Group scores

TOTAL = st.floats(-1e4, 1e4, allow_nan=False)


@FAST
@given(st.lists(TOTAL, min_size=1, max_size=64))
def test_mean_scores_are_totals_minus_their_mean_and_sum_to_zero(totals: list[float]) -> None:
    values = np.asarray(totals, dtype=np.float64)
    scores = group_scores(values, "mean")
    scale = math.fsum(abs(v) for v in totals) + 1
    mean = math.fsum(totals) / len(totals)
    assert len(scores) == len(totals)
    for score, total in zip(scores, totals, strict=True):
        assert score is not None and abs(score - (total - mean)) <= 1e-12 * scale
    assert abs(math.fsum(s for s in scores if s is not None)) <= 1e-9 * scale


@FAST
@given(st.lists(TOTAL, min_size=1, max_size=64))
def test_leave_one_out_scores(totals: list[float]) -> None:
    values = np.asarray(totals, dtype=np.float64)
    scores = group_scores(values, "leave_one_out")
    n = len(totals)
    if n == 1:
        assert scores == [None], "no baseline for a group of one"
        return
    scale = math.fsum(abs(v) for v in totals) + 1
    mean_scores = group_scores(values, "mean")
    for i, score in enumerate(scores):
        assert score is not None
        others = math.fsum(totals[:i] + totals[i + 1 :]) / (n - 1)
        assert abs(score - (totals[i] - others)) <= 1e-9 * scale
        # R_i - mean_{j!=i} R_j = n/(n-1) * (R_i - mean_j R_j)
        assert abs(score - n / (n - 1) * mean_scores[i]) <= 1e-9 * scale  # type: ignore[operator]
    # Hence the leave-one-out scores sum to zero too.
    assert abs(math.fsum(s for s in scores if s is not None)) <= 1e-9 * scale


@FAST
@given(st.lists(TOTAL, min_size=1, max_size=64))
def test_group_stats_are_mean_and_population_std(totals: list[float]) -> None:
    stats = group_stats(np.asarray(totals, dtype=np.float64))
    mean = math.fsum(totals) / len(totals)
    variance = math.fsum((v - mean) ** 2 for v in totals) / len(totals)
    scale = math.fsum(abs(v) for v in totals) + 1
    assert stats["size"] == len(totals)
    assert abs(stats["mean_total_reward"] - mean) <= 1e-12 * scale
    assert abs(stats["std_total_reward"] - math.sqrt(variance)) <= 1e-6 * scale


# ---------------------------------------------------------------------------------------------
# Steps

# A tiny alphabet makes delimiters frequent, overlapping and adjacent.
STEP_TEXT = st.text(alphabet="ab\n", max_size=40)
DELIMITER = st.text(alphabet="ab\n", min_size=1, max_size=3)


@FAST
@given(STEP_TEXT, DELIMITER)
@example("a\n\nb\n\n", "\n\n")
@example("aaa", "aa")
@example("", "\n")
def test_text_steps_tile_the_text_and_end_after_a_delimiter(text: str, delimiter: str) -> None:
    spans = steps.text_steps(text, delimiter)
    assert spans, "a text always has at least one step"
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end == start, "steps tile the text"
    for k, (start, end) in enumerate(spans):
        found = text.find(delimiter, start)
        if k < len(spans) - 1:
            # The step ends right after the first delimiter occurrence from its start.
            assert start < end and found == end - len(delimiter)
        else:
            # The last step: no delimiter inside it, or it ends with the text's last delimiter.
            assert found == -1 or found + len(delimiter) == end == len(text)
    # str.count scans for non-overlapping occurrences from the left, as the steps do.
    assert len(spans) in (text.count(delimiter), text.count(delimiter) + 1)


@st.composite
def tokenized_text(draw: st.DrawFn) -> tuple[str, list[tuple[int, int]]]:
    """A text cut into tokens of width >= 1, some followed by zero-width tokens (the later bytes
    of a multi-byte character), maybe ending with zero-width tokens (EOS)."""
    pieces = draw(st.lists(st.text(alphabet="ab\n", min_size=1, max_size=4), max_size=30))
    offsets = []
    for start, end in steps.piece_offsets(pieces):
        offsets += [(start, end)] + [(end, end)] * draw(st.integers(0, 2))
    end = offsets[-1][1] if offsets else 0
    offsets += [(end, end)] * draw(st.integers(0 if offsets else 1, 2))
    return "".join(pieces), offsets


def check_token_steps(
    text: str, offsets: list[tuple[int, int]], char_spans: list[tuple[int, int]]
) -> None:
    token_spans = steps.tokens_per_step(offsets, char_spans)
    assert len(token_spans) == len(char_spans)
    assert token_spans[0][0] == 0 and token_spans[-1][1] == len(offsets)
    for (_, end), (start, _) in itertools.pairwise(token_spans):
        assert end == start, "token spans tile all tokens, in order"
    for k, (first, last) in enumerate(token_spans):
        for t in range(first, last):
            start, end = offsets[t]
            if start == end == len(text):
                assert k == len(char_spans) - 1, "a zero-width token at the end: last step"
            elif start == end:
                assert first < t, "a zero-width token inside the text: its predecessor's step"
            else:
                lo, hi = char_spans[k]
                assert lo <= start < hi, f"token {t} starts outside its step {k}"


@FAST
@given(tokenized_text(), DELIMITER)
def test_tokens_per_step_tile_all_tokens_by_their_first_character(
    tokens: tuple[str, list[tuple[int, int]]], delimiter: str
) -> None:
    text, offsets = tokens
    check_token_steps(text, offsets, steps.text_steps(text, delimiter))


def test_tokens_per_step_with_zero_width_tokens_inside_the_text() -> None:
    # '😀\n\n😀\n\nb' as the demo tokenizer gives it: each emoji is 4 byte tokens, the last 3 of
    # zero width. Steps by "\n\n": tokens [0, 6), [6, 12), [12, 13).
    text = "😀\n\n😀\n\nb"
    offsets = [(0, 1), (1, 1), (1, 1), (1, 1), (1, 2), (2, 3)]
    offsets += [(3, 4), (4, 4), (4, 4), (4, 4), (4, 5), (5, 6), (6, 7)]
    char_spans = steps.text_steps(text, "\n\n")
    assert steps.tokens_per_step(offsets, char_spans) == [(0, 6), (6, 12), (12, 13)]


@FAST
@given(st.lists(st.text(max_size=5), max_size=30))
def test_piece_offsets_lay_pieces_end_to_end(pieces: list[str]) -> None:
    offsets = steps.piece_offsets(pieces)
    text = "".join(pieces)
    assert [text[a:b] for a, b in offsets] == pieces


@FAST
@given(arrays(np.float32, st.integers(1, 30), elements=st.floats(-5, 5, width=32)), st.data())
def test_step_rewards_sum_scored_tokens(rewards: np.ndarray, data: st.DataObject) -> None:
    n = len(rewards)
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=n - 1))) if n > 1 else []
    bounds = [0, *cuts, n]
    spans = list(itertools.pairwise(bounds))
    masked = data.draw(arrays(np.bool_, n))
    values = np.where(masked, np.float32(np.nan), rewards)
    result = steps.step_rewards(values, spans, None)
    assert [s.token_span for s in result] == spans
    assert sum(s.scored_tokens for s in result) == int((~masked).sum())
    for step, (a, b) in zip(result, spans, strict=True):
        expected = math.fsum(float(v) for v in values[a:b] if not np.isnan(v))
        assert abs(step.reward - expected) <= 1e-9 * (1 + float(np.abs(rewards).sum()))


# ---------------------------------------------------------------------------------------------
# Compact arrays


@FAST
@given(arrays(np.float32, st.integers(0, 64), elements=st.floats(width=32)))
def test_base64_floats_round_trip_bit_for_bit(values: np.ndarray) -> None:
    text = encoding.encode_floats(values)
    assert text.isascii()
    decoded = encoding.decode_floats(text)
    assert decoded.dtype == np.dtype("<f4")
    assert decoded.view("<u4").tolist() == values.astype("<f4").view("<u4").tolist()
    # README's recipe gives the same thing.
    assert np.frombuffer(base64.b64decode(text), dtype="<f4").tobytes() == decoded.tobytes()


@FAST
@given(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=64))
def test_base64_ints_round_trip(values: list[int]) -> None:
    assert encoding.decode_ints(encoding.encode_ints(values)).tolist() == values


@FAST
@given(st.lists(st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)), max_size=32))
def test_base64_offsets_flatten_as_start_end_pairs(pairs: list[tuple[int, int]]) -> None:
    decoded = encoding.decode_ints(encoding.encode_ints(pairs)).reshape(-1, 2)
    assert [tuple(p) for p in decoded.tolist()] == pairs


@FAST
@given(arrays(np.float32, st.integers(0, 64), elements=st.floats(width=32, allow_nan=False)))
def test_json_and_base64_forms_decode_to_the_same_bits(values: np.ndarray) -> None:
    # The JSON form (orjson, as the service serializes) prints float32 in shortest exact form.
    finite = values[np.isfinite(values)]
    from_json = np.asarray(json.loads(orjson.dumps(finite, option=orjson.OPT_SERIALIZE_NUMPY)))
    from_b64 = encoding.decode_floats(encoding.encode_floats(finite))
    assert from_json.astype("<f4").tobytes() == from_b64.tobytes()


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
