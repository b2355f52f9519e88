"""OpenRLHF's remote reward-model protocol: `POST /get_reward`.

OpenRLHF (`--reward.remote_url`, older `--remote_rm_url`) posts
`{"query": [prompt + response, ...], "prompts": [prompt, ...], "labels": [...]}` and reads
`{"rewards": [...], "scores": [...], "extra_logs": {...}}`: one number per query. The prompt is
split off each query using `prompts` (a query that does not start with its prompt is a 422);
the sequence reward is the total dense reward (or the mean, `?reward=mean`). Same
authentication, limits and admission as /v1/token_rewards, since it goes through the same
service.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from dense_reward_server.api.routes import (
    ERROR_RESPONSES,
    OrjsonResponse,
    get_service,
    run_scoring,
)
from dense_reward_server.api.schemas import Text
from dense_reward_server.core.request import ScoreRequest
from dense_reward_server.errors import InvalidRequest
from dense_reward_server.rewards.items import RenderedItem

router = APIRouter()


class OpenRLHFRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenRLHF may add fields; they are ignored
    query: list[Text] = Field(..., min_length=1)
    prompts: list[Text] | None = None
    labels: list[Any] | None = None


def split_queries(body: OpenRLHFRequest) -> list[RenderedItem]:
    """Items for the reward service: the response is the query after its prompt.

    OpenRLHF's prompts are rendered text: one that already starts with the BOS text is
    tokenized as is (when the service tokenizes), so BOS is not doubled.
    """
    prompts = body.prompts
    if prompts is None or len(prompts) != len(body.query):
        raise InvalidRequest(
            "`prompts` must give the prompt of each query (same length as `query`)",
            code="invalid_value",
            field="prompts",
        )
    items = []
    for index, (query, prompt) in enumerate(zip(body.query, prompts, strict=True)):
        if not query.startswith(prompt):
            raise InvalidRequest(
                "the query does not start with its prompt", index=index, field="query"
            )
        items.append(RenderedItem(prompt=prompt, completion=query[len(prompt) :]))
    return items


@router.post("/get_reward", summary="OpenRLHF remote reward model", responses=ERROR_RESPONSES)
async def get_reward(
    body: OpenRLHFRequest, request: Request, reward: Literal["total", "mean"] = "total"
) -> OrjsonResponse:
    scored = await run_scoring(
        request, get_service(request), ScoreRequest(items=split_queries(body))
    )
    sequences = [s.rewards for item in scored.items for s in item.sequences]
    totals = [s.total for s in sequences]
    means = [s.mean for s in sequences]
    values = totals if reward == "total" else means
    return OrjsonResponse(
        {
            "rewards": values,
            "scores": values,
            "extra_logs": {
                "dense_total_reward": totals,
                "dense_mean_reward": means,
                "completion_tokens": [len(s.rewards) for s in sequences],
            },
        }
    )
