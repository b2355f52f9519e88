"""Engine options from the settings, resolved in one place (no vLLM import: start-up stays light).

The settings declare every option once; this module turns them into what each engine takes:
vLLM `AsyncEngineArgs` keywords plus the environment its core process needs on CPU, and the
transformers engine's keywords. The benchmark's `vllm serve` peer is configured from the same
functions, so both systems schedule the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from service.config import Settings

# Each of the two engines takes this share of the device (of RAM on CPU) unless told otherwise:
# on one GPU two engines fit with room for two CUDA contexts.
DEFAULT_MEMORY_SHARE = {"cpu": 0.1, "gpu": 0.4}


@dataclass(frozen=True, slots=True)
class VllmOptions:
    """One vLLM engine's keyword arguments and the environment its processes start with."""

    engine_args: dict[str, Any]
    env: dict[str, str]


def usable_cores() -> list[int]:
    """The core ids this process may run on (its cpuset), in order."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def default_cpu_binds(cores: list[int]) -> tuple[str, str]:
    """One half of the usable cores per engine, so the two engines never fight over a core.

    `cores` are the ids this process may run on (a cpuset need not start at 0).
    """
    if len(cores) < 2:
        only = str(cores[0]) if cores else "0"
        return only, only
    half = len(cores) // 2
    return ",".join(map(str, cores[:half])), ",".join(map(str, cores[half:]))


def cpu_threads_bind(settings: Settings, role: str) -> str:
    binds = settings.cpu_threads_bind or list(default_cpu_binds(usable_cores()))
    return binds[0 if role == "sft" else 1]


def vllm_options(
    settings: Settings, role: str, model: str, revision: str | None, *, cpu: bool
) -> VllmOptions:
    """What `AsyncLLM.from_engine_args` gets for one engine; `engine_args` pass through last."""
    dtype = settings.dtype
    args: dict[str, Any] = {
        "model": model,
        "revision": revision,
        "dtype": ("float32" if cpu else "auto") if dtype == "auto" else dtype,
        "max_model_len": settings.max_model_len,
        "gpu_memory_utilization": settings.gpu_memory_utilization
        or DEFAULT_MEMORY_SHARE["cpu" if cpu else "gpu"],
        "tensor_parallel_size": settings.tensor_parallel_size,
        "max_num_batched_tokens": settings.max_num_batched_tokens,
        "max_num_seqs": settings.max_num_seqs,
        # Two engines in one process clobber each other's Prometheus metrics.
        "disable_log_stats": True,
        # Scoring needs no detokenizer; skipping it saves start time and memory.
        "skip_tokenizer_init": True,
        "enforce_eager": cpu,
    }
    args.update(settings.engine_args)
    env: dict[str, str] = {}
    if cpu:
        env = {
            "VLLM_CPU_OMP_THREADS_BIND": cpu_threads_bind(settings, role),
            "VLLM_CPU_KVCACHE_SPACE": str(settings.cpu_kvcache_space_gib),
        }
    return VllmOptions(args, env)


def hf_options(settings: Settings) -> dict[str, Any]:
    """Keywords of `HFScoringEngine` beside role, model and revision."""
    return {
        "dtype": settings.dtype,
        "device": settings.device,
        "max_model_len": settings.max_model_len,
        "max_batch_tokens": settings.hf_max_batch_tokens,
    }
