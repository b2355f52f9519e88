"""Property tests (hypothesis) of the reward maths, group scores and steps: pure functions,
generated inputs, under the repository's profile (tests/conftest.py: bounded, the same cases on
every run, no example database)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dense_reward_server.errors import NonFiniteLogprob
from dense_reward_server.rewards import steps
from dense_reward_server.rewards.groups import group_scores, group_stats
from dense_reward_server.rewards.maths import check_finite, sequence_rewards, token_rewards

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


@given(scored_sequence(), BETA)
def test_no_gamma_means_no_returns(
    seq: tuple[np.ndarray, np.ndarray, np.ndarray | None], beta: float
) -> None:
    sft, base, mask = seq
    assert sequence_rewards(sft, base, beta=beta, mask=mask).returns is None


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


@given(st.lists(st.text(max_size=5), max_size=30))
def test_piece_offsets_lay_pieces_end_to_end(pieces: list[str]) -> None:
    offsets = steps.piece_offsets(pieces)
    text = "".join(pieces)
    assert [text[a:b] for a, b in offsets] == pieces


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
