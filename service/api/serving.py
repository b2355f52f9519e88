"""The token-rewards operation: validate, tokenize, admit, score under both models, combine."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np

from service import metrics
from service.api.admission import TokenBudget
from service.api.results import ResultOptions, item_result
from service.api.schemas import INCLUDE_OPTIONS, TokenRewardsRequest
from service.engines.base import PairLogprobs, ScoreInput
from service.errors import (
    DeadlineExceeded,
    InvalidRequest,
    PayloadTooLarge,
    ServerError,
    ServiceError,
    TokenizerMismatch,
)
from service.rewards.items import Limits, PreparedItem, prepare_items
from service.rewards.maths import token_rewards
from service.runtime import Runtime

logger = logging.getLogger(__name__)


class RewardService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.budget = TokenBudget(runtime.settings.max_inflight_tokens)
        self.limits = Limits(
            max_model_len=runtime.max_model_len,
            max_tokens_per_request=runtime.settings.max_tokens_per_request,
            max_group_size=runtime.settings.max_group_size,
            max_sequences=runtime.settings.max_items_per_request,
        )
        # One tokenizer thread: off the event loop, and never two calls into one Rust
        # tokenizer at once.
        self._tokenize = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")

    async def token_rewards(
        self, request: TokenRewardsRequest, request_id: str
    ) -> tuple[dict[str, Any], float]:
        """The response body of POST /v1/token_rewards (arrays as numpy, for orjson), and the
        seconds spent waiting for both engines (admission to the last log-prob)."""
        self._check_request(request)
        prepare = partial(
            prepare_items,
            request.items,
            self.runtime.tokenizer,
            self.limits,
            append_eos=request.append_eos,
        )
        try:
            prepared = await asyncio.get_running_loop().run_in_executor(self._tokenize, prepare)
        except PayloadTooLarge as error:
            metrics.REJECTIONS.labels(reason=error.code).inc()
            raise
        batch = [ScoreInput(s.prompt_ids, s.completion_ids) for p in prepared for s in p.sequences]
        tokens = sum(item.num_tokens for item in batch)
        with self.budget.admit(tokens):
            started = time.perf_counter()
            logprobs = await self._score(batch, request, request_id)
            engine_s = time.perf_counter() - started
        body = self._response(request, prepared, logprobs, tokens)
        return body, engine_s

    def _check_request(self, request: TokenRewardsRequest) -> None:
        fingerprint = self.runtime.tokenizer.fingerprint
        if request.tokenizer_fingerprint not in (None, fingerprint):
            raise TokenizerMismatch(
                f"the request was tokenized for {request.tokenizer_fingerprint}; this server's "
                f"tokenizer is {fingerprint}",
                field="tokenizer_fingerprint",
            )
        limit = self.settings.max_items_per_request
        if len(request.items) > limit:
            metrics.REJECTIONS.labels(reason="too_many_items").inc()
            raise PayloadTooLarge(
                f"the request has {len(request.items)} items; the limit is {limit} "
                "(DRS_MAX_ITEMS_PER_REQUEST): split it into smaller requests",
                code="too_many_items",
                field="items",
            )
        unknown = [name for name in request.include if name not in INCLUDE_OPTIONS]
        if unknown:
            raise InvalidRequest(
                f"unknown include entry {unknown[0]!r}; allowed: {', '.join(INCLUDE_OPTIONS)}",
                code="unknown_include",
                field="include",
            )

    async def _score(
        self, batch: list[ScoreInput], request: TokenRewardsRequest, request_id: str
    ) -> PairLogprobs:
        timeout = min(
            request.timeout_s or self.settings.request_timeout_s,
            self.settings.max_request_timeout_s,
        )
        try:
            async with asyncio.timeout(timeout):
                # Leaving this block by timeout cancels both engines' work, which aborts it.
                return await self.runtime.engines.score(batch, request_id)
        except TimeoutError as error:
            raise DeadlineExceeded(f"the request did not finish within {timeout:g} s") from error
        except ServiceError:
            raise
        except Exception as error:
            logger.error("engine error", exc_info=error)
            raise ServerError("the scoring engine failed", code="engine_error") from error

    def _response(
        self,
        request: TokenRewardsRequest,
        prepared: Sequence[PreparedItem],
        logprobs: PairLogprobs,
        tokens: int,
    ) -> dict[str, Any]:
        beta = request.beta if request.beta is not None else self.settings.beta
        include = frozenset(request.include)
        options = ResultOptions(
            beta=beta,
            gamma=request.gamma if "returns" in include else None,
            include=include,
            delimiter=request.steps.delimiter if request.steps else None,
            group_baseline=request.group_baseline,
            base64=request.encoding == "base64",
            has_baseline=self.runtime.engines.base is not None,
            token_strings=self.runtime.tokenizer.token_strings,
        )
        results, cursor = [], 0
        rewards: list[np.ndarray] = []
        for item in prepared:
            count = len(item.sequences)
            sft, base = (
                logprobs.sft[cursor : cursor + count],
                logprobs.base[cursor : cursor + count],
            )
            cursor += count
            results.append(item_result(item, sft, base, options))
            rewards += [token_rewards(s, b, beta) for s, b in zip(sft, base, strict=True)]
        completion_tokens = sum(len(s.completion_ids) for p in prepared for s in p.sequences)
        models = ("sft", "base") if options.has_baseline else ("sft",)
        record_usage(cursor, tokens, models, rewards, item_masks(prepared))
        return {
            "object": "token_rewards",
            "model": self.model_ref(beta),
            "results": results,
            "usage": {
                "prompt_tokens": tokens - completion_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": tokens,
            },
        }

    def model_ref(self, beta: float) -> dict[str, Any]:
        return {
            "sft": self.settings.sft_model,
            "base": self.settings.base_model if self.runtime.engines.base is not None else None,
            "beta": beta,
            "tokenizer_fingerprint": self.runtime.tokenizer.fingerprint,
        }


def item_masks(prepared: Sequence[PreparedItem]) -> list[np.ndarray | None]:
    return [s.mask for p in prepared for s in p.sequences]


def record_usage(
    sequences: int,
    tokens: int,
    models: Sequence[str],
    rewards: list[np.ndarray],
    masks: list[np.ndarray | None],
) -> None:
    """Throughput and reward-drift metrics of one answered request (masked tokens left out)."""
    metrics.ITEMS.inc(sequences)
    for model in models:
        metrics.TOKENS_SCORED.labels(model=model).inc(tokens)
    scored = [r if m is None else r[m.astype(bool)] for r, m in zip(rewards, masks, strict=True)]
    metrics.TOKEN_REWARD.observe_many(np.concatenate(scored))
    metrics.SEQUENCE_REWARD.observe_many(np.array([np.sum(r, dtype=np.float64) for r in scored]))
