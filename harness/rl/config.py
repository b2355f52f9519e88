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
    lr: float = 2e-4
    kl_coef: float = 0.05
    seed: int = 0
    eval_every: int = 16  # steps between greedy checks on the held-out slice
    eval_slice: int = 32  # held-out prompts in that slice
