"""The demo pair: a checkable task, a complete and intact build, and a reward that means
something (expert completions above corrupted ones on held-out prompts)."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoTokenizer

from harness.demo import task
from harness.paths import ROOT


@pytest.mark.parametrize("kind", task.CORRUPTIONS)
def test_every_corruption_is_wrong(kind: str) -> None:
    rng = random.Random(kind)
    for _ in range(300):
        prompt, answer = task.make_example(rng)
        assert task.is_correct(prompt, answer)
        wrong = task.corrupt(answer, prompt, kind, rng)
        assert wrong != answer and not task.is_correct(prompt, wrong)


def test_is_correct_checks_the_sort() -> None:
    assert task.is_correct("Sort ascending: 42 7 19 3", "3 7 19 42")
    assert not task.is_correct("Sort ascending: 42 7 19 3", "3 19 7 42")
    assert not task.is_correct("Sort ascending: 42 7 19 3", "three")


def test_build_is_complete_intact_and_shares_one_tokenizer(demo_dir: Path) -> None:
    report = json.loads((demo_dir / "demo_report.json").read_text())
    for name in ("base", "sft", "sft-half"):
        weights = (demo_dir / name / "model.safetensors").read_bytes()
        assert hashlib.sha256(weights).hexdigest() == report["sha256"][name]
        config = AutoConfig.from_pretrained(str(demo_dir / name))
        assert config.head_dim == 64 and config.max_position_embeddings >= 1024
    tokenizers = [AutoTokenizer.from_pretrained(str(demo_dir / n)) for n in ("base", "sft")]
    assert tokenizers[0].get_vocab() == tokenizers[1].get_vocab()
    assert tokenizers[0].chat_template == tokenizers[1].chat_template


def test_the_reward_ranks_expert_above_corrupted(demo_dir: Path) -> None:
    report = json.loads((demo_dir / "demo_report.json").read_text())
    assert report["accuracy"]["base"] >= 0.9
    assert report["greedy_correct"]["sft"] > report["greedy_correct"]["base"]


def test_shipped_heldout_pairs_are_the_builds_own(demo_dir: Path) -> None:
    """data/demo_heldout_pairs.jsonl is what a seed-0 build holds out from training."""
    shipped = (ROOT / "data" / "demo_heldout_pairs.jsonl").read_text()
    built = (demo_dir / "heldout_pairs.jsonl").read_text()
    assert shipped == built
    kinds = {json.loads(line)["kind"] for line in shipped.splitlines()}
    assert kinds == set(task.CORRUPTIONS)
