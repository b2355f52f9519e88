"""Trainer adapters against live servers: TRL (real GRPO steps), verl, and their alignment."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.adapters import verl
from service.adapters.trl import DenseReward, padded, token_rewards
from service.api.app import create_app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def url(settings_for: Callable[..., Any], thread_server: Any) -> Iterator[str]:
    with thread_server(create_app(settings_for(backend="transformers"))) as server:
        yield server.url


def test_trl_reward_function_scores_the_sampled_ids(url: str, demo_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(demo_dir / "sft"))
    reward = DenseReward(url, tokenizer=tokenizer)
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
    url: str, demo_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from tests.test_startup import altered_copy

    altered_copy(demo_dir / "sft", tmp_path / "other")
    with pytest.raises(ValueError, match="not the reward server's"):
        DenseReward(url, tokenizer=AutoTokenizer.from_pretrained(str(tmp_path / "other")))


def test_grpo_steps_with_the_real_trl_trainer(url: str, demo_dir: Path) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from trl_grpo import train
    finally:
        sys.path.pop(0)
    result = train(url, str(demo_dir / "sft"), steps=2)
    assert result["global_step"] == 2
    rewards = [entry["reward"] for entry in result["log_history"] if "reward" in entry]
    assert len(rewards) == 2 and all(np.isfinite(rewards))


def test_verl_compute_score_and_token_tensor(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRS_REWARD_URL", url)
    verl.client.cache_clear()
    messages = [{"role": "user", "content": "Sort ascending: 42 7 19 3"}]
    good = verl.compute_score("demo", "3 7 19 42", None, {"prompt": messages})
    bad = verl.compute_score("demo", "42 19 7 3", None, {"prompt": messages})
    assert good["score"] > bad["score"]
    assert sum(good["dense_rewards"]) == pytest.approx(good["score"], abs=1e-4)
    tensor = verl.token_level_tensor(
        [good["dense_rewards"], bad["dense_rewards"]],
        [len(good["dense_rewards"]), 2],
        response_length=16,
    )
    assert tensor.shape == (2, 16)
    assert tensor[0, : len(good["dense_rewards"])].sum() == pytest.approx(good["score"], abs=1e-4)
    assert tensor[1, 2:].sum() == 0
    verl.client.cache_clear()


@pytest.mark.parametrize("script", ["openrlhf_remote_rm.py", "verl_reward.py"])
def test_examples_run_against_a_live_server(url: str, script: str) -> None:
    import os
    import subprocess

    env = {**os.environ, "DRS_REWARD_URL": url, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--url", url]
        if script.startswith("openrlhf")
        else [sys.executable, str(ROOT / "examples" / script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "score" in done.stdout or "rewards" in done.stdout
