"""The transformers engine: batched and padded, it must equal one unpadded forward per item."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from dense_reward_server.engines.hf_engine import HFScoringEngine, plan_microbatches
from dense_reward_server.sequence import ScoreInput


def reference_logprobs(model: torch.nn.Module, item: ScoreInput) -> np.ndarray:
    """Independent computation: one sequence, no padding, full-vocabulary log-softmax."""
    ids = torch.tensor([[*item.prompt_ids, *item.completion_ids]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    start = len(item.prompt_ids)
    return np.array(
        [float(logprobs[start + j - 1, token]) for j, token in enumerate(item.completion_ids)]
    )


def test_padded_batches_equal_single_unpadded_forwards(demo_dir: Path) -> None:
    engine = HFScoringEngine("sft", str(demo_dir / "sft"), max_batch_tokens=600)
    model = AutoModelForCausalLM.from_pretrained(str(demo_dir / "sft"), dtype=torch.float32).eval()
    rng = random.Random(1)
    vocab = engine.info.vocab_size
    batch = [
        ScoreInput(
            [rng.randrange(vocab) for _ in range(rng.randrange(1, 40))],
            [rng.randrange(vocab) for _ in range(rng.randrange(1, 120))],
        )
        for _ in range(12)
    ]
    got = asyncio.run(engine.score(batch, "t"))
    assert [len(g) for g in got] == [len(item.completion_ids) for item in batch]
    for item, values in zip(batch, got, strict=True):
        assert values.dtype == np.float32
        assert np.max(np.abs(values - reference_logprobs(model, item))) <= 1e-5
    engine.shutdown()


@pytest.mark.parametrize(
    ("lengths", "budget", "expected"),
    [
        ([10, 30, 20], 60, [[1, 2], [0]]),
        ([10, 30, 20], 1000, [[1, 2, 0]]),
        ([500, 5], 100, [[0], [1]]),
    ],
)
def test_microbatches_respect_the_padded_token_budget(
    lengths: list[int], budget: int, expected: list[list[int]]
) -> None:
    assert plan_microbatches(lengths, budget) == expected


def test_shared_prompts_are_computed_once_and_equal_single_forwards(demo_dir: Path) -> None:
    """Groups (and flat items repeating a prompt) run the prompt once, split into micro-batches
    by a small budget; every value still equals one unpadded forward of the whole sequence."""
    engine = HFScoringEngine("sft", str(demo_dir / "sft"), max_batch_tokens=700)
    model = AutoModelForCausalLM.from_pretrained(str(demo_dir / "sft"), dtype=torch.float32).eval()
    rng = random.Random(2)
    vocab = engine.info.vocab_size

    def ids(n: int) -> list[int]:
        return [rng.randrange(vocab) for _ in range(n)]

    prompt, stem = ids(130), ids(20)
    group = [ScoreInput(prompt, stem + ids(rng.randrange(1, 50))) for _ in range(6)]
    group += [ScoreInput(prompt, [7]), ScoreInput(prompt, group[0].completion_ids)]
    others = [ScoreInput(ids(rng.randrange(1, 30)), ids(rng.randrange(1, 40))) for _ in range(3)]
    batch = [others[0], *group[:4], others[1], *group[4:], others[2]]
    shapes: list[tuple[int, ...]] = []
    engine._model.register_forward_pre_hook(
        lambda _module, _args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
        with_kwargs=True,
    )
    got = asyncio.run(engine.score(batch, "t"))
    for item, values in zip(batch, got, strict=True):
        assert np.max(np.abs(values - reference_logprobs(model, item))) <= 1e-5
    # The 130-token prompt went through the model once, alone; everything else ran shorter
    # rows (the group's completions on copies of its cache, the other items whole).
    assert [shape for shape in shapes if shape[1] >= 130] == [(1, 130)]
    assert len(shapes) >= 3  # the budget split the group's completions
    engine.shutdown()
