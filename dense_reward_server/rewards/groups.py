"""Group statistics and group-relative sequence scores for GRPO/RLOO-style trainers."""

from __future__ import annotations

from typing import Literal

import numpy as np

GroupBaseline = Literal["mean", "leave_one_out"]


def group_stats(totals: np.ndarray) -> dict[str, float]:
    """Mean and population standard deviation (ddof=0) of the members' total rewards."""
    return {
        "size": int(totals.size),
        "mean_total_reward": float(np.mean(totals)),
        "std_total_reward": float(np.std(totals)),
    }


def group_scores(totals: np.ndarray, baseline: GroupBaseline) -> list[float | None]:
    """Each member's total reward minus a baseline computed from the group.

    mean:           score_i = R_i - mean_j R_j
    leave_one_out:  score_i = R_i - mean_{j != i} R_j  (PRIME's / RLOO's baseline);
                    undefined for a group of one, which gets None.
    """
    if baseline == "mean":
        return [float(v) for v in totals - np.mean(totals)]
    size = totals.size
    if size < 2:
        return [None] * size
    others = (np.sum(totals) - totals) / (size - 1)
    return [float(v) for v in totals - others]
