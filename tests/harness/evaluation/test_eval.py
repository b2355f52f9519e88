"""The reward-quality evaluation: statistics on hand-made pairs whose answer is known, the
HTTP path end to end, and the in-process path on the demo pair."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.evaluation.report import summarize
from harness.evaluation.run import evaluate, in_process_scorer, write_report
from harness.evaluation.scoring import HttpScorer, ScoredCompletion, ScoredPair


def scored(total: float, rewards: list[float], kind: str = "k") -> ScoredCompletion:
    return ScoredCompletion(total=total, mean=total / len(rewards), rewards=np.array(rewards))


def pair(chosen: float, rejected: float, kind: str = "k") -> ScoredPair:
    return ScoredPair(kind, scored(chosen, [chosen / 2] * 2), scored(rejected, [rejected]))


def test_accuracy_ties_interval_and_kinds_on_known_pairs() -> None:
    pairs = [pair(2, 1, "a"), pair(3, 0, "a"), pair(1, 1, "b"), pair(0, 5, "b")]
    report = summarize(pairs)
    assert report["total_reward"]["accuracy"] == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    low, high = report["total_reward"]["ci95"]
    assert 0 <= low <= report["total_reward"]["accuracy"] <= high <= 1
    assert report["by_kind"]["a"]["total_reward_accuracy"] == 1.0
    assert report["by_kind"]["b"]["total_reward_accuracy"] == 0.25
    assert report["margin"]["quantiles"]["p50"] == pytest.approx(np.median([1, 3, 0, -5]))
    # chosen rows are [1, 1], [1.5, 1.5], [0.5, 0.5], [0, 0]: mean by position is 0.75.
    assert report["profile"]["chosen"]["mean_reward"] == pytest.approx([0.75, 0.75])
    assert report["profile"]["rejected"]["tokens"] == [4]
    perfect = summarize([pair(2, 1)] * 20)
    assert perfect["total_reward"] == {"accuracy": 1.0, "ci95": [1.0, 1.0]}


def test_http_evaluation_matches_the_servers_own_totals(
    fake_server: Callable[..., Any], tmp_path: Path
) -> None:
    import httpx

    rows = [
        {"prompt": "Sort ascending: 3 1 2", "chosen": "1 2 3", "rejected": "3 2 1", "kind": "x"},
        {
            "messages": [{"role": "user", "content": "Sort ascending: 5 4"}],
            "chosen": "4 5",
            "rejected": "5 4",
            "kind": "y",
        },
        {"prompt": "Sort ascending: 7 8", "chosen": "7 8", "rejected": "7 8 8", "kind": "x"},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with fake_server() as server:
        report = evaluate(path, HttpScorer(server.url), batch_size=2, progress=False)
        outcomes = []
        for row in rows:
            prompt = {k: row[k] for k in ("prompt", "messages") if k in row}
            items = [{**prompt, "completion": row[c]} for c in ("chosen", "rejected")]
            body = {"items": items, "append_eos": True}
            results = httpx.post(server.url + "/v1/token_rewards", json=body).json()["results"]
            chosen, rejected = (r["total_reward"] for r in results)
            outcomes.append(1.0 if chosen > rejected else 0.5 if chosen == rejected else 0.0)
    assert report["pairs"] == 3
    assert report["total_reward"]["accuracy"] == pytest.approx(np.mean(outcomes))
    write_report(report, tmp_path / "eval.json", tmp_path / "eval.png", "test")
    assert json.loads((tmp_path / "eval.json").read_text())["pairs"] == 3
    assert (tmp_path / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_in_process_evaluation_on_the_demo_pair(
    settings_for: Callable[..., Any], demo_dir: Path, tmp_path: Path
) -> None:
    lines = (demo_dir / "heldout_pairs.jsonl").read_text().splitlines()[:60]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    scorer = in_process_scorer(settings_for(backend="transformers"))
    try:
        report = evaluate(path, scorer, progress=False)
    finally:
        scorer.close()
    assert report["pairs"] == 60
    assert report["total_reward"]["accuracy"] >= 0.8


def test_guard_ablation_scores_each_guard_on_one_server(demo_dir: Path, tmp_path: Path) -> None:
    """Every guard of harness.rewards on 60 held-out pairs, one server holding both baselines:
    the floor repairs the sft-half ranking (sft-half alone ranks these at ~0.75, README)."""
    from harness.evaluation.run import guard_ablation
    from harness.rewards import GUARDED

    lines = (demo_dir / "heldout_pairs.jsonl").read_text().splitlines()[:60]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    table = guard_ablation(path, demo_dir, tmp_path, "transformers", progress=False)
    reports = json.loads((tmp_path / "guards.json").read_text())
    assert [r["reward"] for r in reports.values()] == [reward for _, reward in GUARDED.values()]
    by_label = {label: reports[label]["aggregate_reward"]["accuracy"] for label in reports}
    assert by_label["baseline base"] >= 0.9
    half, floored = by_label["baseline sft-half"], by_label["sft-half, floor -5 and clip [-5, 1]"]
    assert floored > half
    # soft_min changes the aggregate, not the total: their accuracies differ.
    soft = reports["sft-half, soft minimum (T = 1)"]
    assert (
        soft["total_reward"]["accuracy"] == reports["baseline sft-half"]["total_reward"]["accuracy"]
    )
    assert table.count("\n") == 2 + len(GUARDED) + 2
