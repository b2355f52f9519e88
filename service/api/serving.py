"""The token-rewards operation: validate, tokenize, admit, score under both models, combine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np

from service.api.admission import TokenBudget
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
from service.rewards.maths import check_finite, sequence_rewards
from service.runtime import Runtime

logger = logging.getLogger(__name__)


class RewardService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.budget = TokenBudget(runtime.settings.max_inflight_tokens)
        self.limits = Limits(runtime.max_model_len, runtime.settings.max_tokens_per_request)
        # One tokenizer thread: off the event loop, and never two calls into one Rust
        # tokenizer at once.
        self._tokenize = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")

    async def token_rewards(self, request: TokenRewardsRequest, request_id: str) -> dict[str, Any]:
        """The response body of POST /v1/token_rewards (arrays as numpy, for orjson)."""
        self._check_request(request)
        prepare = partial(
            prepare_items,
            request.items,
            self.runtime.tokenizer,
            self.limits,
            append_eos=request.append_eos,
        )
        prepared = await asyncio.get_running_loop().run_in_executor(self._tokenize, prepare)
        tokens = sum(len(p.prompt_ids) + len(p.completion_ids) for p in prepared)
        with self.budget.admit(tokens):
            logprobs = await self._score(prepared, request, request_id)
        return self._response(request, prepared, logprobs)

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
        self, prepared: Sequence[PreparedItem], request: TokenRewardsRequest, request_id: str
    ) -> PairLogprobs:
        timeout = min(
            request.timeout_s or self.settings.request_timeout_s,
            self.settings.max_request_timeout_s,
        )
        batch = [ScoreInput(p.prompt_ids, p.completion_ids) for p in prepared]
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
    ) -> dict[str, Any]:
        beta = request.beta if request.beta is not None else self.settings.beta
        include = set(request.include)
        results = [
            self._result(i, request, item, logprobs.sft[i], logprobs.base[i], beta, include)
            for i, item in enumerate(prepared)
        ]
        prompt_tokens = sum(len(p.prompt_ids) for p in prepared)
        completion_tokens = sum(len(p.completion_ids) for p in prepared)
        return {
            "object": "token_rewards",
            "model": self.model_ref(beta),
            "results": results,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def model_ref(self, beta: float) -> dict[str, Any]:
        return {
            "sft": self.settings.sft_model,
            "base": self.settings.base_model,
            "beta": beta,
            "tokenizer_fingerprint": self.runtime.tokenizer.fingerprint,
        }

    def _result(
        self,
        index: int,
        request: TokenRewardsRequest,
        item: PreparedItem,
        sft: np.ndarray,
        base: np.ndarray,
        beta: float,
        include: set[str],
    ) -> dict[str, Any]:
        for name, values in (("sft", sft), ("base", base)):
            if len(values) != len(item.completion_ids):
                raise ServerError(
                    f"{name} engine returned {len(values)} log-probs for "
                    f"{len(item.completion_ids)} tokens",
                    code="engine_error",
                    index=index,
                )
            check_finite(values, model=name, index=index)
        gamma = request.gamma if "returns" in include else None
        seq = sequence_rewards(sft, base, beta=beta, mask=item.mask, gamma=gamma)
        result: dict[str, Any] = {
            "index": index,
            "id": request.items[index].id,
            "num_tokens": len(item.completion_ids),
            "eos_appended": item.eos_appended,
            "token_ids": item.completion_ids,
            # NaN (masked) serializes as null through orjson.
            "rewards": seq.rewards,
            "total_reward": seq.total,
            "mean_reward": seq.mean,
            "scored_tokens": seq.scored_tokens,
        }
        if "tokens" in include:
            result["tokens"] = self.runtime.tokenizer.token_strings(item.completion_ids)
        if "offsets" in include:
            result["offsets"] = item.offsets
        if "logprobs" in include:
            result["sft_logprobs"] = sft
            result["base_logprobs"] = base
        if seq.returns is not None:
            result["returns"] = seq.returns.astype(np.float32)
        return result
