"""Credit assignment by hand: rewards per credit rule, KL shaping, returns, baselines."""

from __future__ import annotations

import numpy as np
import pytest

from harness.rl import credit


def test_credit_rules_place_the_reward() -> None:
    dense = np.array([1.0, -2.0, 4.0])
    assert credit.token_rewards("dense", dense, False).tolist() == [1.0, -2.0, 4.0]
    assert credit.token_rewards("sparse", dense, False).tolist() == [0.0, 0.0, 3.0]
    assert credit.token_rewards("verifier", dense, True).tolist() == [0.0, 0.0, 1.0]
    assert credit.token_rewards("verifier", dense, False).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="unknown credit"):
        credit.token_rewards("oracle", dense, True)  # type: ignore[arg-type]


def test_kl_penalty_per_token_and_none_on_an_appended_eos() -> None:
    rewards = np.array([1.0, 1.0, 1.0])
    policy = np.array([-0.5, -1.0])  # the third token is an EOS the trainer appended
    sft = np.array([-1.0, -1.0, -0.2])
    shaped = credit.kl_shaped(rewards, policy, sft, kl_coef=0.5)
    assert shaped.tolist() == [1.0 - 0.5 * 0.5, 1.0, 1.0]


def test_returns_to_go_are_undiscounted_suffix_sums() -> None:
    assert credit.returns_to_go(np.array([1.0, 2.0, 3.0])).tolist() == [6.0, 5.0, 3.0]


def test_leave_one_out_baseline_per_position() -> None:
    a, b, c = np.array([6.0, 5.0, 3.0]), np.array([2.0, 1.0]), np.array([4.0, 4.0, 4.0])
    adv = credit.loo_advantages([a, b, c])
    # a at t=0: 6 - mean(2, 4); at t=2: b has ended (0), so 3 - mean(0, 4).
    assert adv[0].tolist() == [6 - 3, 5 - 2.5, 3 - 2]
    assert adv[1].tolist() == [2 - 5, 1 - 4.5]
    assert adv[2].tolist() == [4 - 4, 4 - 3, 4 - 1.5]
    # Identical samples carry no signal; a single one is compared with nothing.
    assert all((x == 0).all() for x in credit.loo_advantages([a, a.copy()]))
    assert credit.loo_advantages([a])[0].tolist() == a.tolist()


def test_whitening_scales_without_recentring() -> None:
    out = credit.whiten([np.array([2.0, -2.0]), np.array([2.0, -2.0])])
    assert np.concatenate(out).std() == pytest.approx(1.0)
    assert out[0].tolist() == pytest.approx([1.0, -1.0])
    assert credit.whiten([np.zeros(3)])[0].tolist() == [0.0, 0.0, 0.0]  # no division by zero
