"""Routes: thin. Validate (pydantic), call the service, shape the response."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from service import metrics
from service.api.cancellation import cancel_on_disconnect
from service.api.schemas import ErrorResponse, TokenRewardsRequest, TokenRewardsResponse
from service.api.serving import RewardService
from service.errors import NotReady, ServiceError

router = APIRouter()

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 409, 413, 422, 429, 500, 503, 504)
}


class OrjsonResponse(Response):
    """JSON via orjson: numpy arrays serialize natively and fast, NaN becomes null."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def get_service(request: Request) -> RewardService:
    """The service, if it may take work now (loaded, not draining, engines healthy)."""
    service: RewardService | None = getattr(request.app.state, "service", None)
    if service is None or not request.app.state.ready:
        raise NotReady("the models are not loaded")
    problem = request.app.state.health.problem()
    if problem is not None:
        raise problem
    return service


@router.get("/health", summary="The process is alive")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Both engines are loaded and answering", responses=ERROR_RESPONSES)
async def ready(request: Request) -> dict[str, str]:
    try:
        service = get_service(request)
        await service.runtime.engines.check_health()
    except ServiceError as error:
        metrics.READY.set(0)
        raise NotReady(f"not ready: {error.message}", code=error.code) from error
    metrics.READY.set(1)
    return {"status": "ready"}


@router.get("/metrics", summary="Prometheus metrics (text format)", include_in_schema=False)
async def prometheus_metrics() -> Response:
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models", summary="Models, engines and tokenizer", responses=ERROR_RESPONSES)
async def models(request: Request) -> OrjsonResponse:
    service = get_service(request)
    runtime = service.runtime
    data = [
        {
            "id": info.role,
            "object": "model",
            "role": info.role,
            "model": info.model,
            "revision": info.revision,
            "backend": info.backend,
            "engine_version": info.engine_version,
            "dtype": info.dtype,
            "device": info.device,
            "max_model_len": info.max_model_len,
            "vocab_size": info.vocab_size,
            "prefix_sharing": info.prefix_sharing,
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
            "limits": {
                "max_items_per_request": settings.max_items_per_request,
                "max_tokens_per_request": settings.max_tokens_per_request,
                "max_inflight_tokens": settings.max_inflight_tokens,
                "request_timeout_s": settings.request_timeout_s,
                "max_request_timeout_s": settings.max_request_timeout_s,
            },
        }
    )


@router.post(
    "/v1/token_rewards",
    summary="Dense per-token rewards of completions",
    response_model=TokenRewardsResponse,
    responses=ERROR_RESPONSES,
)
async def token_rewards(body: TokenRewardsRequest, request: Request) -> OrjsonResponse:
    service = get_service(request)
    state = request.scope.setdefault("state", {})
    state["log_fields"] = {"items": len(body.items)}
    work = service.token_rewards(body, state.get("request_id", "req"))
    result, engine_s = await cancel_on_disconnect(request, work)
    state["log_fields"]["tokens"] = result["usage"]["total_tokens"]
    state["log_fields"]["engine_ms"] = round(engine_s * 1000, 1)
    # Beside x-total-time: what the engines took, so clients see the HTTP + JSON overhead.
    return OrjsonResponse(result, headers={"x-engine-time": f"{engine_s * 1000:.1f}ms"})
