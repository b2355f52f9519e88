"""The trainer's settings, importable without torch (the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.rl.credit import Credit


@dataclass(frozen=True)
class DPRConfig:
    """Every knob of a run; recorded with its results."""

    task: str = "sort"  # a name of harness.demo.tasks.TASKS
    credit: Credit = "dense"
    # Reward fields sent with every request (baselines, ref_logprob_floor, reward_clip_min/max,
    # aggregate, soft_min_temperature); empty: the server's defaults.
    reward: dict[str, Any] = field(default_factory=dict)
    steps: int = 128
    prompts_per_step: int = 8
    samples_per_prompt: int = 8  # K
    max_new_tokens: int = 16  # sort: 8 numbers are 9 tokens with EOS; sums: the task's 72
    lr: float = 2e-4  # sorting's; each task's in TASK_LR
    kl_coef: float = 0.05
    seed: int = 0
    eval_every: int = 16  # steps between greedy checks on the held-out slice
    eval_slice: int = 32  # held-out prompts in that slice


# The step size per task. Sums answers are 6x longer than sorting's (median 42 tokens vs 7), so
# one step moves a whole answer's log-prob further; the oracle verifier arm alone chose it (one
# seed, `docs/rl/sums-lr-probe/`: 2e-4 loses 5.3 points greedy, 5e-5 gains 3.7), before any
# reward arm ran.
TASK_LR = {"sort": 2e-4, "sums": 5e-5}


def task_lr(task: str, lr: float | None = None) -> float:
    """The step size a run uses: `lr` when given, else the task's."""
    return TASK_LR[task] if lr is None else lr
