"""`make rl` in miniature (CI's smoke): every arm, its own reward server, a few steps; and the
summary's statistics by hand. Improvement is not asserted here: docs/rl holds the real run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness.demo.tasks import TASKS
from harness.rl.config import TASK_LR, DPRConfig
from harness.rl.experiment import ARMS, main, parse_args
from harness.rl.report import bootstrap_difference, contrast_table, contrasts, summarize, table


def fake_run(greedy: list[bool], sampled: list[float], kl: float = 0.0) -> dict[str, object]:
    return {"eval": {"greedy_correct": greedy, "sampled_correct": sampled, "kl": kl}, "log": []}


def test_summary_means_spreads_and_intervals() -> None:
    sft = [fake_run([True, False, True, False], [0.5, 0.5, 0.5, 0.5])] * 2
    better = [
        fake_run([True, True, True, False], [1.0, 0.5, 0.5, 0.5], kl=1.0),
        fake_run([True, True, True, True], [1.0, 1.0, 0.5, 0.5], kl=3.0),
    ]
    rows = summarize({"sft": sft, "dpr-base": better}, draws=500)
    assert rows[0]["greedy"] == {"mean": 0.5, "min": 0.5, "max": 0.5}
    row = rows[1]
    assert row["greedy"]["mean"] == pytest.approx(0.875)
    assert row["greedy"]["diff"] == pytest.approx(0.375)
    low, high = row["greedy"]["ci95"]
    assert 0 <= low < 0.375 < high <= 1
    assert row["kl"] == {"mean": 2.0, "min": 1.0, "max": 3.0}
    # The same runs against themselves: the interval is exactly zero.
    assert bootstrap_difference(sft, sft, "sampled", 100, 0) == (0.0, 0.0)
    text = table(rows, {"sft": "(a) SFT"})
    assert "| (a) SFT | 50.0 (50.0 to 50.0)" in text and "+37.5" in text


def test_every_arm_runs_end_to_end(demo_dir: Path, tmp_path: Path) -> None:
    args = ["--demo", str(demo_dir), "--out", str(tmp_path), "--seeds", "1", "--steps", "2"]
    args += ["--eval-prompts", "6", "--eval-samples", "2", "--no-progress"]
    args += ["--arms", *(arm.name for arm in ARMS)]
    args += ["--audit-demos", "12", "--audit-prompts", "3", "--audit-samples", "4"]
    result = main(args)
    assert set(result["runs"]) == {arm.name for arm in ARMS}
    for arm in ARMS:
        (run,) = result["runs"][arm.name]
        assert len(run["log"]) == (0 if arm.credit is None else 2)
        assert all(math.isfinite(row["loss"]) for row in run["log"])
        assert run["config"]["credit"] == (arm.credit or "dense")
        assert len(run["eval"]["greedy_correct"]) == 6
    # The no-baseline arm's reward is log pi_sft: negative on every token, so its mean return
    # is below the others' (which reward the SFT model's gain over a baseline).
    returns = {
        name: np.mean([r["return"] for r in runs[0]["log"]])
        for name, runs in result["runs"].items()
        if runs[0]["log"]
    }
    assert returns["logpi-sft"] < 0 < returns["dpr-base"]
    # Every dense reward was audited first, on the same server, with its own request fields.
    dense = {arm.name for arm in ARMS if arm.credit == "dense"}
    assert set(result["audits"]) == dense
    assert result["audits"]["pessimistic"]["reward"] == {"baselines": ["base", "sft-half"]}
    assert all(result["audits"][name]["on_support"]["n"] == [1, 2, 4] for name in dense)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"][0]["arm"] == "sft" and saved["benchmark"] == "python -m harness rl"
    assert (tmp_path / "rl.png").stat().st_size > 10_000
    arms_table, contrasts_table = (tmp_path / "table.md").read_text().split("\n\n")
    assert arms_table.count("\n") == 1 + len(ARMS)
    assert "(b) DPR, baseline base minus (g) same total" in contrasts_table


def test_contrasts_are_paired_differences() -> None:
    dense = [fake_run([True, True, False, False], [1.0, 0.5, 0.5, 0.0])] * 2
    sparse = [fake_run([True, False, False, False], [0.5, 0.5, 0.5, 0.0])] * 2
    (row,) = contrasts({"dpr-base": dense, "sparse-base": sparse}, draws=200)
    assert (row["arm"], row["minus"]) == ("dpr-base", "sparse-base")
    assert row["greedy"]["diff"] == pytest.approx(0.25)
    assert row["sampled"]["diff"] == pytest.approx(0.125)
    low, high = row["greedy"]["ci95"]
    assert 0 <= low <= 0.25 <= high
    assert "+25.0" in contrast_table([row], {})


def test_each_task_trains_at_its_own_step_size_unless_told() -> None:
    assert parse_args(["--task", "sort"]).lr == TASK_LR["sort"] == DPRConfig.lr
    assert parse_args(["--task", "sums"]).lr == TASK_LR["sums"] < TASK_LR["sort"]
    assert parse_args(["--task", "sums", "--lr", "1e-3"]).lr == 1e-3
    assert set(TASK_LR) == set(TASKS)
