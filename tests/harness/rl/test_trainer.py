"""The Dense-Path REINFORCE trainer against a live server: it really asks the server, its
updates are finite and move the policy, a seed reproduces a run, and the CLI writes records."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from dense_reward_client import RewardClient

from harness.demo.tasks import TASKS
from harness.rl.config import TASK_LR, DPRConfig
from harness.rl.trainer import DPRTrainer, heldout_prompts, run, train_prompts


class CountingTransport(httpx.HTTPTransport):
    """A real transport that counts the scoring requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.scored = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/token_rewards":
            body = json.loads(request.content)
            assert body["append_eos"] is True and body["gamma"] == 1.0
            self.scored += 1
        return super().handle_request(request)


def short_run(
    demo_url: str, demo_dir: Path, **overrides: Any
) -> tuple[dict[str, Any], DPRTrainer, int]:
    config = DPRConfig(
        steps=2, prompts_per_step=2, samples_per_prompt=4, eval_every=1, eval_slice=3
    )
    config = replace(config, **overrides)
    held = heldout_prompts(demo_dir / "heldout_pairs.jsonl")
    transport = CountingTransport()
    with RewardClient(demo_url, transport=transport) as client:
        trainer = DPRTrainer(demo_dir / "sft", client, config)
        record = run(trainer, held, 4, 2, progress=False)
    return record, trainer, transport.scored


@pytest.mark.parametrize("credit", ["dense", "sparse", "verifier"])
def test_steps_call_the_server_and_update_the_policy(
    demo_url: str, demo_dir: Path, credit: str
) -> None:
    record, trainer, scored = short_run(demo_url, demo_dir, credit=credit)
    # Per step: one rollout and one held-out greedy check; then the final greedy + sampled eval.
    assert scored == 2 * 2 + 2
    for row in record["log"]:
        assert all(math.isfinite(row[k]) for k in ("loss", "grad_norm", "return", "kl"))
        assert 0 <= row["heldout_greedy"] <= 1
    sft = type(trainer.policy).from_pretrained(demo_dir / "sft")
    moved = any(
        not torch.equal(a, b)
        for a, b in zip(trainer.policy.parameters(), sft.parameters(), strict=True)
    )
    assert moved, "two updates left the policy unchanged"
    final = record["eval"]
    assert len(final["greedy_correct"]) == len(final["sampled_correct"]) == 4
    assert final["kl"] is not None and math.isfinite(final["kl"])


def test_a_seed_reproduces_a_run(demo_url: str, demo_dir: Path) -> None:
    first, _, _ = short_run(demo_url, demo_dir, seed=3)
    again, _, _ = short_run(demo_url, demo_dir, seed=3)
    other, _, _ = short_run(demo_url, demo_dir, seed=4)
    keys = ("return", "answer_tokens", "train_correct")
    assert [[r[k] for k in keys] for r in first["log"]] == [
        [r[k] for k in keys] for r in again["log"]
    ]
    assert first["log"][0]["return"] != other["log"][0]["return"]


def test_sft_alone_has_no_kl_to_itself(demo_url: str, demo_dir: Path) -> None:
    """Zero steps: the policy is the server's SFT model, so the KL estimate is ~0 (the server's
    and the trainer's forwards agree), and the server's dense total is what the eval reports."""
    record, _, _ = short_run(demo_url, demo_dir, steps=0)
    assert record["log"] == []
    assert abs(record["eval"]["kl"]) < 1e-3


def test_cli_trains_and_saves(demo_url: str, demo_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app as cli

    out = tmp_path / "run.json"
    args = ["train-dpr", "--url", demo_url, "--policy", str(demo_dir / "sft")]
    args += ["--heldout", str(demo_dir / "heldout_pairs.jsonl"), "--steps", "1"]
    args += ["--prompts-per-step", "2", "--samples", "2", "--eval-prompts", "2"]
    args += ["--out", str(out), "--save", str(tmp_path / "policy")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "held-out greedy accuracy" in result.output
    assert json.loads(out.read_text())["config"]["steps"] == 1
    assert json.loads(out.read_text())["config"]["lr"] == TASK_LR["sort"]  # the task's own
    assert len(out.with_suffix(".log.jsonl").read_text().splitlines()) == 1
    assert (tmp_path / "policy" / "model.safetensors").exists()
    bad = CliRunner().invoke(cli, [*args[:3], "--credit", "oracle"])
    assert bad.exit_code == 2 and "--credit 'oracle'" in bad.output
    bad = CliRunner().invoke(cli, [*args[:3], "--task", "chess"])
    assert bad.exit_code == 2 and "--task 'chess'" in bad.output
    bad = CliRunner().invoke(cli, [*args[:3], "--reward", "[1]"])
    assert bad.exit_code == 2 and "--reward" in bad.output
    guarded = tmp_path / "guarded.json"
    fields = '{"aggregate": "soft_min", "ref_logprob_floor": -5.0}'
    told = [*args[:-4], "--reward", fields, "--lr", "1e-4", "--out", str(guarded)]
    result = CliRunner().invoke(cli, told)
    assert result.exit_code == 0, result.output
    assert json.loads(guarded.read_text())["config"]["reward"] == json.loads(fields)
    assert json.loads(guarded.read_text())["config"]["lr"] == 1e-4


class NoDenseReward:
    """A stand-in reward server for one property only, the direction of the update: zero
    dense reward and log pi_sft on every token, so the verifier alone drives training. It
    honours `append_eos` as the server does."""

    def __init__(self, eos: int) -> None:
        self.eos = eos

    def token_rewards(self, items: list[dict[str, Any]], **options: Any) -> list[dict[str, Any]]:
        assert options["append_eos"] and options["include"] == ["logprobs", "returns"]
        results = []
        for item in items:
            members = []
            for ids in item["completions"]:
                appended = ids[-1] != self.eos
                zeros = [0.0] * (len(ids) + appended)
                members.append(
                    {
                        "num_tokens": len(zeros),
                        "eos_appended": appended,
                        "rewards": zeros,
                        "returns": zeros,
                        "sft_logprobs": zeros,
                    }
                )
            results.append({"completions": members})
        return results


def expert_logprob_drop(demo_dir: Path) -> float:
    """How far 12 verifier-driven steps lower the policy's log-prob of 64 expert answers."""
    import random

    from harness.demo import task
    from harness.demo.lm import token_logprobs
    from harness.demo.tokenizer import completion_ids

    config = DPRConfig(credit="verifier", lr=3e-4, kl_coef=0.0, samples_per_prompt=8)
    trainer = DPRTrainer(demo_dir / "sft", NoDenseReward(2), config)  # type: ignore[arg-type]
    rng = random.Random(5)
    examples = [task.make_example(rng) for _ in range(64)]
    rows = [(trainer.prompt_ids(p), completion_ids(trainer.tokenizer, a)) for p, a in examples]

    def expert() -> float:
        with torch.no_grad():
            return sum(float(x.sum()) for x in token_logprobs(trainer.policy, rows))

    before = expert()
    prompts = train_prompts(0, set(), TASKS["sort"])
    for _ in range(12):
        trainer.step([next(prompts) for _ in range(8)])
    return before - expert()


def test_updates_climb_the_reward(demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rewarding exact answers keeps the policy on them (measured: the 64 expert answers lose
    1.6 nats in all); the same steps with the advantage's sign flipped wreck it (170 nats)."""
    assert expert_logprob_drop(demo_dir) < 30
    from harness.rl import credit

    whiten = credit.whiten
    monkeypatch.setattr(credit, "whiten", lambda a: [-x for x in whiten(a)])
    assert expert_logprob_drop(demo_dir) > 30


def test_truncated_answers_get_their_ending_scored(demo_url: str, demo_dir: Path) -> None:
    """Answers cut at 2 tokens: the server appends and scores EOS; the step uses its reward
    in the returns, and the gradient only the 2 sampled tokens."""
    config = DPRConfig(prompts_per_step=2, samples_per_prompt=2, max_new_tokens=2)
    with RewardClient(demo_url) as client:
        trainer = DPRTrainer(demo_dir / "sft", client, config)
        samples = trainer.rollout(["Sort ascending: 42 7 19 3 88"], 2)
        assert all(s.truncated and len(s.ids) == 2 for s in samples)
        assert all(len(s.rewards) == len(s.sft_logprobs) == 3 for s in samples)
        row = trainer.step(["Sort ascending: 42 7 19 3 88", "Sort ascending: 9 8 7 6"])
    assert row["truncated"] == 4 and row["answer_tokens"] == 2
    assert all(math.isfinite(row[k]) for k in ("loss", "return", "kl"))


def test_a_guarded_reward_trains_on_the_aggregates_weights(demo_url: str, demo_dir: Path) -> None:
    """With soft_min the per-token rewards the trainer uses are the aggregate's weighted ones:
    they sum to the server's aggregate_reward, not to its total."""
    reward = {"aggregate": "soft_min", "soft_min_temperature": 0.5}
    config = DPRConfig(prompts_per_step=1, samples_per_prompt=3, reward=reward)
    prompt = "Sort ascending: 42 7 19 3 88"
    with RewardClient(demo_url) as client:
        trainer = DPRTrainer(demo_dir / "sft", client, config)
        samples = trainer.rollout([prompt], 3)
        ids = samples[0].prompt_ids
        scored = client.token_rewards(
            [{"prompt_token_ids": ids, "completions": [s.ids for s in samples]}],
            append_eos=True,
            **reward,
        )[0]["completions"]
    for sample, result in zip(samples, scored, strict=True):
        assert sample.rewards.sum() == pytest.approx(result["aggregate_reward"], abs=1e-4)
        assert abs(result["aggregate_reward"] - result["total_reward"]) > 1e-3
