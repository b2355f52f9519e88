"""The hacking-metrics measurement in miniature: each reward's own server, scraped per window."""

from __future__ import annotations

import math
from pathlib import Path

from harness.rl.hacking import REWARDS, SIGNALS, main, window_means


def test_window_means_by_hand() -> None:
    before = {name: (1.0, 10.0) for name in SIGNALS}
    after = {name: (4.0, 16.0) for name in SIGNALS}
    assert window_means(before, after) == {name: 0.5 for name in SIGNALS}
    assert all(math.isnan(v) for v in window_means(before, before).values())


def test_both_rewards_are_measured_from_the_servers_metrics(tmp_path: Path) -> None:
    out = tmp_path / "hacking.json"
    result = main(["--steps", "2", "--window", "1", "--out", str(out)])
    assert out.exists()
    for name in REWARDS:
        windows = result["rewards"][name]
        assert [w["step"] for w in windows] == [1, 2]
        for window in windows:
            # 8 prompts x 8 samples scored per step: real lengths and log-probs.
            assert window["drs_completion_tokens"] >= 1
            assert window["drs_completion_sft_logprob"] < 0
            assert 0 <= window["drs_completion_repeated_ngrams"] <= 1
            assert isinstance(window["alert_condition"], bool)
