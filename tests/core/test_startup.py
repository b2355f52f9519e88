"""Start-up that fails halfway: one line naming the role, the model and the root cause, and
nothing left running. Real factory, real weights files broken on purpose."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from safetensors.numpy import load_file, save_file

from dense_reward_server.engines import hf_engine
from dense_reward_server.engines.factory import load_engine_pair
from dense_reward_server.errors import StartupError
from harness.paths import ROOT


def broken_copy(demo_dir: Path, target: Path, how: str) -> Path:
    """A copy of the demo base whose weights are cut short ("truncated": the header cannot be
    read) or intact but of the wrong shape ("misshapen": only loading finds it)."""
    shutil.copytree(demo_dir / "base", target)
    weights = target / "model.safetensors"
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        tensors = load_file(weights)
        tensors["model.norm.weight"] = tensors["model.norm.weight"][:7].copy()
        save_file(tensors, weights, metadata={"format": "pt"})
    return target


def serve(demo_dir: Path, base: Path, backend: str) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("DRS_")}
    command = [sys.executable, "-m", "dense_reward_server", "serve", "--backend", backend]
    command += ["--sft-model", str(demo_dir / "sft"), "--base-model", str(base)]
    command += ["--log-format", "text", "--port", "1"]  # never reached: start-up fails first
    done = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean,
        cwd=ROOT,
        start_new_session=True,
    )
    output, _ = done.communicate(timeout=600)
    # No engine process may outlive the server (a few seconds to finish exiting).
    _, leftover = psutil.wait_procs(running_in_session(done.pid), timeout=15)
    names = [" ".join(process.cmdline()) for process in leftover]
    for process in leftover:
        process.kill()
    assert not leftover, f"processes of the failed server still ran: {names}\n{output}"
    return subprocess.CompletedProcess(command, done.returncode, output, "")


def running_in_session(session: int) -> list[psutil.Process]:
    """Live processes of a session (zombies are dead: here nobody reaps an orphan's)."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return found


def refusal(output: str) -> str:
    (line,) = [line for line in output.splitlines() if "refusing to start" in line]
    return line


def test_broken_weights_are_named_before_any_engine_starts(demo_dir: Path, tmp_path: Path) -> None:
    base = broken_copy(demo_dir, tmp_path / "base", "truncated")
    done = serve(demo_dir, base, "vllm")
    assert done.returncode == 3, done.stdout
    line = refusal(done.stdout)
    assert f"the base model '{base}'" in line and "DRS_BASE_MODEL" in line, line
    assert "cannot read model.safetensors: SafetensorError" in line, line
    assert "starting vLLM engine" not in done.stdout  # the SFT engine never loaded for nothing
    assert "Traceback" not in done.stdout and len(done.stdout.splitlines()) < 10, done.stdout


def test_an_engine_that_fails_after_another_started_leaves_nothing_running(
    demo_dir: Path, tmp_path: Path, settings_for: Callable[..., Any], monkeypatch: Any
) -> None:
    base = broken_copy(demo_dir, tmp_path / "base", "misshapen")
    closed: list[str] = []
    shutdown = hf_engine.HFScoringEngine.shutdown

    def recorded(engine: hf_engine.HFScoringEngine) -> None:
        closed.append(engine.info.role)
        shutdown(engine)

    monkeypatch.setattr(hf_engine.HFScoringEngine, "shutdown", recorded)
    with pytest.raises(StartupError) as failure:
        load_engine_pair(settings_for(backend="transformers", base_model=str(base)))
    assert closed == ["sft"]
    message = str(failure.value)
    assert f"the base model '{base}'" in message and "failed to start: RuntimeError" in message


@pytest.mark.vllm
def test_the_vllm_engine_that_started_is_shut_down_when_the_base_fails(
    demo_dir: Path, tmp_path: Path
) -> None:
    base = broken_copy(demo_dir, tmp_path / "base", "misshapen")
    done = serve(demo_dir, base, "vllm")
    assert done.returncode == 3, done.stdout[-3000:]
    line = refusal(done.stdout)
    assert f"the base model '{base}'" in line and "its engine failed to start" in line, line
    assert "engine shutdown failed" not in done.stdout
    # AsyncLLM.__del__ at interpreter exit raised a TypeError when the SFT engine was left up.
    assert "TypeError" not in done.stdout, done.stdout[-3000:]
