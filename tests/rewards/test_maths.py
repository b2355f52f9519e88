"""Reward maths against hand-computed values (SPEC section 1)."""

from __future__ import annotations

import numpy as np
import pytest

from dense_reward_server.errors import NonFiniteLogprob
from dense_reward_server.rewards.maths import check_finite, discounted_returns, sequence_rewards

SFT = np.array([-0.5, -1.0, -0.25], dtype=np.float32)
BASE = np.array([-1.5, -0.75, -2.25], dtype=np.float32)


def test_rewards_totals_and_mean_by_hand() -> None:
    seq = sequence_rewards(SFT, BASE, beta=0.5)
    # 0.5 * (1.0, -0.25, 2.0)
    assert seq.rewards.tolist() == [0.5, -0.125, 1.0]
    assert seq.rewards.dtype == np.float32
    assert seq.total == pytest.approx(1.375)
    assert seq.mean == pytest.approx(1.375 / 3)
    assert seq.scored_tokens == 3
    assert seq.returns is None


def test_returns_undiscounted_and_discounted_by_hand() -> None:
    undiscounted = sequence_rewards(SFT, BASE, beta=1.0, gamma=1.0).returns
    assert undiscounted is not None
    assert undiscounted.tolist() == pytest.approx([2.75, 1.75, 2.0])
    # gamma = 0.5: r2 = 2; r1 = -0.5 + 0.5*2 = 0.5; r0 = 2 + 0.5*0.5 = 2.25
    assert discounted_returns(np.array([2.0, -0.5, 2.0]), 0.5).tolist() == [2.25, 0.5, 2.0]
    assert discounted_returns(np.array([1.0, 1.0]), 0.0).tolist() == [1.0, 1.0]


def test_mask_excludes_tokens_from_rewards_and_totals() -> None:
    seq = sequence_rewards(SFT, BASE, beta=1.0, mask=np.array([1, 0, 1]), gamma=1.0)
    assert seq.rewards[0] == 1.0 and np.isnan(seq.rewards[1]) and seq.rewards[2] == 2.0
    assert seq.total == 3.0
    assert seq.mean == 1.5
    assert seq.scored_tokens == 2
    assert seq.returns is not None
    # The masked token adds nothing to the returns before it and has none itself.
    assert seq.returns[0] == 3.0 and np.isnan(seq.returns[1]) and seq.returns[2] == 2.0


def test_all_masked_has_zero_total_and_no_mean() -> None:
    seq = sequence_rewards(SFT, BASE, beta=1.0, mask=np.array([0, 0, 0]))
    assert seq.total == 0.0
    assert seq.mean is None


@pytest.mark.parametrize("bad", [-np.inf, np.nan, np.inf])
def test_non_finite_logprob_is_an_engine_fault(bad: float) -> None:
    with pytest.raises(NonFiniteLogprob) as caught:
        check_finite(np.array([-1.0, bad], dtype=np.float32), model="sft", index=4)
    assert caught.value.index == 4
    assert caught.value.status == 500
    assert "token 1" in caught.value.message
