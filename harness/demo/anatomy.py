"""Where the running-sums reward comes from: `log pi_sft - log pi_base` by token role.

`python -m harness anatomy` reads a sums pair (default `.models/demo-sums`) and its held-out
expert answers and writes, per role of a token in "7+4=11, 11+7=18" (the first number, an
addend, a sum, a copied sum, punctuation, EOS): the expert's mean reward, each model's mean
entropy there, and how often a token the SFT model finds plausible (log-prob >= -8) would earn
more than the expert's; then what an answer gains by going on for k more steps (invented
numbers, rightly added). Both say which deviations the reward leaves unpunished: the places a
policy trained on it can drift to. Computed like the build's evaluation (float32 log-softmax
of the demo models, completion with EOS).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from harness.demo import sums
from harness.demo.evaluate import completion_logprobs
from harness.demo.tokenizer import chat_prompt_ids, completion_ids
from harness.paths import ROOT

PLAUSIBLE = -8.0  # log-prob under SFT above which a deviation counts as one a policy may try
EXTRA_STEPS = (1, 2, 4)


def role(previous: str | None, eos: bool) -> str:
    """A token's part in the answer, from the token before it."""
    if eos:
        return "eos"
    if previous is None:
        return "first"
    return {"+": "addend", "=": "sum", ",": "copy"}.get(previous.strip(), "punctuation")


@torch.inference_mode()
def position_logprobs(
    model: LlamaForCausalLM, prompt: list[int], answer: list[int]
) -> torch.Tensor:
    """log pi(. | x, y_<t) over the vocabulary at each answer position: [len(answer), vocab]."""
    ids = torch.tensor([prompt + answer])
    logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return logprobs[len(prompt) - 1 : len(prompt) + len(answer) - 1]


def by_role(
    models: dict[str, LlamaForCausalLM],
    tokenizer: PreTrainedTokenizerFast,
    prompts: Sequence[str],
) -> dict[str, dict[str, float]]:
    rows: dict[str, list[tuple[float, float, float, bool]]] = defaultdict(list)
    for prompt in prompts:
        prompt_ids = chat_prompt_ids(tokenizer, prompt)
        answer = completion_ids(tokenizer, sums.answer_for(sums.numbers_of(prompt)))
        sft = position_logprobs(models["sft"], prompt_ids, answer)
        base = position_logprobs(models["base"], prompt_ids, answer)
        reward = sft - base
        previous = None
        for t, token in enumerate(answer):
            expert = float(reward[t, token])
            deviations = reward[t].masked_fill(sft[t] < PLAUSIBLE, -torch.inf)
            deviations[token] = -torch.inf
            kind = role(previous, token == tokenizer.eos_token_id)
            rows[kind].append(
                (expert, entropy(sft[t]), entropy(base[t]), float(deviations.max()) > expert)
            )
            previous = str(tokenizer.decode([token]))
    return {
        kind: {
            "tokens": len(values),
            "expert_reward": round(statistics.mean(v[0] for v in values), 3),
            "sft_entropy": round(statistics.mean(v[1] for v in values), 3),
            "base_entropy": round(statistics.mean(v[2] for v in values), 3),
            "plausible_deviation_earns_more": round(statistics.mean(v[3] for v in values), 3),
        }
        for kind, values in rows.items()
    }


def entropy(logprobs: torch.Tensor) -> float:
    return float(-(logprobs.exp() * logprobs).sum())


def extension_gains(
    models: dict[str, LlamaForCausalLM],
    tokenizer: PreTrainedTokenizerFast,
    prompts: Sequence[str],
    seed: int,
) -> dict[str, float]:
    """Mean total reward of the expert answer with k more steps, minus the expert's."""
    rng = random.Random(seed)
    answers = [sums.answer_for(sums.numbers_of(prompt)) for prompt in prompts]
    for k in EXTRA_STEPS:
        for prompt in prompts:
            numbers = sums.numbers_of(prompt)
            longer = numbers + [rng.randint(sums.MIN_NUMBER, sums.MAX_NUMBER) for _ in range(k)]
            answers.append(sums.answer_for(longer))
    rows = [
        (chat_prompt_ids(tokenizer, prompt), completion_ids(tokenizer, answer))
        for prompt, answer in zip(list(prompts) * (1 + len(EXTRA_STEPS)), answers, strict=True)
    ]
    # One pass per model over the expert answers, then each k's answers, in that order.
    sft, base = (completion_logprobs(models[name], rows) for name in ("sft", "base"))
    totals = [s - b for s, b in zip(sft, base, strict=True)]
    count = len(prompts)
    expert = totals[:count]
    gains: dict[str, float] = {}
    for i, k in enumerate(EXTRA_STEPS, start=1):
        extended = totals[i * count : (i + 1) * count]
        differences = [e - r for e, r in zip(extended, expert, strict=True)]
        gains[f"{k} more"] = round(statistics.mean(differences), 3)
    return gains


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m harness anatomy", description=__doc__)
    parser.add_argument("--demo", type=Path, default=ROOT / ".models/demo-sums")
    parser.add_argument("--prompts", type=int, default=100, help="Held-out prompts read.")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/guards/sums-anatomy.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(args.demo / "sft")
    models = {
        name: LlamaForCausalLM.from_pretrained(args.demo / name, dtype=torch.float32).eval()
        for name in ("sft", "base")
    }
    lines = (args.demo / "heldout_pairs.jsonl").read_text().splitlines()[: args.prompts]
    prompts = [json.loads(line)["messages"][0]["content"] for line in lines]
    report = {
        "demo": str(args.demo),
        "prompts": len(prompts),
        "plausible_logprob": PLAUSIBLE,
        "by_role": by_role(models, tokenizer, prompts),
        "extension_gain": extension_gains(models, tokenizer, prompts, args.seed),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report
