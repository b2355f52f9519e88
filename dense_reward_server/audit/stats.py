"""The audit's statistics: best-of-N accuracy from a pool of samples, bootstrap intervals.

Best-of-N is computed exactly from M >= N samples per prompt: the expected accuracy of the
top-rewarded sample among N drawn without replacement from the M, so one pool of 64 samples
gives the whole curve N = 1, 2, 4, ... 64 without re-sampling (the curve of Gao et al.,
arXiv 2210.10760, with the reward model as the selector).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

import numpy as np

DRAWS = 2000  # bootstrap resamples
LEVEL = 0.95


def best_of_n_accuracy(rewards: Sequence[float], correct: Sequence[bool], n: int) -> float:
    """E[correct(argmax reward over N of the M samples)], N drawn without replacement.

    The sample at rank i (i samples rank above it) is the pick iff it is drawn and none above
    it is: C(M - 1 - i, N - 1) / C(M, N). Ties are broken by position (callers shuffle).
    """
    m = len(rewards)
    if not 1 <= n <= m:
        raise ValueError(f"best-of-{n} needs 1 <= N <= {m} samples")
    order = sorted(range(m), key=lambda j: -rewards[j])
    total = comb(m, n)
    return sum(comb(m - 1 - i, n - 1) * bool(correct[j]) for i, j in enumerate(order)) / total


def bootstrap_mean(values: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean of per-unit values (axis 0) and its percentile interval over resampled units."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(DRAWS, len(values)))
    means = values[picks].mean(axis=1)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(values.mean()), float(low), float(high)
