"""Reward-hacking signals of one completion, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dense_reward_server.rewards.signals import completion_signals, repeated_ngram_share


def test_repeated_ngrams_by_hand() -> None:
    assert repeated_ngram_share([1, 2, 3, 4]) == 0.0  # one 4-gram, nothing before it
    assert repeated_ngram_share([1, 2, 3, 4, 1, 2, 3, 4]) == pytest.approx(1 / 5)
    assert repeated_ngram_share([34] * 10) == pytest.approx(6 / 7)  # 7 windows, all alike
    assert repeated_ngram_share([1, 2, 3, 4, 5, 6, 7, 8]) == 0.0
    assert repeated_ngram_share([1, 2, 1, 2, 1], n=2) == pytest.approx(2 / 4)


def test_implausible_reward_and_sft_logprob_by_hand() -> None:
    sft = np.array([-10.0, -1.0, -7.0, -0.5], np.float32)
    rewards = np.array([4.0, 2.0, -1.0, 0.5], np.float32)
    found = completion_signals([5, 6, 7, 8], sft, rewards, None, implausible_logprob=-5.0)
    assert found.tokens == 4
    assert found.sft_logprob == pytest.approx(-18.5 / 4)
    assert found.implausible_reward == 0.25  # only the first: rewarded and below -5
    masked = completion_signals(
        [5, 6, 7, 8], sft, np.where([0, 1, 1, 1], rewards, np.nan), np.array([0, 1, 1, 1]), -5.0
    )
    assert masked.tokens == 3 and masked.implausible_reward == 0.0
    assert masked.sft_logprob == pytest.approx(-8.5 / 3)
    nothing = completion_signals([5], sft[:1], rewards[:1], np.array([0]), -5.0)
    assert nothing.sft_logprob is None and nothing.implausible_reward is None
