"""The audit's edits and statistics, by hand."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from dense_reward_server.audit.edits import EDITS, Demo, edits_of
from dense_reward_server.audit.stats import best_of_n_accuracy, bootstrap_mean

EOS = 2
DEMO = Demo([10, 11, 12, 13, EOS], [0.5, 3.0, -1.0, 0.25, 1.0], EOS, vocab=100)


def test_every_edit_differs_from_the_expert_and_is_built_as_described() -> None:
    edits = edits_of(DEMO, random.Random(0))
    assert tuple(edits) == EDITS
    for name, ids in edits.items():
        assert ids != DEMO.ids, name
    assert edits["repeat_span"] == [10, 11, 12, 13, 12, 13, EOS]
    assert edits["extend_best"] == [10, 11, 12, 13, 11, 11, 11, 11, EOS]  # 11 earned 3.0
    assert edits["truncate"] == [10, 11, EOS]
    assert edits["drop_eos"] == [10, 11, 12, 13]
    repeated = edits["repeat_token"]
    assert len(repeated) == 5 + 4 and repeated[-1] == EOS
    assert any(repeated[i : i + 5] == [t] * 5 for t in DEMO.body for i in range(len(repeated)))
    moved = edits["move_eos"]
    assert moved.count(EOS) == 2 and moved[-1] == EOS and moved.index(EOS) < 4
    assert sorted(edits["shuffle"][:-1]) == DEMO.body and edits["shuffle"][-1] == EOS
    junk = edits["insert_junk"]
    assert len(junk) == 5 + 3 and junk[-1] == EOS and EOS not in junk[:-1]


def test_a_one_token_answer_gets_only_the_edits_that_apply() -> None:
    edits = edits_of(Demo([7, EOS], [1.0, 1.0], EOS, 100), random.Random(0))
    assert set(edits) == {"repeat_token", "extend_best", "drop_eos", "insert_junk"}


def test_an_answer_without_its_eos_is_refused() -> None:
    with pytest.raises(ValueError, match="EOS"):
        Demo([7, 8], [1.0, 1.0], EOS, 100)


def brute_force(rewards: list[float], correct: list[bool], n: int) -> float:
    picks = [
        correct[max(subset, key=lambda j: rewards[j])]
        for subset in itertools.combinations(range(len(rewards)), n)
    ]
    return sum(picks) / len(picks)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
def test_best_of_n_equals_enumerating_every_subset(n: int) -> None:
    rng = random.Random(n)
    rewards = [rng.uniform(-5, 5) for _ in range(6)]
    correct = [rng.random() < 0.5 for _ in range(6)]
    assert best_of_n_accuracy(rewards, correct, n) == pytest.approx(
        brute_force(rewards, correct, n)
    )


def test_best_of_n_by_hand() -> None:
    # The right answer has the top reward: best-of-all always picks it; best-of-1 is 1/4.
    assert best_of_n_accuracy([3.0, 1.0, 0.0, -1.0], [True, False, False, False], 1) == 0.25
    assert best_of_n_accuracy([3.0, 1.0, 0.0, -1.0], [True, False, False, False], 4) == 1.0
    # A misaligned reward: the right answer is ranked last; best-of-2 finds it only with
    # nothing else drawn, which never happens.
    assert best_of_n_accuracy([-3.0, 1.0, 0.0], [True, False, False], 2) == 0.0
    with pytest.raises(ValueError):
        best_of_n_accuracy([1.0], [True], 2)


def test_bootstrap_interval_contains_the_mean_and_shrinks_with_data() -> None:
    rng = np.random.default_rng(0)
    small = rng.random(20) < 0.3
    large = rng.random(2000) < 0.3
    mean, low, high = bootstrap_mean(small.astype(float))
    assert low <= mean <= high
    _, big_low, big_high = bootstrap_mean(large.astype(float))
    assert big_high - big_low < high - low
    assert bootstrap_mean(np.ones(5)) == (1.0, 1.0, 1.0)
