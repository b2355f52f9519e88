"""The vLLM plugin that sets how long vLLM's processes busy-wait: acting only where the server
asked (its engines' environment), on vLLM's real SpinCondition, and registered where vLLM
looks for general plugins."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
import zmq
from vllm.distributed.device_communicators import shm_broadcast

from dense_reward_server.config import Settings
from dense_reward_server.engines import vllm_plugin
from dense_reward_server.engines.options import vllm_options


def reader_busy_loop_s(tmp_path: Path) -> float:
    """busy_loop_s of a real SpinCondition reader (what each vLLM worker waits with)."""
    context = zmq.Context()
    address = f"ipc://{tmp_path}/notify"
    writer = shm_broadcast.SpinCondition(False, context, address)
    reader = shm_broadcast.SpinCondition(True, context, address)
    try:
        return float(reader.busy_loop_s)
    finally:
        for socket in (reader.local_notify_socket, writer.local_notify_socket):
            socket.close(linger=0)
        for socket in (reader.read_cancel_socket, reader.write_cancel_socket):
            socket.close(linger=0)
        context.term()


def test_the_plugin_sets_the_busy_wait_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Restored after the test: the patch is process-wide.
    monkeypatch.setattr(
        shm_broadcast.SpinCondition, "__init__", shm_broadcast.SpinCondition.__init__
    )
    monkeypatch.delenv(vllm_plugin.ENV, raising=False)
    vllm_plugin.register()
    assert reader_busy_loop_s(tmp_path) == 1.0  # vLLM's own, untouched
    monkeypatch.setenv(vllm_plugin.ENV, "0.0")
    vllm_plugin.register()
    vllm_plugin.register()  # vLLM may load a plugin more than once per process
    assert reader_busy_loop_s(tmp_path) == 0.0


def test_vllm_finds_the_plugin_and_cpu_engines_ask_for_no_busy_wait() -> None:
    names = {e.value for e in entry_points(group="vllm.general_plugins")}
    assert "dense_reward_server.engines.vllm_plugin:register" in names
    settings = Settings()
    assert vllm_options(settings, "sft", "m", None, cpu=True).env[vllm_plugin.ENV] == "0.01"
    # On a GPU vLLM's own busy-wait stays unless the setting says otherwise.
    assert vllm_plugin.ENV not in vllm_options(settings, "sft", "m", None, cpu=False).env
    given = Settings(vllm_busy_loop_s=0.01)
    assert vllm_options(given, "sft", "m", None, cpu=False).env[vllm_plugin.ENV] == "0.01"
