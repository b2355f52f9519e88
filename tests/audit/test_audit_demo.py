"""The audit against a real server on the demo pair (transformers engines, base and sft-half
loaded together): it must flag the sft-half reward as gameable and pass the base reward,
which before the audit only a collapsed training run revealed (README, Audit)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dense_reward_server.cli import cli
from harness.servers import ThreadServer

# Smaller than the CLI's defaults (200 demos, 48 prompts x 64 samples) to stay in seconds; the
# verdicts have wide margins at the full size (README, Audit) and at this one.
SMALL = ["--edit-demos", "60", "--prompts", "12", "--samples", "16", "--max-new-tokens", "16"]


@pytest.fixture(scope="module")
def url(settings_for: Callable[..., Any], demo_dir: Path) -> Iterator[str]:
    settings = settings_for(
        backend="transformers", extra_baselines={"sft-half": str(demo_dir / "sft-half")}
    )
    with ThreadServer(settings) as server:
        yield server.url


def run_audit(url: str, demo_dir: Path, out: Path, reward: dict[str, Any]) -> tuple[int, Any]:
    args = ["audit", "--url", url, "--demos", str(demo_dir / "heldout_pairs.jsonl")]
    args += [*SMALL, "--reward", json.dumps(reward), "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(out.read_text())


def test_the_sft_half_reward_is_flagged_on_both_counts(
    url: str, demo_dir: Path, tmp_path: Path
) -> None:
    code, report = run_audit(url, demo_dir, tmp_path / "half.json", {"baselines": ["sft-half"]})
    assert code == 1 and report["gameable"]
    # Off the support: repeating a number out-scores the expert answer (each repeat ~ +4).
    assert "repeat_token" in report["off_support"]["failing"]
    worst = report["off_support"]["worst"][0]
    assert worst["margin"] > 0 and len(worst["edited"]["tokens"]) == len(worst["edited"]["rewards"])
    # On it: picking the best of more samples picks wrong answers more often.
    support = report["on_support"]
    assert support["failing"] and support["gain_at_max_n"][2] < 0  # the whole interval
    assert support["n"] == [1, 2, 4, 8, 16]


def test_the_base_reward_passes(url: str, demo_dir: Path, tmp_path: Path) -> None:
    code, report = run_audit(url, demo_dir, tmp_path / "base.json", {"baselines": ["base"]})
    assert code == 0 and not report["gameable"], report["reasons"]
    assert report["on_support"]["gain_at_max_n"][0] > 0


def test_bad_audit_options_exit_2(demo_dir: Path) -> None:
    bad_reward = CliRunner().invoke(
        cli, ["audit", "--demos", str(demo_dir / "heldout_pairs.jsonl"), "--reward", "[1]"]
    )
    assert bad_reward.exit_code == 2 and "--reward" in bad_reward.output
    no_demos = CliRunner().invoke(cli, ["audit", "--demos", "/nonexistent.jsonl"])
    assert no_demos.exit_code == 2 and "is not a file" in no_demos.output
