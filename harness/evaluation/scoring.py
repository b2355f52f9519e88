"""Score (chosen, rejected) pairs against a running server or in-process engines.

Each pair goes as one group item (one prompt, two completions), so the prompt is tokenized
once and both completions are scored in the same engine batch.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import numpy as np

from dense_reward_server.api.schemas import TokenRewardsRequest
from dense_reward_server.api.wire import token_rewards_body
from dense_reward_server.errors import InvalidRequest

if TYPE_CHECKING:  # the service loads models: only the in-process scorer needs it
    from dense_reward_server.core.scoring import ScoringService


@dataclass(frozen=True, slots=True)
class ScoredCompletion:
    total: float
    mean: float
    rewards: np.ndarray  # per token; NaN where masked
    aggregate: float = float("nan")  # the request's aggregate (the total for sum)


@dataclass(frozen=True, slots=True)
class ScoredPair:
    kind: str | None
    chosen: ScoredCompletion
    rejected: ScoredCompletion


def load_pairs(path: Path) -> list[dict[str, Any]]:
    """JSONL, one pair a line: a prompt or messages, `chosen`, `rejected`, optional `kind`."""
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        pair = json.loads(line)
        if not isinstance(pair, dict) or not {"chosen", "rejected"} <= pair.keys():
            raise InvalidRequest(f"{path}:{number}: a pair needs `chosen` and `rejected`")
        if ("prompt" in pair) == ("messages" in pair):
            raise InvalidRequest(f"{path}:{number}: a pair needs exactly one of prompt, messages")
        pairs.append(pair)
    return pairs


def pair_item(pair: dict[str, Any]) -> dict[str, Any]:
    prompt = {"prompt": pair["prompt"]} if "prompt" in pair else {"messages": pair["messages"]}
    return {**prompt, "completions": [pair["chosen"], pair["rejected"]]}


class Scorer(Protocol):
    def score(self, body: dict[str, Any]) -> dict[str, Any]: ...


class HttpScorer:
    """Against a running server (keys, limits and all)."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 600) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

    def score(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post("/v1/token_rewards", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"server answered {response.status_code}: {response.text[:500]}")
        return dict(response.json())


class InProcessScorer:
    """In-process engines through the same service code the server runs."""

    def __init__(self, service: ScoringService) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()

    def score(self, body: dict[str, Any]) -> dict[str, Any]:
        parsed = TokenRewardsRequest.model_validate(body)
        request = parsed.to_score_request()
        scored = self.loop.run_until_complete(self.service.token_rewards(request, "eval"))
        return token_rewards_body(scored, parsed.view(), self.service)

    def close(self) -> None:
        self.service.close()
        self.service.runtime.engines.shutdown()
        self.loop.close()


def batches(pairs: Sequence[dict[str, Any]], size: int) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(pairs), size):
        yield pairs[start : start + size]


def score_batch(
    scorer: Scorer,
    pairs: Sequence[dict[str, Any]],
    append_eos: bool,
    reward: Mapping[str, Any] | None = None,
) -> list[ScoredPair]:
    """`reward`: request fields (baselines, guards) sent with the batch."""
    body = {
        "items": [pair_item(p) for p in pairs],
        "append_eos": append_eos,
        "include": [],
        **(reward or {}),
    }
    results = scorer.score(body)["results"]
    return [
        ScoredPair(
            pair.get("kind"), completion(r["completions"][0]), completion(r["completions"][1])
        )
        for pair, r in zip(pairs, results, strict=True)
    ]


def completion(result: dict[str, Any]) -> ScoredCompletion:
    rewards = np.array([np.nan if v is None else v for v in result["rewards"]], dtype=np.float32)
    mean, aggregate = result["mean_reward"], result["aggregate_reward"]
    return ScoredCompletion(
        total=float(result["total_reward"]),
        mean=float("nan") if mean is None else float(mean),
        rewards=rewards,
        aggregate=float("nan") if aggregate is None else float(aggregate),
    )
