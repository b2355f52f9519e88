"""Does the recovered reward mean something? Expert vs corrupted answers on held-out prompts.

Scoring follows the service's contract: the prompt is the chat template with the generation
prompt (tokenized without added special tokens), the completion is tokenized on its own and
EOS is appended; the total reward is the sum over completion tokens of
log pi_sft - log pi_baseline.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from harness.demo import task
from harness.demo.lm import sample, token_logprobs
from harness.demo.tasks import SORT, DemoTask
from harness.demo.tokenizer import chat_prompt_ids, completion_ids
from harness.evaluation.report import wins

Pair = dict[str, Any]  # one line of heldout_pairs.jsonl
BASELINES = ("base", "sft-half")
# Base's other tasks (copy, reverse, count, ...) answer at most 8 numbers, as sorting does.
OTHER_TASKS_MAX_TOKENS = SORT.max_answer_tokens


def heldout_pairs(
    demo_task: DemoTask, rng: random.Random, exclude: set[str], count: int
) -> list[Pair]:
    """Expert vs corrupted answers on prompts never trained on, the kinds taken in turn."""
    pairs: list[Pair] = []
    seen = set(exclude)
    while len(pairs) < count:
        prompt, answer = demo_task.make_example(rng)
        if prompt in seen:
            continue
        seen.add(prompt)
        kind = demo_task.corruptions[len(pairs) % len(demo_task.corruptions)]
        pairs.append(
            {
                "messages": [{"role": "user", "content": prompt}],
                "chosen": answer,
                "rejected": demo_task.corrupt(answer, prompt, kind, rng),
                "kind": kind,
            }
        )
    return pairs


def evaluate(
    demo_task: DemoTask,
    folder: Path,
    tokenizer: PreTrainedTokenizerFast,
    pairs: list[Pair],
    greedy_prompts: int,
    other_tasks: list[task.Chat],
) -> dict[str, Any]:
    """Pairwise accuracy of the total reward against each baseline, and greedy correctness
    on the first `greedy_prompts` pairs' prompts.

    Greedy answers to `other_tasks` (copy, reverse, count, ...) show what base knows and how
    much of it SFT forgot.
    """
    models = {
        name: LlamaForCausalLM.from_pretrained(folder / name, dtype=torch.float32).eval()
        for name in ("sft", *BASELINES)
    }
    rows = []
    for pair in pairs:
        prompt_ids = chat_prompt_ids(tokenizer, pair["messages"][0]["content"])
        for side in ("chosen", "rejected"):
            rows.append((prompt_ids, completion_ids(tokenizer, pair[side])))
    expert_lengths = [len(answer) for _, answer in rows[0::2]]
    # Sum of completion log-probs per model, in the order: pair 0 chosen, pair 0 rejected, ...
    totals = {name: completion_logprobs(model, rows) for name, model in models.items()}
    report: dict[str, Any] = {
        "task": demo_task.description,
        "pairs": len(pairs),
        # Expert answers in tokens, EOS included.
        "answer_tokens": {
            "min": min(expert_lengths),
            "median": statistics.median(expert_lengths),
            "max": max(expert_lengths),
        },
        "accuracy": {},
        "accuracy_by_kind": {},
        "mean_total_reward": {},
    }
    for baseline in BASELINES:
        rewards = [s - b for s, b in zip(totals["sft"], totals[baseline], strict=True)]
        accuracy = pairwise_accuracy(pairs, rewards)
        report["accuracy"][baseline] = accuracy.pop("all")
        report["accuracy_by_kind"][baseline] = accuracy
        report["mean_total_reward"][baseline] = {
            "chosen": round(sum(rewards[0::2]) / len(pairs), 3),
            "rejected": round(sum(rewards[1::2]) / len(pairs), 3),
        }
    # Likelihood under SFT alone, for comparison: what the baseline subtraction adds or costs.
    report["accuracy"]["sft_logprob_only"] = pairwise_accuracy(pairs, totals["sft"])["all"]
    prompts = [pair["messages"][0]["content"] for pair in pairs[:greedy_prompts]]
    report["greedy_correct"] = {}
    report["other_tasks_greedy_correct"] = {}
    for name in ("sft", *BASELINES):
        answers = greedy_answers(models[name], tokenizer, prompts, demo_task.max_answer_tokens)
        report["greedy_correct"][name] = fraction(
            a is not None and demo_task.is_correct(p, a)
            for p, a in zip(prompts, answers, strict=True)
        )
        answers = greedy_answers(models[name], tokenizer, [p for p, _ in other_tasks])
        report["other_tasks_greedy_correct"][name] = fraction(
            a == expected for (_, expected), a in zip(other_tasks, answers, strict=True)
        )
    return report


@torch.inference_mode()
def completion_logprobs(
    model: LlamaForCausalLM, rows: list[tuple[list[int], list[int]]], batch: int = 128
) -> list[float]:
    """Sum of log pi(y_t | x, y_<t) over each completion (float32 log-softmax, float64 sum)."""
    return [
        float(picked.double().sum())
        for start in range(0, len(rows), batch)
        for picked in token_logprobs(model, rows[start : start + batch])
    ]


def pairwise_accuracy(pairs: list[Pair], scores: list[float]) -> dict[str, float]:
    """Mean win of the chosen score over the rejected one (a tie is half a win, as in
    `harness.evaluation`): all pairs, then by kind."""
    outcome = wins(np.array(scores[0::2]), np.array(scores[1::2]))
    by_kind: Mapping[str, list[float]] = defaultdict(list)
    for pair, won in zip(pairs, outcome.tolist(), strict=True):
        by_kind["all"].append(won)
        by_kind[pair["kind"]].append(won)
    return {kind: round(sum(w) / len(w), 4) for kind, w in by_kind.items()}


def greedy_answers(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    prompts: list[str],
    max_new_tokens: int = OTHER_TASKS_MAX_TOKENS,
) -> list[str | None]:
    """Greedy answers (the trainer's decoder), cut at EOS; None where no EOS came."""
    eos = int(tokenizer.eos_token_id)
    prompt_ids = [chat_prompt_ids(tokenizer, prompt) for prompt in prompts]
    drawn = sample(model, prompt_ids, 1, max_new_tokens, eos, generator=None)
    return [
        str(tokenizer.decode(answer[:-1])) if answer[-1:] == [eos] else None for [answer] in drawn
    ]


def fraction(flags: Iterable[bool]) -> float:
    values = list(flags)
    return round(sum(values) / max(1, len(values)), 4)
