"""Reward guards against hand-computed values: the pessimistic reference, the floor, the clip,
and the sequence aggregates with their returns (README, Reward guards)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dense_reward_server.rewards.maths import Guards, reference_logprobs, sequence_rewards

SFT = np.array([-1.0, -10.0, -0.5, -2.0], dtype=np.float32)
BASE = np.array([-3.0, -5.0, -0.5, -1.0], dtype=np.float32)
HALF = np.array([-2.0, -14.0, -1.5, -4.0], dtype=np.float32)


def test_pessimistic_reference_takes_the_most_likely_baseline_per_token() -> None:
    assert reference_logprobs([BASE, HALF], None).tolist() == [-2.0, -5.0, -0.5, -1.0]
    assert reference_logprobs([HALF], None).tolist() == HALF.tolist()
    # Against sft-half alone the absurd token (log pi_sft -10) earns +4; against the max, -5.
    alone = sequence_rewards(SFT, reference_logprobs([HALF], None), beta=1.0)
    both = sequence_rewards(SFT, reference_logprobs([BASE, HALF], None), beta=1.0)
    assert alone.rewards.tolist() == [1.0, 4.0, 1.0, 2.0]
    assert both.rewards.tolist() == [1.0, -5.0, 0.0, -1.0]


def test_floor_caps_what_an_absurd_token_can_earn() -> None:
    ref = reference_logprobs([HALF], -8.0)
    assert ref.tolist() == [-2.0, -8.0, -1.5, -4.0]
    seq = sequence_rewards(SFT, ref, beta=0.5)
    # 0.5 * (1, -2, 1, 2): the +4 of the absurd token became -1.
    assert seq.rewards.tolist() == [0.5, -1.0, 0.5, 1.0]
    assert seq.total == pytest.approx(1.0)


def test_clip_bounds_each_reward_after_beta() -> None:
    ref = reference_logprobs([HALF], None)
    seq = sequence_rewards(SFT, ref, beta=2.0, guards=Guards(clip_min=-1.0, clip_max=3.0))
    # 2 * (1, 4, 1, 2) = (2, 8, 2, 4) -> (2, 3, 2, 3)
    assert seq.rewards.tolist() == [2.0, 3.0, 2.0, 3.0]
    assert seq.rewards.dtype == np.float32
    low_only = sequence_rewards(SFT, BASE, beta=1.0, guards=Guards(clip_min=-1.5))
    assert low_only.rewards.tolist() == [2.0, -1.5, 0.0, -1.0]


R = np.array([2.0, -1.0, 0.5, -3.0], dtype=np.float32)  # rewards at beta 1 against zeros


def test_sum_and_mean_aggregates_and_their_returns() -> None:
    total = sequence_rewards(R, np.zeros(4, np.float32), beta=1.0, gamma=1.0)
    assert total.aggregate == pytest.approx(-1.5)
    assert total.returns is not None
    assert total.returns.tolist() == pytest.approx([-1.5, -3.5, -2.5, -3.0])
    mean = sequence_rewards(
        R, np.zeros(4, np.float32), beta=1.0, gamma=1.0, guards=Guards(aggregate="mean")
    )
    assert mean.aggregate == pytest.approx(-1.5 / 4)
    assert mean.returns is not None
    assert mean.returns.tolist() == pytest.approx([-0.375, -0.875, -0.625, -0.75])
    assert mean.total == pytest.approx(-1.5)  # the total stays the sum


def test_min_aggregate_returns_suffix_minima() -> None:
    seq = sequence_rewards(
        R, np.zeros(4, np.float32), beta=1.0, gamma=1.0, guards=Guards(aggregate="min")
    )
    assert seq.aggregate == -3.0
    assert seq.returns is not None
    assert seq.returns.tolist() == [-3.0, -3.0, -3.0, -3.0]
    early = np.array([-3.0, 1.0, 0.5, 2.0], dtype=np.float32)
    seq = sequence_rewards(
        early, np.zeros(4, np.float32), beta=1.0, gamma=1.0, guards=Guards(aggregate="min")
    )
    assert seq.returns is not None
    assert seq.returns.tolist() == [-3.0, 0.5, 0.5, 2.0]


def test_soft_min_weights_by_hand_and_its_limits() -> None:
    guards = Guards(aggregate="soft_min", temperature=2.0)
    seq = sequence_rewards(R, np.zeros(4, np.float32), beta=1.0, gamma=1.0, guards=guards)
    exps = [math.exp(-r / 2.0) for r in (2.0, -1.0, 0.5, -3.0)]
    weights = [e / sum(exps) for e in exps]
    contributions = [w * r for w, r in zip(weights, (2.0, -1.0, 0.5, -3.0), strict=True)]
    assert seq.aggregate == pytest.approx(sum(contributions))
    assert seq.returns is not None
    assert seq.returns.tolist() == pytest.approx(
        [sum(contributions[t:]) for t in range(4)]
    )  # returns[0] is the aggregate
    cold = sequence_rewards(
        R, np.zeros(4, np.float32), beta=1.0, guards=Guards(aggregate="soft_min", temperature=1e-3)
    )
    hot = sequence_rewards(
        R, np.zeros(4, np.float32), beta=1.0, guards=Guards(aggregate="soft_min", temperature=1e6)
    )
    assert cold.aggregate == pytest.approx(-3.0)
    assert hot.aggregate == pytest.approx(-1.5 / 4, abs=1e-5)


def test_soft_min_of_extreme_rewards_stays_finite() -> None:
    wild = np.array([1e4, -1e4, 0.0], dtype=np.float32)
    seq = sequence_rewards(
        wild,
        np.zeros(3, np.float32),
        beta=1.0,
        guards=Guards(aggregate="soft_min", temperature=0.01),
    )
    assert seq.aggregate == pytest.approx(-1e4)


@pytest.mark.parametrize("aggregate", ["sum", "mean", "min", "soft_min"])
def test_masked_tokens_take_no_part_in_any_aggregate(aggregate: str) -> None:
    mask = np.array([1, 0, 1, 0])
    guards = Guards(aggregate=aggregate, temperature=1.0)  # type: ignore[arg-type]
    masked = sequence_rewards(
        R, np.zeros(4, np.float32), beta=1.0, mask=mask, gamma=1.0, guards=guards
    )
    kept = sequence_rewards(R[[0, 2]], np.zeros(2, np.float32), beta=1.0, gamma=1.0, guards=guards)
    assert masked.aggregate == pytest.approx(kept.aggregate)
    assert masked.returns is not None and kept.returns is not None
    assert np.isnan(masked.returns[1]) and np.isnan(masked.returns[3])
    assert masked.returns[[0, 2]].tolist() == pytest.approx(kept.returns.tolist())
    assert np.isnan(masked.rewards[1])


@pytest.mark.parametrize("aggregate", ["mean", "min", "soft_min"])
def test_nothing_scored_has_no_aggregate(aggregate: str) -> None:
    seq = sequence_rewards(
        R,
        np.zeros(4, np.float32),
        beta=1.0,
        mask=np.zeros(4, int),
        guards=Guards(aggregate=aggregate),  # type: ignore[arg-type]
    )
    assert seq.aggregate is None and seq.total == 0.0
