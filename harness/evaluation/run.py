"""Run an evaluation (one scorer) or the baseline ablation (three in-process scorers)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dense_reward_server.config import Settings
from harness.evaluation.report import plot, summarize
from harness.evaluation.scoring import (
    InProcessScorer,
    ScoredPair,
    Scorer,
    batches,
    load_pairs,
    score_batch,
)
from harness.rewards import GUARDED

logger = logging.getLogger(__name__)

# The paper's comparison: base model, SFT checkpoint on half the data, and no baseline at all.
ABLATION = (
    ("base", "model", "base"),
    ("sft-half", "model", "sft-half"),
    ("none (log pi_sft alone)", "none", None),
)


def evaluate(
    pairs_path: Path,
    scorer: Scorer,
    *,
    batch_size: int = 32,
    append_eos: bool = True,
    progress: bool = True,
    label: str = "eval",
    reward: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    pairs = load_pairs(pairs_path)
    scored: list[ScoredPair] = []
    with tqdm(total=len(pairs), desc=label, unit="pair", disable=not progress) as bar:
        for chunk in batches(pairs, batch_size):
            scored += score_batch(scorer, chunk, append_eos, reward)
            bar.update(len(chunk))
    report = summarize(scored)
    report["pairs_file"] = str(pairs_path)
    report["append_eos"] = append_eos
    return report


def in_process_scorer(settings: Settings) -> InProcessScorer:
    from dense_reward_server.core.runtime import load_runtime
    from dense_reward_server.core.scoring import ScoringService
    from dense_reward_server.engines.factory import load_engine_pair

    return InProcessScorer(ScoringService(load_runtime(settings, load_engine_pair)))


def write_report(report: dict[str, Any], out: Path, plot_path: Path | None, title: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    if plot_path is not None:
        plot(report, plot_path, title)


def ablation(
    pairs_path: Path, demo: Path, out_dir: Path, backend: str, progress: bool = True
) -> str:
    """Evaluate each baseline of the demo pair; write one JSON each and a Markdown table."""
    rows = []
    for name, baseline, base_dir in ABLATION:
        settings = Settings(
            sft_model=str(demo / "sft"),
            base_model=str(demo / (base_dir or "base")),
            baseline=baseline,  # type: ignore[arg-type]
            backend=backend,  # type: ignore[arg-type]
        )
        scorer = in_process_scorer(settings)
        try:
            report = evaluate(pairs_path, scorer, progress=progress, label=f"baseline {name}")
        finally:
            scorer.close()
        report["baseline"] = name
        slug = name.split(" ")[0]
        write_report(report, out_dir / f"eval-{slug}.json", None, name)
        if slug == "base":
            write_report(report, out_dir / "eval.json", out_dir / "eval.png", f"baseline: {name}")
        rows.append((name, report))
    table = markdown_table(rows)
    (out_dir / "ablation.md").write_text(table)
    return table


def markdown_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    return ranking_table(
        rows,
        "baseline",
        "total_reward",
        {
            "accuracy (mean)": accuracy_of("mean_reward"),
            "median margin": lambda report: f"{report['margin']['quantiles']['p50']:.2f}",
        },
        "accuracy of the total reward by kind.",
    )


def accuracy_of(score: str) -> Callable[[dict[str, Any]], str]:
    """A `ranking_table` column: the pairwise accuracy of one of a report's scores."""
    return lambda report: f"{report[score]['accuracy']:.3f}"


def ranking_table(
    rows: list[tuple[str, dict[str, Any]]],
    label: str,
    score: str,
    beside: Mapping[str, Callable[[dict[str, Any]], str]],
    note: str,
) -> str:
    """One row per evaluation: the accuracy of `score` (a report's `total_reward` or
    `aggregate_reward`) with its interval, the `beside` columns, then `score` by kind."""
    kinds = sorted(rows[0][1]["by_kind"])
    header = [label, f"accuracy ({score.removesuffix('_reward')})", "95% CI", *beside]
    lines = ["| " + " | ".join(header + kinds) + " |", "|" + "---|" * (len(header) + len(kinds))]
    for name, report in rows:
        low, high = report[score]["ci95"]
        cells = [name, accuracy_of(score)(report), f"[{low:.3f}, {high:.3f}]"]
        cells += [column(report) for column in beside.values()]
        cells += [f"{report['by_kind'][k][f'{score}_accuracy']:.3f}" for k in kinds]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{rows[0][1]['pairs']} held-out pairs; {note}\n"


def guard_ablation(
    pairs_path: Path, demo: Path, out_dir: Path, backend: str, progress: bool = True
) -> str:
    """Each reward guard on the held-out ranking eval: one in-process server holding base and
    sft-half, every guard as request fields (harness.rewards). Pairs are judged by the
    request's aggregate (what a trainer optimizes), with total and mean beside it."""
    settings = Settings(
        sft_model=str(demo / "sft"),
        base_model=str(demo / "base"),
        extra_baselines={"sft-half": str(demo / "sft-half")},
        backend=backend,  # type: ignore[arg-type]
    )
    scorer = in_process_scorer(settings)
    rows = []
    try:
        for name, (label, reward) in GUARDED.items():
            report = evaluate(pairs_path, scorer, progress=progress, label=name, reward=reward)
            report["reward"] = reward
            rows.append((label, report))
    finally:
        scorer.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "guards.json").write_text(json.dumps(dict(rows), indent=2) + "\n")
    table = guard_table(rows)
    (out_dir / "guards.md").write_text(table)
    return table


def guard_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    return ranking_table(
        rows,
        "reward",
        "aggregate_reward",
        {
            "total": accuracy_of("total_reward"),
            "mean": accuracy_of("mean_reward"),
        },
        "accuracy by kind of the aggregate (the sum unless the reward says otherwise).",
    )
