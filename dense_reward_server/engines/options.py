"""Engine options from the settings, resolved in one place (no vLLM import: start-up stays light).

The settings declare every option once; this module turns them into what each engine takes:
vLLM `AsyncEngineArgs` keywords plus the environment its core process needs on CPU, and the
transformers engine's keywords. The benchmark's `vllm serve` peer is configured from the same
functions, so both systems schedule the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dense_reward_server.config import Settings
from dense_reward_server.engines import vllm_plugin

# Each of the two engines takes this share of the device (of RAM on CPU) unless told otherwise:
# on shared GPUs two engines fit with room for two CUDA contexts; on its own GPUs vLLM's default.
DEFAULT_MEMORY_SHARE = {"cpu": 0.1, "gpu": 0.4, "gpu_alone": 0.9}
# vLLM-CPU block size (multiples of 32 only). Prefix hits are whole blocks before the first
# scored row, so smaller blocks share more: a 128-token prompt shares 96 tokens with 32-token
# blocks and none with vLLM's default 128 (README, Performance: the measurement).
CPU_BLOCK_SIZE = 32
# vLLM-CPU: 10 ms of busy-wait after each message instead of vLLM's 1 s (engines/vllm_plugin.py
# has the measurement). Not 0: a reader that never spins waits on vLLM's zmq notification alone,
# which loses wake-ups (measured: a lone request's p90 5.0 s, vLLM's 5 s recheck interval).
CPU_BUSY_LOOP_S = 0.01


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


def engine_gpus(settings: Settings, visible: Sequence[str]) -> dict[str, list[str]]:
    """The GPU ids each engine's processes see ([] = all visible ones, shared).

    Given ids win. Otherwise, with enough visible GPUs for both engines (tensor x data
    parallel each), SFT takes the first ones and base the next: no engine waits on the
    other's kernels and each gets the whole memory of its own. Else both share all of them.
    """
    given = {"sft": settings.sft_devices, "base": settings.base_devices}
    if any(given.values()):
        return {role: ids.split(",") if ids else [] for role, ids in given.items()}
    per_engine = settings.tensor_parallel_size * settings.data_parallel_size
    if settings.baseline == "model" and len(visible) >= 2 * per_engine:
        return {
            "sft": list(visible[:per_engine]),
            "base": list(visible[per_engine : 2 * per_engine]),
        }
    return {"sft": [], "base": []}


def vllm_options(
    settings: Settings,
    role: str,
    model: str,
    revision: str | None,
    *,
    cpu: bool,
    visible_gpus: Sequence[str] = (),
) -> VllmOptions:
    """What `AsyncLLM.from_engine_args` gets for one engine; `engine_args` pass through last."""
    dtype = settings.dtype
    gpus = {} if cpu else engine_gpus(settings, visible_gpus)
    # Extra baselines live where base lives (its GPUs, its CPU cores).
    placement = "sft" if role == "sft" else "base"
    own_gpus = bool(gpus) and set(gpus["sft"]).isdisjoint(gpus["base"]) and all(gpus.values())
    share = "cpu" if cpu else ("gpu_alone" if own_gpus else "gpu")
    memory = settings.gpu_memory_utilization or memory_share(share, placement, settings)
    args: dict[str, Any] = {
        "model": model,
        "revision": revision,
        "dtype": ("float32" if cpu else "auto") if dtype == "auto" else dtype,
        "max_model_len": settings.max_model_len,
        "gpu_memory_utilization": memory,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "data_parallel_size": settings.data_parallel_size,
        "max_num_batched_tokens": settings.max_num_batched_tokens,
        "max_num_seqs": settings.max_num_seqs,
        "enable_prefix_caching": settings.prefix_sharing,
        "block_size": settings.block_size or (CPU_BLOCK_SIZE if cpu else None),
        # Two engines in one process clobber each other's Prometheus metrics.
        "disable_log_stats": True,
        # Scoring needs no detokenizer; skipping it saves start time and memory.
        "skip_tokenizer_init": True,
        "enforce_eager": cpu,
    }
    args.update(settings.engine_args)
    env: dict[str, str] = {}
    if gpus.get(placement):
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[placement])
    if cpu:
        env = {
            "VLLM_CPU_OMP_THREADS_BIND": cpu_threads_bind(settings, placement),
            "VLLM_CPU_KVCACHE_SPACE": str(settings.cpu_kvcache_space_gib),
        }
    busy_loop_s = settings.vllm_busy_loop_s
    if busy_loop_s is None and cpu:
        busy_loop_s = CPU_BUSY_LOOP_S
    if busy_loop_s is not None:
        env[vllm_plugin.ENV] = str(busy_loop_s)
    return VllmOptions(args, env)


def memory_share(share: str, placement: str, settings: Settings) -> float:
    """The default memory share of one engine: split further among the engines that share
    its devices when extra baselines are loaded (they sit beside base)."""
    extras = len(settings.extra_baselines)
    if share == "cpu" or not extras:
        return DEFAULT_MEMORY_SHARE[share]
    if share == "gpu_alone":  # SFT alone on its GPUs; base and the extras share theirs
        alone = DEFAULT_MEMORY_SHARE["gpu_alone"]
        return alone if placement == "sft" else round(alone / (1 + extras), 3)
    # All engines on the same GPUs: what two would take, split among all of them.
    return round(2 * DEFAULT_MEMORY_SHARE["gpu"] / (2 + extras), 3)


def hf_options(settings: Settings) -> dict[str, Any]:
    """Keywords of `HFScoringEngine` beside role, model and revision."""
    return {
        "dtype": settings.dtype,
        "device": settings.device,
        "max_model_len": settings.max_model_len,
        "max_batch_tokens": settings.hf_max_batch_tokens,
        "share_prompts": settings.prefix_sharing,
    }
