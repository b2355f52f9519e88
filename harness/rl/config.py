"""The trainer's settings, importable without torch (the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.rl.credit import Credit


@dataclass(frozen=True)
class DPRConfig:
    """Every knob of a run; recorded with its results."""

    credit: Credit = "dense"
    steps: int = 128
    prompts_per_step: int = 8
    samples_per_prompt: int = 8  # K
    max_new_tokens: int = 16  # a sorted list of 8 numbers is 9 tokens with its EOS
    lr: float = 2e-4
    kl_coef: float = 0.05
    seed: int = 0
    eval_every: int = 16  # steps between greedy checks on the held-out slice
    eval_slice: int = 32  # held-out prompts in that slice
