"""Build the engine pair the settings ask for: SFT first, then base (never both at once)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from service.config import Settings
from service.engines.base import EnginePair, ScoringEngine
from service.engines.options import hf_options, vllm_options
from service.errors import StartupError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedPair:
    pair: EnginePair
    load_seconds: dict[str, float]


def load_engine_pair(settings: Settings) -> LoadedPair:
    """Start both engines one after the other; shut the first down if the second fails."""
    seconds: dict[str, float] = {}
    engines: list[ScoringEngine] = []
    try:
        roles = [("sft", settings.sft_model, settings.sft_revision)]
        if settings.baseline == "model":
            roles.append(("base", settings.base_model, settings.base_revision))
        for role, model, revision in roles:
            start = time.perf_counter()
            engines.append(_start_engine(settings, role, model, revision))
            seconds[role] = time.perf_counter() - start
            logger.info("engine loaded", extra={"role": role, "seconds": round(seconds[role], 2)})
    except BaseException:
        for engine in engines:
            _shutdown_quietly(engine)
        raise
    return LoadedPair(EnginePair(engines[0], engines[1] if len(engines) > 1 else None), seconds)


def _start_engine(settings: Settings, role: str, model: str, revision: str | None) -> ScoringEngine:
    if settings.backend == "transformers":
        from service.engines.hf_engine import HFScoringEngine

        return HFScoringEngine(role, model, revision=revision, **hf_options(settings))
    try:
        from service.engines.vllm_engine import VLLMScoringEngine, on_cpu, visible_gpus
    except ImportError as error:
        raise StartupError(
            f"backend 'vllm' needs vLLM installed ({error}); install the 'cpu' or 'gpu' extra "
            "or start with --backend transformers"
        ) from error
    options = vllm_options(
        settings, role, model, revision, cpu=on_cpu(), visible_gpus=visible_gpus()
    )
    return VLLMScoringEngine.start(role, options)


def _shutdown_quietly(engine: ScoringEngine) -> None:
    import asyncio

    try:
        asyncio.run(engine.shutdown())
    except Exception:  # already failing: the original error matters more
        logger.exception("engine shutdown failed")
