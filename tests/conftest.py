"""Shared fixtures: the demo pair (built once if missing), live servers over loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from service.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DEMO = Path(os.environ.get("DRS_TEST_DEMO_DIR", ROOT / ".models" / "demo"))


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """The demo pair; built here if `make demo` has not built it (never skipped)."""
    if not (DEMO / "sft" / "config.json").exists():
        from service.demo.build import build_demo

        build_demo(DEMO, seed=0, progress=False)
    return DEMO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadServer:
    """A real uvicorn server on loopback, in a thread of the test process."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.fixture(scope="session")
def thread_server() -> Callable[..., ThreadServer]:
    return ThreadServer


class ProcessServer:
    """`python -m service serve` in a subprocess: the way users run it."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(ROOT / ".pytest-server.log", "ab")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "service", "serve", "--port", str(self.port), *args]
        self.proc = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    def wait_ready(self, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}; see .pytest-server.log"
                )
            try:
                if httpx.get(f"{self.url}/ready", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(1)
        raise RuntimeError("server not ready in time")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            code = self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log.close()
        return code


@pytest.fixture(scope="session")
def vllm_server(demo_dir: Path) -> Iterator[ProcessServer]:
    """One vLLM-backed server for the whole run (two engines take ~1 min to start)."""
    server = ProcessServer(
        [
            "--backend",
            "vllm",
            "--sft-model",
            str(demo_dir / "sft"),
            "--base-model",
            str(demo_dir / "base"),
            "--log-format",
            "text",
        ]
    )
    try:
        server.wait_ready()
        yield server
    finally:
        assert server.stop() == 0, "the server did not shut down cleanly"


@pytest.fixture(scope="session")
def settings_for(demo_dir: Path) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "sft_model": str(demo_dir / "sft"),
            "base_model": str(demo_dir / "base"),
            "backend": "transformers",
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make
