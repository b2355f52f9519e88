"""The experiment's summary: per-arm means, spreads, bootstrap intervals, a table and a plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Run = dict[str, Any]  # one trainer record: config, log, eval (see harness.rl.trainer.run)
METRICS = ("greedy", "sampled")  # exact-answer accuracy on the held-out prompts
REFERENCE = "sft"


def per_prompt(run: Run, metric: str) -> np.ndarray:
    """A run's accuracy per held-out prompt (greedy: 0/1; sampled: fraction of its samples)."""
    values = run["eval"]["greedy_correct" if metric == "greedy" else "sampled_correct"]
    return np.asarray(values, dtype=np.float64)


def bootstrap_difference(
    arm: Sequence[Run], reference: Sequence[Run], metric: str, draws: int, seed: int
) -> tuple[float, float]:
    """95% percentile interval of mean accuracy (arm - reference).

    Resamples seeds within each arm and held-out prompts jointly for both (the prompts are the
    same, so the comparison is paired): both sources of spread are in the interval.
    """
    rng = np.random.default_rng(seed)
    a = np.stack([per_prompt(r, metric) for r in arm])  # seeds x prompts
    b = np.stack([per_prompt(r, metric) for r in reference])
    prompts = a.shape[1]
    diffs = np.empty(draws)
    for i in range(draws):
        cols = rng.integers(0, prompts, prompts)
        rows_a = rng.integers(0, len(a), len(a))
        rows_b = rng.integers(0, len(b), len(b))
        diffs[i] = a[rows_a][:, cols].mean() - b[rows_b][:, cols].mean()
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


def summarize(
    runs: Mapping[str, Sequence[Run]],
    audits: Mapping[str, Run] | None = None,
    draws: int = 4000,
    seed: int = 0,
) -> list[Run]:
    """One row per arm: mean and min..max over seeds of each metric and of KL, the difference
    to SFT alone with its bootstrap interval, and the audit's verdict on its reward."""
    rows = []
    for arm, arm_runs in runs.items():
        row: Run = {"arm": arm, "seeds": len(arm_runs)}
        if audits and arm in audits:
            report = audits[arm]
            row["audit"] = {
                "gameable": report["gameable"],
                "edits_failing": report["off_support"]["failing"],
                "best_of_n": report["on_support"]["n"][-1],
                "gain": report["on_support"]["gain_at_max_n"],
            }
        for metric in METRICS:
            values = [float(per_prompt(r, metric).mean()) for r in arm_runs]
            row[metric] = {"mean": float(np.mean(values)), "min": min(values), "max": max(values)}
            if arm != REFERENCE and REFERENCE in runs:
                ref_values = [float(per_prompt(r, metric).mean()) for r in runs[REFERENCE]]
                low, high = bootstrap_difference(arm_runs, runs[REFERENCE], metric, draws, seed)
                row[metric]["diff"] = float(np.mean(values) - np.mean(ref_values))
                row[metric]["ci95"] = [low, high]
        kls = [float(r["eval"]["kl"]) for r in arm_runs]
        row["kl"] = {"mean": float(np.mean(kls)), "min": min(kls), "max": max(kls)}
        row["train_s"] = float(np.mean([r.get("train_s", 0.0) for r in arm_runs]))
        rows.append(row)
    return rows


# Differences beside "vs SFT": what dense credit buys over the same total at the end, and the
# learned reward against the oracle.
CONTRASTS = (("dpr-base", "sparse-base"), ("dpr-base", "verifier"))


def contrasts(runs: Mapping[str, Sequence[Run]], draws: int = 4000, seed: int = 0) -> list[Run]:
    """Each contrast's difference of mean accuracy, with its paired bootstrap interval."""
    rows = []
    for arm, other in CONTRASTS:
        if arm not in runs or other not in runs:
            continue
        row: Run = {"arm": arm, "minus": other}
        for metric in METRICS:
            a = np.mean([per_prompt(r, metric).mean() for r in runs[arm]])
            b = np.mean([per_prompt(r, metric).mean() for r in runs[other]])
            low, high = bootstrap_difference(runs[arm], runs[other], metric, draws, seed)
            row[metric] = {"diff": float(a - b), "ci95": [low, high]}
        rows.append(row)
    return rows


def contrast_table(rows: Sequence[Run], labels: Mapping[str, str]) -> str:
    lines = ["| difference | greedy, points [95% CI] | sampled, points [95% CI] |", "|---|---|---|"]
    for row in rows:
        cells = []
        for metric in METRICS:
            low, high = row[metric]["ci95"]
            cells.append(f"{100 * row[metric]['diff']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]")
        name = (
            f"{labels.get(row['arm'], row['arm'])} minus {labels.get(row['minus'], row['minus'])}"
        )
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def table(rows: Sequence[Run], labels: Mapping[str, str]) -> str:
    """The summary as a Markdown table (accuracies in %, differences in points)."""

    def cell(stats: Run) -> str:
        text = f"{100 * stats['mean']:.1f} ({spread(stats, 100, 1)})"
        if "diff" in stats:
            low, high = stats["ci95"]
            text += f"; {100 * stats['diff']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
        return text

    audited = any("audit" in row for row in rows)
    head = "| arm | greedy acc. %; vs SFT [95% CI] | sampled acc. %; vs SFT [95% CI] | KL to SFT |"
    lines = [
        head + (" audit: best-of-N minus best-of-1, points [95% CI]; edits failing |" * audited),
        "|---|---|---|---|" + "---|" * audited,
    ]
    for row in rows:
        kl = row["kl"]
        line = (
            f"| {labels.get(row['arm'], row['arm'])} | {cell(row['greedy'])} | "
            f"{cell(row['sampled'])} | {round(kl['mean'], 2) + 0.0:.2f} ({spread(kl, 1, 2)}) |"
        )
        if audited:
            line += f" {audit_cell(row.get('audit'))} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def audit_cell(audit: Run | None) -> str:
    if audit is None:
        return "not audited"
    mean, low, high = (100 * v for v in audit["gain"])
    edits = ", ".join(audit["edits_failing"]) or "none"
    verdict = "gameable" if audit["gameable"] else "passed"
    return f"N={audit['best_of_n']}: {mean:+.1f} [{low:+.1f}, {high:+.1f}]; {edits} ({verdict})"


def spread(stats: Run, scale: float, digits: int) -> str:
    """min to max over seeds ("-0.00" shown as "0.00")."""
    low, high = (round(scale * stats[k], digits) + 0.0 for k in ("min", "max"))
    return f"{low:.{digits}f} to {high:.{digits}f}"


def plot(runs: Mapping[str, Sequence[Run]], rows: Sequence[Run], path: Path) -> None:
    """Left: held-out accuracy per arm (bars: mean; dots: seeds). Right: how often the policy's
    training samples were exact during training (moving mean, mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    arms = [row["arm"] for row in rows]
    for offset, metric in ((-0.2, "greedy"), (0.2, "sampled")):
        xs = np.arange(len(arms)) + offset
        left.bar(xs, [row[metric]["mean"] for row in rows], width=0.4, label=metric, alpha=0.7)
        for x, arm in zip(xs, arms, strict=True):
            values = [per_prompt(r, metric).mean() for r in runs[arm]]
            left.scatter([x] * len(values), values, color="black", s=8, zorder=3)
    left.set_xticks(np.arange(len(arms)), arms, rotation=20)
    left.set_ylabel("held-out exact-answer accuracy")
    low = min(min(row[m]["min"] for m in METRICS) for row in rows)
    left.set_ylim(max(0.0, low - 0.1), 1.0)
    left.legend()
    window = 16
    for arm in arms:
        curves = [[row["train_correct"] for row in r["log"]] for r in runs[arm]]
        if curves and len(curves[0]) >= window:
            mean = np.convolve(np.mean(curves, axis=0), np.ones(window) / window, mode="valid")
            right.plot(np.arange(window, window + len(mean)), mean, label=arm)
    right.set_xlabel("step")
    right.set_ylabel(f"exact training samples (T=1, {window}-step mean)")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
