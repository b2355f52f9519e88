"""vLLM engine: one in-process AsyncLLM per model, scoring given tokens via prompt log-probs.

Facts this relies on are in VLLM_NOTES.md: the prompt is `prompt + completion` token ids,
`max_tokens=1`, `prompt_logprobs=0` returns the actual token's log-prob per position (flat
container aligned with ids[1:]); on the GPU model runner V2, `prompt_logprob_token_ids` with
a start row computes the LM head on completion rows only.
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

from service.engines.base import EngineInfo, first_error
from service.engines.options import VllmOptions
from service.errors import EngineUnavailable, ServerError
from service.sequence import ScoreInput

logger = logging.getLogger(__name__)


def on_cpu() -> bool:
    return bool(current_platform.is_cpu())


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


class VLLMScoringEngine:
    """Scores with one AsyncLLM engine. Build with `start()`; it blocks until the engine is up."""

    def __init__(self, role: str, engine: AsyncLLM, info: EngineInfo, token_id_path: bool) -> None:
        self._role = role
        self._engine: AsyncLLM | None = engine
        self._info = info
        self._token_id_path = token_id_path

    @classmethod
    def start(cls, role: str, options: VllmOptions) -> VLLMScoringEngine:
        """Start one engine from its resolved options (`service.engines.options`)."""
        args, env = options.engine_args, options.env
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
        token_id_path = supports_token_id_path(engine)
        caching = bool(getattr(engine.vllm_config.cache_config, "enable_prefix_caching", False))
        info = replace(info, prefix_sharing=token_id_path and caching)
        return cls(role, engine, info, token_id_path)

    @property
    def info(self) -> EngineInfo:
        return self._info

    async def score(self, batch: Sequence[ScoreInput], request_id: str) -> list[np.ndarray]:
        """Log-probs of each input's completion tokens, float32, in input order.

        Every sequence goes to the engine at once: vLLM's scheduler does the batching.
        """
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._score_one(item, f"{request_id}-{i}"))
                    for i, item in enumerate(batch)
                ]
        except ExceptionGroup as errors:
            error = first_error(errors)
            if isinstance(error, EngineDeadError):
                raise EngineUnavailable(f"{self._role} engine is not running") from error
            raise error from None
        return [task.result() for task in tasks]

    async def _score_one(self, item: ScoreInput, request_id: str) -> np.ndarray:
        if self._token_id_path:
            fast = await self._run(item, request_id, self._token_id_params(item))
            if fast.prompt_token_id_logprobs is not None:
                return np.asarray(fast.prompt_token_id_logprobs[:, 0], dtype=np.float32)
            # None when a prefix-cache hit reached past the start row: use the general path.
        output = await self._run(item, f"{request_id}-full", self._prompt_logprob_params())
        return self._completion_logprobs(output, item)

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
    def _prompt_logprob_params() -> SamplingParams:
        # prompt_logprobs goes to the constructor: set later, prefix-cache reads stay on.
        return SamplingParams(
            max_tokens=1,
            prompt_logprobs=0,
            detokenize=False,
            flat_logprobs=True,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

    @staticmethod
    def _token_id_params(item: ScoreInput) -> SamplingParams:
        rows = np.asarray(item.completion_ids, dtype=np.int64)[:, None]
        return SamplingParams(
            max_tokens=1,
            prompt_logprob_token_ids=rows,
            prompt_logprob_start=len(item.prompt_ids) - 1,
            detokenize=False,
            output_kind=RequestOutputKind.FINAL_ONLY,
            # Only rows from the start row on are scored, so a cached prompt prefix may be
            # reused: a GRPO group's shared prompt is prefilled once. When a cache hit reaches
            # past the start row vLLM returns None and the general path answers instead.
            skip_reading_prefix_cache=False,
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

    async def shutdown(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            # Dropping the last reference now, while modules are alive, keeps AsyncLLM's
            # __del__ from running its shutdown again at interpreter exit.
            engine.shutdown()
