"""vLLM engine: one in-process AsyncLLM per model, scoring given tokens via prompt log-probs.

Facts this relies on are in VLLM_NOTES.md: the prompt is `prompt + completion` token ids,
`max_tokens=1`, `prompt_logprobs=0` returns the actual token's log-prob per position (flat
container aligned with ids[1:]); on the GPU model runner V2, `prompt_logprob_token_ids` with
a start row computes the LM head on completion rows only.

Prefix sharing: requests read vLLM's prefix cache, with every hit capped at the first scored
row by `vllm_scheduler.ScoringScheduler`. Sequences that share a prompt, in one request or in
several in flight together (`sharing.Primers`), are sent after one of them has put the prompt
in the cache (requests scheduled in the same step do not hit each other); later requests
repeating a prompt hit it too. Every result is guarded: a hit past the first scored row is
rescored with cache reads off, never returned.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import vllm
from vllm import AsyncEngineArgs, SamplingParams, TokensPrompt
from vllm.platforms import current_platform
from vllm.sampling_params import RequestOutputKind
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.v1.engine.exceptions import EngineDeadError

from dense_reward_server import metrics
from dense_reward_server.engines import vllm_scheduler
from dense_reward_server.engines.base import EngineInfo, first_error
from dense_reward_server.engines.options import VllmOptions
from dense_reward_server.engines.sharing import Primers, prompt_groups
from dense_reward_server.errors import EngineUnavailable, ServerError
from dense_reward_server.sequence import ScoreInput

logger = logging.getLogger(__name__)


def on_cpu() -> bool:
    return bool(current_platform.is_cpu())


def visible_gpus() -> list[str]:
    """The GPU ids this process may hand to its engines (none on CPU)."""
    if on_cpu():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    return [str(i) for i in range(current_platform.device_count())]


def supports_token_id_path(engine: AsyncLLM) -> bool:
    """The GPU fast path needs the SamplingParams field and the V2 model runner (not on CPU)."""
    fields = getattr(SamplingParams, "__struct_fields__", ())
    if "prompt_logprob_token_ids" not in fields or on_cpu():
        return False
    return bool(getattr(engine.vllm_config, "use_v2_model_runner", False))


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set env vars while an engine spawns its core process (the child inherits them)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def cached_tokens(output: Any) -> int:
    """Prompt tokens a request read from the prefix cache (0 when vLLM does not say)."""
    return int(getattr(output, "num_cached_tokens", 0) or 0)


def sharing_args(args: dict[str, Any]) -> dict[str, Any]:
    """`args` with the capped scheduler added when the options ask for prefix caching."""
    if not args.get("enable_prefix_caching"):
        return args
    if not vllm_scheduler.supported():
        logger.warning("this vLLM has no scheduler hook to cap prefix hits: no prefix sharing")
        return {**args, "enable_prefix_caching": False}
    return {"scheduler_cls": vllm_scheduler.QUALNAME, **args}


class VLLMScoringEngine:
    """Scores with one AsyncLLM engine. Build with `start()`; it blocks until the engine is up."""

    def __init__(
        self,
        role: str,
        engine: AsyncLLM,
        info: EngineInfo,
        token_id_path: bool,
        block_size: int,
        sharing: bool,
    ) -> None:
        self._role = role
        self._engine: AsyncLLM | None = engine
        self._info = info
        self._token_id_path = token_id_path
        self._block_size = block_size
        self._sharing = sharing  # off: cache reads off, no priming
        self._shared_results = 0  # results computed on top of a prefix-cache hit
        self._primers = Primers()

    @classmethod
    def start(cls, role: str, options: VllmOptions) -> VLLMScoringEngine:
        """Start one engine from its resolved options (`dense_reward_server.engines.options`)."""
        args, env = sharing_args(options.engine_args), options.env
        logger.info("starting vLLM engine", extra={"role": role, "engine_args": args, "env": env})
        with environment(env):
            engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
        cpu = on_cpu()
        model, revision = str(args["model"]), args.get("revision")
        model_config = engine.model_config
        info = EngineInfo(
            role=role,
            model=model,
            revision=revision,
            backend="vllm",
            engine_version=f"vllm {vllm.__version__}",
            dtype=str(model_config.dtype).removeprefix("torch."),
            device="cpu" if cpu else str(current_platform.device_name),
            # vLLM generates one token after the prompt, so a prompt may use max_model_len - 1.
            max_model_len=int(model_config.max_model_len) - 1,
            vocab_size=int(model_config.get_vocab_size()),
            extra={"cpu_threads_bind": env.get("VLLM_CPU_OMP_THREADS_BIND")} if cpu else {},
        )
        cache = engine.vllm_config.cache_config
        sharing = bool(getattr(cache, "enable_prefix_caching", False)) and "scheduler_cls" in args
        token_id_path = supports_token_id_path(engine)
        return cls(role, engine, info, token_id_path, int(cache.block_size), sharing)

    @property
    def info(self) -> EngineInfo:
        """What this engine is; `prefix_sharing` is measured: true once a result was computed on
        top of a prefix-cache hit that passed the guard."""
        return replace(
            self._info, prefix_sharing=self._shared_results > 0, block_size=self._block_size
        )

    async def score(self, batch: Sequence[ScoreInput], request_id: str) -> list[np.ndarray]:
        """Log-probs of each input's completion tokens, float32, in input order.

        Sequences go to the engine at once (vLLM's scheduler batches them), except that with
        prefix sharing the rest of a group waits until its first member has cached the prompt.
        """
        results: list[np.ndarray] = [np.empty(0, np.float32)] * len(batch)

        async def score_into(index: int) -> None:
            results[index] = await self._score_one(batch[index], f"{request_id}-{index}")

        async def score_group(members: list[int]) -> None:
            # The first member primes the prompt, unless another request is priming it now;
            # the rest then read the cache.
            item = batch[members[0]]
            primed = self._worth_priming(item) and await self._primers.prime_or_wait(
                item.prompt_ids, score_into, members[0]
            )
            if primed:
                members = members[1:]
            async with asyncio.TaskGroup() as group:
                for index in members:
                    group.create_task(score_into(index))

        groups = prompt_groups(batch, self._sharing)
        try:
            async with asyncio.TaskGroup() as group:
                for members in groups:
                    group.create_task(score_group(members))
        except ExceptionGroup as errors:
            error = first_error(errors)
            if isinstance(error, EngineDeadError):
                raise EngineUnavailable(f"{self._role} engine is not running") from error
            raise error from None
        return results

    def _worth_priming(self, item: ScoreInput) -> bool:
        """A prompt with a whole block before its first scored row: a hit can save work."""
        return self._sharing and len(item.prompt_ids) - 1 >= self._block_size

    async def _score_one(self, item: ScoreInput, request_id: str) -> np.ndarray:
        sharing = self._sharing
        if self._token_id_path:
            fast = await self._run(item, request_id, self._token_id_params(item, sharing))
            if fast.prompt_token_id_logprobs is not None:
                self._count_hit(fast)
                return np.asarray(fast.prompt_token_id_logprobs[:, 0], dtype=np.float32)
            # None when a prefix-cache hit reached past the start row: use the general path.
            if sharing:
                metrics.PREFIX_GUARD_FALLBACKS.labels(model=self._role).inc()
            sharing = False
        output = await self._run(
            item, f"{request_id}-full", self._prompt_logprob_params(item, sharing)
        )
        if sharing and not self._guard_passes(output, item):
            metrics.PREFIX_GUARD_FALLBACKS.labels(model=self._role).inc()
            output = await self._run(
                item, f"{request_id}-nocache", self._prompt_logprob_params(item, False)
            )
        elif sharing:
            self._count_hit(output)
        return self._completion_logprobs(output, item)

    @staticmethod
    def _guard_passes(output: Any, item: ScoreInput) -> bool:
        """Every scored row was computed: the cache hit stops at or before the first one."""
        values = getattr(output.prompt_logprobs, "logprobs", None)
        complete = values is not None and len(values) == item.num_tokens - 1
        return complete and cached_tokens(output) <= len(item.prompt_ids) - 1

    def _count_hit(self, output: Any) -> None:
        cached = cached_tokens(output)
        if cached > 0:
            self._shared_results += 1
            metrics.PREFIX_CACHED_TOKENS.labels(model=self._role).inc(cached)

    async def _run(self, item: ScoreInput, request_id: str, params: SamplingParams) -> Any:
        prompt = TokensPrompt(prompt_token_ids=[*item.prompt_ids, *item.completion_ids])
        final = None
        if self._engine is None:
            raise EngineUnavailable(f"{self._role} engine is shut down")
        async for output in self._engine.generate(prompt, params, request_id):
            final = output
        if final is None:
            raise ServerError(f"{self._role} engine returned no output", code="engine_error")
        return final

    @staticmethod
    def _prompt_logprob_params(item: ScoreInput, read_cache: bool) -> SamplingParams:
        # prompt_logprobs goes to the constructor (set later, cache reads would stay on
        # unguarded); the start row tells ScoringScheduler where to cap a hit.
        return SamplingParams(
            max_tokens=1,
            prompt_logprobs=0,
            detokenize=False,
            flat_logprobs=True,
            output_kind=RequestOutputKind.FINAL_ONLY,
            skip_reading_prefix_cache=not read_cache,
            extra_args={vllm_scheduler.SCORE_START: len(item.prompt_ids) - 1},
        )

    @staticmethod
    def _token_id_params(item: ScoreInput, read_cache: bool) -> SamplingParams:
        rows = np.asarray(item.completion_ids, dtype=np.int64)[:, None]
        return SamplingParams(
            max_tokens=1,
            prompt_logprob_token_ids=rows,
            prompt_logprob_start=len(item.prompt_ids) - 1,
            detokenize=False,
            output_kind=RequestOutputKind.FINAL_ONLY,
            # vLLM itself answers None when a hit reaches past the start row (then the general
            # path answers); ScoringScheduler caps hits so that it does not.
            skip_reading_prefix_cache=not read_cache,
            extra_args={vllm_scheduler.SCORE_START: len(item.prompt_ids) - 1},
        )

    def _completion_logprobs(self, output: Any, item: ScoreInput) -> np.ndarray:
        flat = output.prompt_logprobs
        expected = item.num_tokens - 1
        values = getattr(flat, "logprobs", None)
        if values is None or len(values) != expected:
            got = None if values is None else len(values)
            raise ServerError(
                f"{self._role} engine returned {got} prompt log-probs, expected {expected}",
                code="engine_error",
            )
        # Position 0 has no score, so entry j predicts token j+1.
        return np.asarray(values[len(item.prompt_ids) - 1 :], dtype=np.float32)

    async def check_health(self) -> None:
        if self._engine is None or self._engine.errored:
            raise EngineUnavailable(f"{self._role} engine is not running")

    def shutdown(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            # Dropping the last reference now, while modules are alive, keeps AsyncLLM's
            # __del__ from running its shutdown again at interpreter exit.
            engine.shutdown()
