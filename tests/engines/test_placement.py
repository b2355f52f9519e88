"""What each engine's processes are given: devices, memory share, parallelism, environment.

Options are pure functions of the settings and the visible GPUs (tested here for GPU layouts
on a CPU machine); the last test checks the real engine processes of the running vLLM server:
each engine's worker is pinned to the cores its options name.
"""

from __future__ import annotations

from typing import Any

import psutil
import pytest

from dense_reward_server.config import Settings
from dense_reward_server.engines.options import engine_gpus, vllm_options


def options(visible: list[str], **settings: Any) -> dict[str, Any]:
    made = Settings(**settings)
    return {
        role: vllm_options(made, role, "m", None, cpu=False, visible_gpus=visible)
        for role in ("sft", "base")
    }


def test_one_gpu_is_shared_with_room_for_both_engines() -> None:
    both = options(["0"])
    for role in ("sft", "base"):
        assert "CUDA_VISIBLE_DEVICES" not in both[role].env
        assert both[role].engine_args["gpu_memory_utilization"] == 0.4


def test_two_gpus_give_each_engine_its_own_with_the_full_memory_share() -> None:
    both = options(["0", "1"])
    assert both["sft"].env["CUDA_VISIBLE_DEVICES"] == "0"
    assert both["base"].env["CUDA_VISIBLE_DEVICES"] == "1"
    assert {o.engine_args["gpu_memory_utilization"] for o in both.values()} == {0.9}


def test_extra_baselines_sit_beside_base_and_split_its_memory() -> None:
    made = Settings(extra_baselines={"half": "m2"})

    def opts(role: str, visible: list[str]) -> Any:
        return vllm_options(made, role, "m", None, cpu=False, visible_gpus=visible)

    # One GPU for all three engines: what two would take, split three ways.
    assert {opts(r, ["0"]).engine_args["gpu_memory_utilization"] for r in ("sft", "half")} == {
        round(0.8 / 3, 3)
    }
    # Two GPUs: SFT alone on the first; base and the extra share the second.
    assert opts("sft", ["0", "1"]).engine_args["gpu_memory_utilization"] == 0.9
    half = opts("half", ["0", "1"])
    assert half.env["CUDA_VISIBLE_DEVICES"] == "1"
    assert half.engine_args["gpu_memory_utilization"] == 0.45
    cpu = vllm_options(made, "half", "m", None, cpu=True)
    base = vllm_options(made, "base", "m", None, cpu=True)
    assert cpu.env["VLLM_CPU_OMP_THREADS_BIND"] == base.env["VLLM_CPU_OMP_THREADS_BIND"]


def test_data_and_tensor_parallel_engines_take_consecutive_gpus() -> None:
    visible = [str(i) for i in range(8)]
    both = options(visible, tensor_parallel_size=2, data_parallel_size=2)
    assert both["sft"].env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert both["base"].env["CUDA_VISIBLE_DEVICES"] == "4,5,6,7"
    assert both["sft"].engine_args["data_parallel_size"] == 2
    assert both["sft"].engine_args["tensor_parallel_size"] == 2
    # Too few GPUs for both engines at that size: they share all of them.
    shared = options(visible[:4], tensor_parallel_size=2, data_parallel_size=2)
    assert "CUDA_VISIBLE_DEVICES" not in shared["sft"].env
    assert shared["sft"].engine_args["gpu_memory_utilization"] == 0.4


def test_given_devices_win_and_no_baseline_keeps_every_gpu_for_sft() -> None:
    both = options(["0", "1", "2"], sft_devices="2", base_devices="0,1")
    assert both["sft"].env["CUDA_VISIBLE_DEVICES"] == "2"
    assert both["base"].env["CUDA_VISIBLE_DEVICES"] == "0,1"
    alone = Settings(baseline="none")
    assert engine_gpus(alone, ["0", "1"]) == {"sft": [], "base": []}
    # The same GPU named for both: they share it, so the shared memory share.
    same = options(["0", "1"], sft_devices="0", base_devices="0")
    assert same["sft"].engine_args["gpu_memory_utilization"] == 0.4


def test_cpu_engines_get_their_own_cores_and_no_gpu() -> None:
    made = Settings(cpu_threads_bind=["0", "1"])
    sft = vllm_options(made, "sft", "m", None, cpu=True, visible_gpus=["0", "1"])
    assert sft.env["VLLM_CPU_OMP_THREADS_BIND"] == "0"
    assert "CUDA_VISIBLE_DEVICES" not in sft.env
    assert sft.engine_args["block_size"] == 32 and sft.engine_args["enable_prefix_caching"]


def cores(bind: str) -> frozenset[int]:
    """The core ids of a VLLM_CPU_OMP_THREADS_BIND value such as `0`, `0,1` or `2-3`."""
    ids: set[int] = set()
    for part in bind.split(","):
        low, _, high = part.partition("-")
        ids.update(range(int(low), int(high or low) + 1))
    return frozenset(ids)


@pytest.mark.vllm
def test_each_real_engine_worker_runs_on_its_own_cores(vllm_server: Any) -> None:
    """What the live server's engine processes were given: each engine's worker runs pinned to
    the cores its options name. (Their /proc environ cannot say: vLLM rewrites its processes'
    titles over that memory.)"""
    workers = [
        child
        for child in psutil.Process(vllm_server.proc.pid).children(recursive=True)
        if child.name() == "VLLM::Worker"
    ]
    pinned = {frozenset(worker.cpu_affinity()) for worker in workers}
    settings = Settings()
    want = {
        cores(vllm_options(settings, role, "m", None, cpu=True).env["VLLM_CPU_OMP_THREADS_BIND"])
        for role in ("sft", "base")
    }
    assert len(workers) == 2 and pinned == want
