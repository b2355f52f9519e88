"""Statistics of scored pairs: pairwise accuracy with a bootstrap interval, the margin
distribution, and the per-position profile of mean reward; and their plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the statistics need no scorer (the demo's evaluation uses `wins`)
    from harness.evaluation.scoring import ScoredPair

BOOTSTRAP_SAMPLES = 2000


def wins(chosen: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    """1 when chosen out-scores rejected, 0.5 for a tie, 0 otherwise."""
    return np.where(chosen > rejected, 1.0, np.where(chosen == rejected, 0.5, 0.0))


def accuracy(outcomes: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """Mean of the outcomes and a percentile-bootstrap 95% interval."""
    draws = rng.integers(0, len(outcomes), size=(BOOTSTRAP_SAMPLES, len(outcomes)))
    means = outcomes[draws].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"accuracy": float(outcomes.mean()), "ci95": [float(low), float(high)]}


def margin_summary(margins: np.ndarray) -> dict[str, Any]:
    quantiles = np.percentile(margins, [5, 25, 50, 75, 95])
    counts, edges = np.histogram(margins, bins=20)
    return {
        "mean": float(margins.mean()),
        "std": float(margins.std()),
        "quantiles": dict(zip(["p5", "p25", "p50", "p75", "p95"], quantiles.tolist(), strict=True)),
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
    }


def position_profile(rows: Sequence[np.ndarray]) -> dict[str, list[float]]:
    """Mean reward at each token position (masked tokens left out) and how many tokens."""
    width = max(len(r) for r in rows)
    table = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        table[i, : len(row)] = row
    counts = np.sum(np.isfinite(table), axis=0)
    sums = np.nansum(table, axis=0)
    means = np.divide(sums, counts, out=np.zeros(width), where=counts > 0)
    return {"mean_reward": means.tolist(), "tokens": counts.astype(int).tolist()}


def summarize(pairs: Sequence[ScoredPair], seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    chosen_total = np.array([p.chosen.total for p in pairs])
    rejected_total = np.array([p.rejected.total for p in pairs])
    chosen_mean = np.array([p.chosen.mean for p in pairs])
    rejected_mean = np.array([p.rejected.mean for p in pairs])
    chosen_aggregate = np.array([p.chosen.aggregate for p in pairs])
    rejected_aggregate = np.array([p.rejected.aggregate for p in pairs])
    report: dict[str, Any] = {
        "pairs": len(pairs),
        "total_reward": accuracy(wins(chosen_total, rejected_total), rng),
        "mean_reward": accuracy(wins(chosen_mean, rejected_mean), rng),
        "aggregate_reward": accuracy(wins(chosen_aggregate, rejected_aggregate), rng),
        "margin": margin_summary(chosen_total - rejected_total),
        "profile": {
            "chosen": position_profile([p.chosen.rewards for p in pairs]),
            "rejected": position_profile([p.rejected.rewards for p in pairs]),
        },
    }
    kinds = sorted({p.kind for p in pairs if p.kind is not None})
    report["by_kind"] = {
        kind: {
            "pairs": int(np.sum(selected := np.array([p.kind == kind for p in pairs]))),
            "total_reward_accuracy": float(
                wins(chosen_total[selected], rejected_total[selected]).mean()
            ),
            "aggregate_reward_accuracy": float(
                wins(chosen_aggregate[selected], rejected_aggregate[selected]).mean()
            ),
        }
        for kind in kinds
    }
    return report


def plot(report: dict[str, Any], path: Path, title: str) -> None:
    """Margin histogram and per-position mean reward, chosen vs rejected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    histogram = report["margin"]["histogram"]
    edges = np.array(histogram["edges"])
    left.bar(edges[:-1], histogram["counts"], width=np.diff(edges), align="edge", color="#4C72B0")
    left.axvline(0, color="black", linewidth=1)
    accuracy_text = report["total_reward"]
    left.set_title(
        f"total-reward margin (chosen - rejected)\naccuracy {accuracy_text['accuracy']:.3f} "
        f"[{accuracy_text['ci95'][0]:.3f}, {accuracy_text['ci95'][1]:.3f}]"
    )
    left.set_xlabel("margin")
    left.set_ylabel("pairs")
    for name, color in (("chosen", "#55A868"), ("rejected", "#C44E52")):
        profile = report["profile"][name]
        keep = np.array(profile["tokens"]) >= 5  # positions with too few tokens are noise
        positions = np.arange(len(keep))[keep]
        right.plot(positions, np.array(profile["mean_reward"])[keep], label=name, color=color)
    right.axhline(0, color="black", linewidth=1)
    right.set_title("mean reward by completion token position")
    right.set_xlabel("token position")
    right.set_ylabel("mean reward")
    right.legend()
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
