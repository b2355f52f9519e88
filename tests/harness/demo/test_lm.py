"""The harness's one decoder and forward pass (harness/demo/lm.py), against transformers' own
`generate` and an unpadded forward of each row."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from harness.demo.evaluate import completion_logprobs, greedy_answers
from harness.demo.lm import sample, token_logprobs
from harness.demo.tokenizer import chat_prompt_ids

Pair = tuple[LlamaForCausalLM, PreTrainedTokenizerFast]
PROMPTS = ["Sort ascending: 42 7 19 3", "Sort ascending: 5 1", "Sort ascending: 9 8 7 6 5 4 3 2"]


@pytest.fixture(scope="module")
def model_and_tokenizer(demo_dir: Path) -> Pair:
    folder = demo_dir / "sft"
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, PreTrainedTokenizerFast.from_pretrained(folder)


def test_greedy_answers_are_transformers_greedy_generate(model_and_tokenizer: Pair) -> None:
    model, tokenizer = model_and_tokenizer
    eos = tokenizer.eos_token_id
    ids = [chat_prompt_ids(tokenizer, p) for p in PROMPTS]
    answers = sample(model, ids, 1, 16, eos, generator=None)
    for prompt_ids, [answer] in zip(ids, answers, strict=True):
        reference = model.generate(
            torch.tensor([prompt_ids]), max_new_tokens=16, do_sample=False, eos_token_id=eos
        )[0, len(prompt_ids) :].tolist()
        assert answer == reference
    texts = [tokenizer.decode(a[0][:-1]) for a in answers]
    assert all(a[0][-1] == eos for a in answers)
    assert texts == greedy_answers(model, tokenizer, PROMPTS)


def test_samples_are_seeded_cut_at_eos_and_capped(model_and_tokenizer: Pair) -> None:
    model, tokenizer = model_and_tokenizer
    eos = tokenizer.eos_token_id
    ids = [chat_prompt_ids(tokenizer, p) for p in PROMPTS]
    first = sample(model, ids, 4, 16, eos, torch.Generator().manual_seed(1))
    again = sample(model, ids, 4, 16, eos, torch.Generator().manual_seed(1))
    assert first == again and [len(a) for a in first] == [4, 4, 4]
    for answers in first:
        for answer in answers:
            assert eos not in answer[:-1] and (answer[-1] == eos or len(answer) == 16)
    short = sample(model, ids, 2, 2, eos, torch.Generator().manual_seed(1))
    assert all(len(a) <= 2 for answers in short for a in answers)


def test_token_logprobs_sum_to_the_demo_scorer(model_and_tokenizer: Pair) -> None:
    model, tokenizer = model_and_tokenizer
    rows = [
        (chat_prompt_ids(tokenizer, p), tokenizer(" 1 2 3")["input_ids"] + [2]) for p in PROMPTS
    ]
    picked = token_logprobs(model, rows)
    assert [len(p) for p in picked] == [len(a) for _, a in rows]
    assert picked[0].requires_grad
    with torch.inference_mode():  # each row alone: no padding anywhere
        alone = [
            torch.log_softmax(model(input_ids=torch.tensor([p + a])).logits[0].float(), -1)[
                torch.arange(len(p) - 1, len(p) + len(a) - 1), torch.tensor(a)
            ]
            for p, a in rows
        ]
    for mine, reference in zip(picked, alone, strict=True):
        assert mine.detach().tolist() == pytest.approx(reference.tolist(), abs=1e-4)
    totals = completion_logprobs(model, rows)
    assert totals == pytest.approx([float(r.double().sum()) for r in alone], abs=1e-4)
