"""The demo tasks by name: what the build, an RL trainer or an audit tool needs of each.

Both pairs share one tokenizer; every task's `base` is the sorting build's, trained further on
the task's own pretraining transcripts where the task has them, and its `sft` is that base
fine-tuned on the task's demonstrations. Pure text like the task modules: no torch.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.demo import sums, task
from harness.demo.task import Chat

ExampleMaker = Callable[[random.Random], Chat]  # a prompt and its expert completion
Checker = Callable[[str, str], bool]  # (prompt, completion) -> correct?
Corrupter = Callable[[str, str, str, random.Random], str]  # (completion, prompt, kind, rng)


@dataclass(frozen=True)
class DemoTask:
    name: str
    description: str  # one line, e.g. the report's "task"
    folder: Path  # the pair's default folder, relative to the repository root
    max_answer_tokens: int  # what a sampler should allow, EOS included
    make_example: ExampleMaker
    is_correct: Checker
    corrupt: Corrupter
    corruptions: tuple[str, ...]  # the kinds `corrupt` knows, taken in turn for held-out pairs
    # The task as base's pretraining saw it (imperfect answers); None: base never saw it.
    pretrain_example: ExampleMaker | None = None


SORT = DemoTask(
    name="sort",
    description=f"sort {task.MIN_LEN}-{task.MAX_LEN} numbers (0-{task.MAX_NUMBER - 1}) ascending",
    folder=Path(".models/demo"),
    max_answer_tokens=16,  # a sorted list of 8 numbers is 9 tokens with its EOS
    make_example=task.make_example,
    is_correct=task.is_correct,
    corrupt=task.corrupt,
    corruptions=task.CORRUPTIONS,
)
SUMS = DemoTask(
    name="sums",
    description=(
        f"running sums of {sums.MIN_LEN}-{sums.MAX_LEN} numbers "
        f"({sums.MIN_NUMBER}-{sums.MAX_NUMBER}), one addition a step"
    ),
    folder=Path(".models/demo-sums"),
    max_answer_tokens=sums.MAX_ANSWER_TOKENS,
    make_example=sums.make_example,
    is_correct=sums.is_correct,
    corrupt=sums.corrupt,
    corruptions=sums.CORRUPTIONS,
    pretrain_example=sums.sloppy_example,
)
TASKS: dict[str, DemoTask] = {t.name: t for t in (SORT, SUMS)}
