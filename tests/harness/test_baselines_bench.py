"""The extra-baseline cost benchmark in miniature: both servers start, answer, and are measured."""

from __future__ import annotations

import json
from pathlib import Path

from harness.bench.baselines import SYSTEMS, main


def test_both_systems_are_measured(demo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "baselines.json"
    args = ["--demo", str(demo_dir), "--requests", "1", "--repeats", "1", "--out", str(out)]
    result = main(args)
    assert json.loads(out.read_text())["rounds"] == result["rounds"]
    for name in SYSTEMS:
        (row,) = result["rounds"][name]
        assert row["rss_mib"] > 0 and row["sequences_per_s"] > 0
    # A third model in memory: more resident memory, whatever the machine.
    assert result["median_ratio_two_over_one"]["rss_mib"] > 1
