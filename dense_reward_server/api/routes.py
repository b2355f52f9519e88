"""Routes: thin. Validate (pydantic), call the service, shape the response."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from dense_reward_server import metrics
from dense_reward_server.api.cancellation import cancel_on_disconnect
from dense_reward_server.api.schemas import (
    ErrorResponse,
    ModelCard,
    ModelsResponse,
    ServerLimits,
    StatusResponse,
    TokenRewardsRequest,
    TokenRewardsResponse,
)
from dense_reward_server.api.wire import token_rewards_body
from dense_reward_server.core.lifecycle import Lifecycle
from dense_reward_server.core.request import ScoreRequest
from dense_reward_server.core.scoring import Scored, ScoringService
from dense_reward_server.engines.base import EngineInfo
from dense_reward_server.errors import NotFound, NotReady

router = APIRouter()

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 409, 413, 422, 429, 500, 503, 504)
}


# A model card is the engine's own record (the fields the schema names) plus its listing.
CARD_FIELDS = [name for name in ModelCard.model_fields if name in EngineInfo.__dataclass_fields__]


class OrjsonResponse(Response):
    """JSON via orjson: numpy arrays serialize natively and fast, NaN becomes null."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def lifecycle_of(request: Request) -> Lifecycle:
    lifecycle: Lifecycle = request.app.state.lifecycle
    return lifecycle


def get_service(request: Request) -> ScoringService:
    """The service, if it may take work now (loaded, not draining, engines healthy)."""
    return lifecycle_of(request).accepting()


async def run_scoring(request: Request, service: ScoringService, scoring: ScoreRequest) -> Scored:
    """Score, aborting the work if the client goes away; log what it cost."""
    state = request.scope.setdefault("state", {})
    fields = state.setdefault("log_fields", {})
    fields["items"] = len(scoring.items)
    work = service.token_rewards(scoring, state.get("request_id", "req"))
    scored = await cancel_on_disconnect(request, work)
    fields["tokens"] = scored.usage.total_tokens
    fields["engine_ms"] = round(scored.engine_s * 1000, 1)
    return scored


@router.get("/health", summary="The process is alive", response_model=StatusResponse)
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Both engines are loaded and answering",
    response_model=StatusResponse,
    responses=ERROR_RESPONSES,
)
async def ready(request: Request) -> dict[str, str]:
    problem = await lifecycle_of(request).readiness()
    if problem is not None:
        raise NotReady(f"not ready: {problem.message}", code=problem.code)
    return {"status": "ready"}


@router.get("/metrics", summary="Prometheus metrics (text format)", include_in_schema=False)
async def prometheus_metrics() -> Response:
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/models",
    summary="Models, engines and tokenizer",
    response_model=ModelsResponse,
    responses=ERROR_RESPONSES,
)
async def models(request: Request) -> OrjsonResponse:
    runtime = get_service(request).runtime
    data = [
        {
            "id": info.role,
            "object": "model",
            **{name: getattr(info, name) for name in CARD_FIELDS},
            "load_seconds": round(runtime.load_seconds.get(info.role, 0.0), 3),
        }
        for info in runtime.engine_infos()
    ]
    settings = runtime.settings
    return OrjsonResponse(
        {
            "object": "list",
            "data": data,
            "beta": settings.beta,
            "tokenizer_fingerprint": runtime.tokenizer.fingerprint,
            "max_model_len": runtime.max_model_len,
            # The limits are settings of the same names: the schema lists which.
            "limits": {name: getattr(settings, name) for name in ServerLimits.model_fields},
        }
    )


@router.get(
    "/v1/audit",
    summary="The audit report of this reward (DRS_AUDIT_REPORT), if the server was given one",
    responses=ERROR_RESPONSES | {404: {"model": ErrorResponse}},
)
async def audit_report(request: Request) -> OrjsonResponse:
    report = lifecycle_of(request).settings.audit()
    if report is None:
        raise NotFound(
            "this server was started without an audit report (DRS_AUDIT_REPORT); run "
            "`dense-reward-server audit --out report.json` and pass it",
            code="no_audit_report",
        )
    return OrjsonResponse(report)


# The body is built from typed results and serialized by orjson without a second validation
# pass (a 64 x 1024-token answer holds 200k floats); the API tests check every body against
# this documented schema instead.
@router.post(
    "/v1/token_rewards",
    summary="Dense per-token rewards of completions",
    response_model=TokenRewardsResponse,
    responses=ERROR_RESPONSES,
)
async def token_rewards(body: TokenRewardsRequest, request: Request) -> OrjsonResponse:
    service = get_service(request)
    scored = await run_scoring(request, service, body.to_score_request())
    # Beside x-total-time: what the engines took, so clients see the HTTP + JSON overhead.
    return OrjsonResponse(
        token_rewards_body(scored, body.view(), service),
        headers={"x-engine-time": f"{scored.engine_s * 1000:.1f}ms"},
    )
