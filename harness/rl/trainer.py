"""Dense-Path REINFORCE (arXiv 2510.02493): improve the SFT policy on the server's dense rewards.

Each step: K answers per prompt sampled at temperature 1 from the policy (which starts as the
SFT model); the server scores the sampled ids (`append_eos`, `gamma = 1`, the run's reward
fields) and returns, for every token, its returns-to-go under the request's aggregate and
`log pi_sft`; each token's log-prob gradient is weighted by its undiscounted return-to-go of
KL-shaped rewards minus a leave-one-out baseline (`credit.py`); one Adam step. The server is
the reward model and the KL reference: nothing else is loaded.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dense_reward_client import RewardClient
from dense_reward_client.fingerprint import tokenizer_fingerprint
from tqdm import tqdm
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from harness.demo.lm import sample, token_logprobs
from harness.demo.tasks import TASKS, DemoTask
from harness.demo.tokenizer import chat_prompt_ids
from harness.rl import credit
from harness.rl.config import DPRConfig

Checker = Callable[[str, str], bool]  # (prompt, answer text) -> exact answer?


@dataclass
class Sample:
    """One answer: its action ids (EOS included when the policy ended it) and the server's view."""

    prompt: str
    prompt_ids: list[int]
    ids: list[int]
    truncated: bool  # no EOS within max_new_tokens
    # Per scored token: the actions, then, when truncated, the EOS the server appended.
    rewards: (
        np.ndarray
    )  # the server's reward as its aggregate weighs it (returns[t] - returns[t+1])
    sft_logprobs: np.ndarray
    correct: bool


class DPRTrainer:
    """The policy, its optimizer, the server client; `step()` is one REINFORCE update."""

    def __init__(
        self,
        policy_dir: Path,
        client: RewardClient,
        config: DPRConfig,
        check: Checker | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.check = check or TASKS[config.task].is_correct
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(policy_dir)
        self.eos_id = int(self.tokenizer.eos_token_id)
        self.policy = LlamaForCausalLM.from_pretrained(policy_dir, dtype=torch.float32)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.lr)
        self.generator = torch.Generator().manual_seed(config.seed)
        # The server answers 409 if its tokenizer is not the policy's: ids would not line up.
        self.fingerprint = tokenizer_fingerprint(self.tokenizer)
        self.policy.eval()  # sampling and the gradient see the same policy (no dropout)

    def save(self, folder: Path) -> None:
        """The trained policy as a model folder any server or trainer can load."""
        self.policy.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def prompt_ids(self, prompt: str) -> list[int]:
        return chat_prompt_ids(self.tokenizer, prompt)

    def rollout(self, prompts: Sequence[str], samples: int, greedy: bool = False) -> list[Sample]:
        """Answers from the policy, scored by the server (one request, a group per prompt)."""
        ids = [self.prompt_ids(p) for p in prompts]
        generator = None if greedy else self.generator
        drawn = sample(
            self.policy, ids, samples, self.config.max_new_tokens, self.eos_id, generator
        )
        items = [
            {"prompt_token_ids": p, "completions": answers}
            for p, answers in zip(ids, drawn, strict=True)
        ]
        results = self.client.token_rewards(
            items,
            append_eos=True,
            gamma=1.0,
            include=["logprobs", "returns"],
            tokenizer_fingerprint=self.fingerprint,
            **self.config.reward,
        )
        out = []
        for prompt, prompt_ids, answers, result in zip(prompts, ids, drawn, results, strict=True):
            for answer, scored in zip(answers, result["completions"], strict=True):
                out.append(self._sample(prompt, prompt_ids, answer, scored))
        return out

    def _sample(
        self, prompt: str, prompt_ids: list[int], answer: list[int], scored: dict[str, Any]
    ) -> Sample:
        truncated = not answer or answer[-1] != self.eos_id
        # A truncated answer is ended by the trainer, and the server scores that ending (it
        # appends EOS): the ending's reward enters every earlier token's return, as it would had
        # the policy ended there. Without it, an answer that never ends would collect rewards
        # token after token with no verdict on its end. No gradient flows to that EOS: the
        # policy never drew it.
        if scored["eos_appended"] != truncated or scored["num_tokens"] != len(answer) + truncated:
            raise RuntimeError(
                f"the server scored {scored['num_tokens']} tokens (EOS appended: "
                f"{scored['eos_appended']}) for {len(answer)} sampled ({truncated=})"
            )
        text = str(self.tokenizer.decode(answer if truncated else answer[:-1]))
        # What each token adds to the sequence's score: its reward for the sum aggregate, its
        # softmin-weighted reward for soft_min, and so on (returns[0] is the aggregate).
        returns = np.asarray(scored["returns"], dtype=np.float64)
        return Sample(
            prompt=prompt,
            prompt_ids=prompt_ids,
            ids=answer,
            truncated=truncated,
            rewards=returns - np.append(returns[1:], 0.0),
            sft_logprobs=np.asarray(scored["sft_logprobs"], dtype=np.float64),
            correct=not truncated and self.check(prompt, text),
        )

    def step(self, prompts: Sequence[str]) -> dict[str, float]:
        """One update on K samples of each prompt; returns the step's statistics."""
        samples = self.rollout(prompts, self.config.samples_per_prompt)
        logprobs = token_logprobs(self.policy, [(s.prompt_ids, s.ids) for s in samples])
        policy_lp = [lp.detach().double().numpy() for lp in logprobs]
        returns = [
            credit.returns_to_go(
                credit.kl_shaped(
                    credit.token_rewards(self.config.credit, s.rewards, s.correct),
                    lp,
                    s.sft_logprobs,
                    self.config.kl_coef,
                )
            )
            for s, lp in zip(samples, policy_lp, strict=True)
        ]
        k = self.config.samples_per_prompt
        loo = [
            a for i in range(0, len(returns), k) for a in credit.loo_advantages(returns[i : i + k])
        ]
        # Actions only: an appended EOS's advantage is dropped (its reward is in the returns).
        actions = credit.whiten([a[: len(s.ids)] for a, s in zip(loo, samples, strict=True)])
        weights = torch.cat([torch.from_numpy(a).float() for a in actions])
        loss = -(weights * torch.cat(logprobs)).sum() / len(weights)  # token mean
        self.optimizer.zero_grad()
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.policy.parameters(), 1.0))
        self.optimizer.step()
        kl = [sequence_kl(lp, s) for s, lp in zip(samples, policy_lp, strict=True)]
        return {
            "loss": float(loss.detach()),
            "grad_norm": grad_norm,
            "return": float(np.mean([g[0] for g in returns])),
            "dense_total": float(np.mean([s.rewards.sum() for s in samples])),
            "kl": float(np.mean(kl)),
            "train_correct": float(np.mean([s.correct for s in samples])),
            "truncated": float(sum(s.truncated for s in samples)),
            "answer_tokens": float(np.mean([len(s.ids) for s in samples])),
        }

    @torch.inference_mode()
    def evaluate(self, prompts: Sequence[str], samples: int) -> dict[str, Any]:
        """Greedy and sampled (T=1) exact-answer accuracy and KL to SFT on `prompts`.

        KL is the mean over sampled answers of sum_t (log pi_theta - log pi_sft): an unbiased
        estimate of the sequence-level KL(pi_theta || pi_sft), with log pi_sft from the server.
        """
        greedy = self.rollout(prompts, 1, greedy=True)
        sampled = self.rollout(prompts, samples) if samples else []
        per_prompt = (
            [
                float(np.mean([s.correct for s in sampled[i * samples : (i + 1) * samples]]))
                for i in range(len(prompts))
            ]
            if samples
            else []
        )
        logprobs = (
            token_logprobs(self.policy, [(s.prompt_ids, s.ids) for s in sampled]) if sampled else []
        )
        kl = [sequence_kl(lp.double().numpy(), s) for s, lp in zip(sampled, logprobs, strict=True)]
        return {
            "greedy_correct": [bool(s.correct) for s in greedy],
            "sampled_correct": per_prompt,
            "greedy_accuracy": float(np.mean([s.correct for s in greedy])),
            "sampled_accuracy": float(np.mean(per_prompt)) if per_prompt else None,
            "kl": float(np.mean(kl)) if kl else None,
            "dense_total": float(np.mean([s.rewards.sum() for s in sampled])) if sampled else None,
            "truncated": sum(s.truncated for s in [*greedy, *sampled]),
        }


def sequence_kl(policy_logprobs: np.ndarray, sample: Sample) -> float:
    """sum_t (log pi_theta - log pi_sft) over the answer's actions: a one-sample estimate of
    the sequence-level KL(pi_theta || pi_sft)."""
    return float((policy_logprobs - sample.sft_logprobs[: len(policy_logprobs)]).sum())


def train_prompts(seed: int, exclude: set[str], demo_task: DemoTask) -> Iterator[str]:
    """An endless stream of demo-task prompts, seeded, never one of `exclude` (the held-out)."""
    rng = random.Random(f"dpr-{seed}-prompts")
    while True:
        prompt, _ = demo_task.make_example(rng)
        if prompt not in exclude:
            yield prompt


def heldout_prompts(pairs: Path) -> list[str]:
    """The prompts of a pairs file (the demo build's `heldout_pairs.jsonl`: never trained on)."""
    lines = pairs.read_text().splitlines()
    return [json.loads(line)["messages"][0]["content"] for line in lines]


def run(
    trainer: DPRTrainer,
    held: Sequence[str],
    eval_prompts: int,
    eval_samples: int,
    log: Callable[[dict[str, Any]], None] = lambda row: None,
    progress: bool = True,
) -> dict[str, Any]:
    """`config.steps` updates on demo-task prompts that are never one of `held`, a greedy
    check on the first `eval_slice` held-out prompts every `eval_every` steps, then the full
    evaluation on the first `eval_prompts`. Returns the run's record (config, per-step log,
    final eval)."""
    config = trainer.config
    prompts = train_prompts(config.seed, set(held), TASKS[config.task])
    held_slice = list(held[: config.eval_slice])
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    bar = tqdm(
        range(config.steps), desc=f"dpr {config.credit} seed {config.seed}", disable=not progress
    )
    for step in bar:
        row: dict[str, Any] = {
            "step": step + 1,
            **trainer.step([next(prompts) for _ in range(config.prompts_per_step)]),
        }
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            row["heldout_greedy"] = trainer.evaluate(held_slice, 0)["greedy_accuracy"]
        row["elapsed_s"] = round(time.perf_counter() - started, 2)
        rows.append(row)
        log(row)
        bar.set_postfix(
            ret=f"{row['return']:.2f}",
            kl=f"{row['kl']:.2f}",
            acc=f"{row['train_correct']:.2f}",
            refresh=False,
        )
    final = trainer.evaluate(held[:eval_prompts], eval_samples)
    return {
        "config": asdict(config),
        # What else shaped the run: the server's models, beta and limits; torch's threads.
        "server": trainer.client.models(),
        "torch_threads": torch.get_num_threads(),
        "log": rows,
        "eval": final,
        "train_s": round(time.perf_counter() - started, 1),
    }
