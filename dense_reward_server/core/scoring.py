"""The token-rewards operation: check, tokenize, admit, score under both models, combine.

No web framework here: the HTTP layer turns its request model into a `ScoreRequest`
(`dense_reward_server.core.request`) and builds the answer from the typed `Scored`
(`dense_reward_server.api.wire`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from dense_reward_server import metrics
from dense_reward_server.config import Settings
from dense_reward_server.core.admission import TokenBudget
from dense_reward_server.core.coalescer import Coalescer
from dense_reward_server.core.request import ScoreRequest
from dense_reward_server.core.results import RewardSpec, ScoredItem, score_items
from dense_reward_server.core.runtime import Runtime
from dense_reward_server.engines.base import PairLogprobs
from dense_reward_server.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ServerError,
    ServiceError,
    TokenizerMismatch,
)
from dense_reward_server.rewards.items import Limits, prepare_items
from dense_reward_server.rewards.maths import Guards
from dense_reward_server.rewards.signals import completion_signals
from dense_reward_server.sequence import ScoreInput

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Scored:
    """A scored request: typed results, the beta they used, and what it cost."""

    items: list[ScoredItem]
    usage: Usage
    beta: float
    spec: RewardSpec
    engine_s: float = field(default=0.0)


class ScoringService:
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
        # The transformers engine scores one batch at a time: what waits goes when it ends.
        # vLLM with a window of 0: each request on its own (vLLM batches them itself, and
        # sharing.Primers still shares prompts across requests in flight).
        window_s = runtime.settings.coalesce_window_ms / 1000
        vllm = runtime.settings.backend == "vllm"
        self._score_batch = (
            runtime.engines.score
            if vllm and window_s == 0
            else Coalescer(runtime.engines.score, window_s if vllm else None).score
        )
        # One tokenizer thread: off the event loop, and never two calls into one Rust
        # tokenizer at once.
        self._tokenize = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")

    @property
    def has_baseline(self) -> bool:
        return self.runtime.engines.base is not None

    async def token_rewards(self, request: ScoreRequest, request_id: str) -> Scored:
        """Score every completion of the request; `Scored.engine_s` is the time spent waiting
        for both engines (admission to the last log-prob)."""
        self._check_request(request)
        spec = reward_spec(self.settings, request.reward, request.returns_gamma)
        prepare = partial(
            prepare_items,
            request.items,
            self.runtime.tokenizer,
            self.limits,
            append_eos=request.append_eos,
        )
        prepared = await asyncio.get_running_loop().run_in_executor(self._tokenize, prepare)
        batch = [s.tokens for p in prepared for s in p.sequences]
        tokens = sum(item.num_tokens for item in batch)
        with self.budget.admit(tokens):
            started = time.perf_counter()
            logprobs = await self._score(batch, request, request_id)
            engine_s = time.perf_counter() - started
        beta = request.beta if request.beta is not None else self.settings.beta
        gamma = request.returns_gamma
        items = score_items(prepared, logprobs, spec, beta=beta, gamma=gamma)
        completion_tokens = sum(len(s.completion_ids) for s in batch)
        usage = Usage(tokens - completion_tokens, completion_tokens)
        record_usage(items, usage, self.runtime.engines.named(), self.settings.implausible_logprob)
        return Scored(items, usage, beta, spec, engine_s)

    def _check_request(self, request: ScoreRequest) -> None:
        fingerprint = self.runtime.tokenizer.fingerprint
        if request.tokenizer_fingerprint not in (None, fingerprint):
            raise TokenizerMismatch(
                f"the request was tokenized for {request.tokenizer_fingerprint}; this server's "
                f"tokenizer is {fingerprint}",
                field="tokenizer_fingerprint",
            )

    async def _score(
        self, batch: list[ScoreInput], request: ScoreRequest, request_id: str
    ) -> PairLogprobs:
        timeout = min(
            request.timeout_s or self.settings.request_timeout_s,
            self.settings.max_request_timeout_s,
        )
        try:
            async with asyncio.timeout(timeout):
                # Leaving this block by timeout cancels both engines' work, which aborts it.
                return await self._score_batch(batch, request_id)
        except TimeoutError as error:
            raise DeadlineExceeded(f"the request did not finish within {timeout:g} s") from error
        except ServiceError:
            raise
        except Exception as error:
            logger.error("engine error", exc_info=error)
            raise ServerError("the scoring engine failed", code="engine_error") from error

    def close(self) -> None:
        self._tokenize.shutdown(wait=False, cancel_futures=True)


def reward_spec(settings: Settings, asked: Mapping[str, Any], gamma: float | None) -> RewardSpec:
    """The request's reward: its own fields where it set them, else the server's defaults."""
    pick = asked.get  # a field set to null is in `asked`: off, not the default
    loaded = settings.baseline_names()
    baselines = pick("baselines", None) or settings.reward_baselines or loaded[:1]
    for name in baselines:
        if name not in loaded:
            raise InvalidRequest(
                f"baseline {name!r} is not loaded (loaded: {', '.join(loaded) or 'none'})",
                code="unknown_baseline",
                field="baselines",
            )
    guards = Guards(
        ref_floor=pick("ref_logprob_floor", settings.ref_logprob_floor),
        clip_min=pick("reward_clip_min", settings.reward_clip_min),
        clip_max=pick("reward_clip_max", settings.reward_clip_max),
        # null: no guard, i.e. the plain sum (and the default temperature).
        aggregate=pick("aggregate", settings.aggregate) or "sum",
        temperature=pick("soft_min_temperature", None) or settings.soft_min_temperature,
    )
    low, high = guards.clip_min, guards.clip_max
    if low is not None and high is not None and low > high:
        raise InvalidRequest(
            f"reward_clip_min {low} is above reward_clip_max {high}",
            code="invalid_reward_clip",
            field="reward_clip_min",
        )
    if guards.aggregate == "min" and gamma not in (None, 1.0):
        raise InvalidRequest(
            "the min aggregate's returns are suffix minima: they take no discount (gamma 1)",
            code="gamma_with_min",
            field="gamma",
        )
    return RewardSpec(tuple(dict.fromkeys(baselines)), guards)


def record_usage(
    items: Sequence[ScoredItem],
    usage: Usage,
    engines: Mapping[str, object],
    implausible: float,
) -> None:
    """Throughput, reward-drift and reward-hacking metrics of one answered request, from its
    typed results. Masked tokens hold NaN in the rewards, which the histograms leave out."""
    sequences = [s for item in items for s in item.sequences]
    metrics.ITEMS.inc(len(sequences))
    for model in engines:
        metrics.TOKENS_SCORED.labels(model=model).inc(usage.total_tokens)
    metrics.TOKEN_REWARD.observe_many(np.concatenate([s.rewards.rewards for s in sequences]))
    metrics.SEQUENCE_REWARD.observe_many(np.array([s.rewards.total for s in sequences]))
    found = [
        completion_signals(
            s.prepared.completion_ids, s.sft, s.rewards.rewards, s.prepared.mask, implausible
        )
        for s in sequences
    ]
    metrics.COMPLETION_TOKENS.observe_many(np.array([f.tokens for f in found], np.float64))
    for histogram, values in (
        (metrics.COMPLETION_SFT_LOGPROB, [f.sft_logprob for f in found]),
        (metrics.COMPLETION_REPEATED_NGRAMS, [f.repeated_ngrams for f in found]),
        (metrics.COMPLETION_IMPLAUSIBLE_REWARD, [f.implausible_reward for f in found]),
    ):
        histogram.observe_many(np.array([np.nan if v is None else v for v in values]))
