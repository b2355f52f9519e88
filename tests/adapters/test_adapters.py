"""Trainer adapters against live servers: TRL (real GRPO steps), verl, and their alignment."""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dense_reward_client.adapters import verl
from dense_reward_client.adapters.trl import DenseReward, padded, token_rewards

from harness.paths import ROOT


def test_trl_reward_function_scores_the_sampled_ids(demo_url: str, demo_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(demo_dir / "sft"))
    reward = DenseReward(demo_url, tokenizer=tokenizer)
    prompt = [{"role": "user", "content": "Sort ascending: 42 7 19 3"}]
    good = tokenizer("3 7 19 42", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    bad = tokenizer("42 19 7 3", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    totals = reward([prompt, prompt], ["", ""], completion_ids=[good, bad])
    assert totals[0] > totals[1]
    per_token = token_rewards(reward, [prompt, prompt], [good, bad])
    assert [len(r) for r in per_token] == [len(good), len(bad)]
    assert float(per_token[0].sum()) == pytest.approx(totals[0], abs=1e-4)
    table = padded(per_token)
    assert table.shape == (2, max(len(good), len(bad)))


def test_trl_refuses_a_policy_with_another_tokenizer(
    demo_url: str, demo_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from harness.models import swapped_tokens_copy

    swapped_tokens_copy(demo_dir / "sft", tmp_path / "other")
    with pytest.raises(ValueError, match="not the reward server's"):
        DenseReward(demo_url, tokenizer=AutoTokenizer.from_pretrained(str(tmp_path / "other")))


def test_grpo_steps_with_the_real_trl_trainer(demo_url: str, demo_dir: Path) -> None:
    # The example as a user runs it: a file, not a package (loaded by path).
    spec = importlib.util.spec_from_file_location("trl_grpo", ROOT / "examples" / "trl_grpo.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.train(demo_url, str(demo_dir / "sft"), steps=2)
    assert result["global_step"] == 2
    rewards = [entry["reward"] for entry in result["log_history"] if "reward" in entry]
    assert len(rewards) == 2 and all(np.isfinite(rewards))


def test_verl_compute_score_and_token_tensor(
    demo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRS_REWARD_URL", demo_url)
    verl.client.cache_clear()
    messages = [{"role": "user", "content": "Sort ascending: 42 7 19 3"}]
    good = verl.compute_score("demo", "3 7 19 42", None, {"prompt": messages})
    bad = verl.compute_score("demo", "42 19 7 3", None, {"prompt": messages})
    assert good["score"] > bad["score"]
    dense = [json.loads(score["dense_rewards"]) for score in (good, bad)]
    assert sum(dense[0]) == pytest.approx(good["score"], abs=1e-4)
    # What verl does with each extra key across rows: it must stack (lengths differ).
    assert np.array([good["dense_rewards"], bad["dense_rewards"]]).shape == (2,)
    assert len(dense[0]) != len(
        verl.compute_score("demo", "3", None, {"prompt": messages})["dense_rewards"]
    )
    tensor = verl.token_level_tensor(dense, [len(dense[0]), 2], response_length=16)
    assert tensor.shape == (2, 16)
    assert tensor[0, : len(dense[0])].sum() == pytest.approx(good["score"], abs=1e-4)
    assert tensor[1, 2:].sum() == 0
    verl.client.cache_clear()


EXPERT, CORRUPTED = "3 7 19 42", "3 19 7 42"  # the two answers both examples score
NUMBER = re.compile(r"[-+]?\d+\.\d*(?:e[-+]?\d+)?")


def run_example(script: str, demo_url: str) -> str:
    env = {**os.environ, "DRS_REWARD_URL": demo_url, "PYTHONPATH": str(ROOT)}
    args = ["--url", demo_url] if script.startswith("openrlhf") else []
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_openrlhf_example_prints_one_reward_per_query(demo_url: str) -> None:
    answer = json.loads(run_example("openrlhf_remote_rm.py", demo_url))
    rewards = answer["rewards"]
    assert len(rewards) == 2 and all(math.isfinite(r) for r in rewards)
    assert answer["scores"] == rewards
    assert rewards[0] > rewards[1], f"expert {EXPERT!r} should beat corrupted {CORRUPTED!r}"
    tokens = answer["extra_logs"]["completion_tokens"]
    assert len(tokens) == 2 and all(n >= 2 for n in tokens)  # the answer digits and the EOS


def test_verl_example_prints_scores_and_their_token_tensor(demo_url: str) -> None:
    stdout = run_example("verl_reward.py", demo_url)
    head, _, table = stdout.partition("token-level reward tensor [batch, response_length]:")
    table, _, scores_table = table.partition("dense_reward manager: token_level_scores")
    line = re.compile(r"^'(.*)': score ([-+]\d+\.\d+), dense (\[.*\])$", re.MULTILINE)
    rows = line.findall(head)
    assert [answer for answer, _, _ in rows] == [EXPERT, CORRUPTED]
    scores = [float(score) for _, score, _ in rows]
    dense = [ast.literal_eval(values) for _, _, values in rows]
    for score, values in zip(scores, dense, strict=True):
        assert values and all(math.isfinite(v) for v in values)
        assert sum(values) == pytest.approx(score, abs=1e-3)  # the score is printed to 3 places
    assert scores[0] > scores[1], f"expert {EXPERT!r} should beat corrupted {CORRUPTED!r}"
    # The tensor: one row per answer, padded with zeros to the longest + 2 positions.
    width = max(len(values) for values in dense) + 2
    cells = [float(cell) for cell in NUMBER.findall(table)]
    assert len(cells) == 2 * width
    for row, values in zip((cells[:width], cells[width:]), dense, strict=True):
        assert row[: len(values)] == pytest.approx(values, abs=1e-3)  # printed rounded to 3
        assert row[len(values) :] == [0.0] * (width - len(values))
    # The manager on the same answers as token ids, each with its EOS: the same rewards, then
    # the EOS's, then padding.
    cells = [float(cell) for cell in NUMBER.findall(scores_table)]
    width = max(len(values) for values in dense) + 3
    assert len(cells) == 2 * width
    for row, values in zip((cells[:width], cells[width:]), dense, strict=True):
        assert row[: len(values)] == pytest.approx(values, abs=1e-3)
        assert row[len(values)] != 0.0  # the EOS
        assert row[len(values) + 1 :] == [0.0] * (width - len(values) - 1)
