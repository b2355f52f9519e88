"""Workloads: the request shapes, seeded token-id sequences, and /v1/token_rewards bodies.

Stdlib only (and `dense_reward_server.sequence`, itself dependency-free): the locust file
imports this module in a venv that has none of the project's dependencies.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dense_reward_server.sequence import ScoreInput


@dataclass(frozen=True)
class Shape:
    name: str
    items: int  # sequences per request
    prompt_len: int
    completion_min: int
    completion_max: int  # inclusive; equal to completion_min for a fixed length
    group: bool  # one shared prompt (a GRPO group) instead of independent items
    p99_slo_s: float  # latency bound for the benchmark's "peak within SLO" figure
    # Sent as one one-item request per sequence, all in flight at once (verl's reward loop,
    # OpenRLHF's remote reward model), instead of one request.
    one_sample: bool = False

    @property
    def longest(self) -> int:
        return self.prompt_len + self.completion_max

    def request(self, tokens: TokenSampler) -> Request:
        inputs = tokens.inputs(
            self.items,
            (self.prompt_len, self.prompt_len),
            (self.completion_min, self.completion_max),
            shared_prompt=self.group,
        )
        return Request(inputs, self.group, self.one_sample)


SHAPES = {
    "single": Shape("single", 1, 32, 96, 96, False, 1.0),  # a dashboard request
    "rl_batch": Shape("rl_batch", 64, 64, 192, 448, False, 5.0),  # a PPO/REINFORCE batch
    "grpo_group": Shape("grpo_group", 16, 128, 128, 128, True, 2.0),  # 1 prompt x 16
    # An agentic / multi-turn prompt: most of each sequence is the shared prompt.
    "long_group": Shape("long_group", 16, 1024, 256, 256, True, 10.0),
    # The same groups as trainers send them: K concurrent one-sample requests per prompt.
    "grpo_one_sample": Shape("grpo_one_sample", 16, 128, 128, 128, True, 2.0, one_sample=True),
    "long_one_sample": Shape("long_one_sample", 16, 1024, 256, 256, True, 10.0, one_sample=True),
    # long_one_sample with 16 distinct prompts: the same tokens with nothing to share.
    "long_distinct": Shape("long_distinct", 16, 1024, 256, 256, False, 10.0, one_sample=True),
}


class TokenSampler:
    """Token ids drawn uniformly from `vocab`, and lengths, all from one seeded generator."""

    def __init__(self, vocab: Sequence[int], rng: random.Random) -> None:
        self.vocab = vocab
        self.rng = rng

    def ids(self, n: int) -> list[int]:
        return self.rng.choices(self.vocab, k=n)

    def inputs(
        self,
        count: int,
        prompt_len: tuple[int, int],
        completion_len: tuple[int, int],
        *,
        shared_prompt: bool = False,
    ) -> list[ScoreInput]:
        """`count` sequences, lengths drawn within the inclusive bounds."""
        shared = self.ids(self.rng.randint(*prompt_len)) if shared_prompt else None
        return [
            ScoreInput(
                shared if shared is not None else self.ids(self.rng.randint(*prompt_len)),
                self.ids(self.rng.randint(*completion_len)),
            )
            for _ in range(count)
        ]


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, a key for cached bodies
class Request:
    """One request of a workload: its sequences, and whether they form a group (one prompt)."""

    inputs: list[ScoreInput]
    group: bool = False
    one_sample: bool = False  # one one-item request per sequence, all in flight at once

    @property
    def scored_tokens(self) -> int:
        return sum(len(s.completion_ids) for s in self.inputs)

    def body(self, include: Sequence[str] | None = None) -> dict[str, Any]:
        return request_body(self.inputs, group=self.group, include=include)

    def bodies(self, include: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """What goes over the wire: one body, or one one-item body per sequence."""
        if not self.one_sample:
            return [self.body(include)]
        return [request_body([s], include=include) for s in self.inputs]


def make_requests(shape: Shape, count: int, tokens: TokenSampler) -> list[Request]:
    return [shape.request(tokens) for _ in range(count)]


def request_body(
    inputs: Sequence[ScoreInput], *, group: bool = False, include: Sequence[str] | None = None
) -> dict[str, Any]:
    """The /v1/token_rewards body scoring `inputs`: token-id items, or one group item (the
    inputs share the first one's prompt). `include` None: the server's default."""
    items: list[dict[str, Any]]
    if group:
        completions = [list(s.completion_ids) for s in inputs]
        items = [{"prompt_token_ids": list(inputs[0].prompt_ids), "completions": completions}]
    else:
        items = [
            {"prompt_token_ids": list(s.prompt_ids), "completion_token_ids": list(s.completion_ids)}
            for s in inputs
        ]
    body: dict[str, Any] = {"items": items}
    if include is not None:
        body["include"] = list(include)
    return body
