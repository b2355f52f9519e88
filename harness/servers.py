"""Servers the harness runs: `dense-reward-server serve` processes and in-thread uvicorn apps.

`serve_command` is the one builder of a serve command line; `wait_ready` the one readiness
wait, for the service and for the benchmark's `vllm serve` peers alike.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn

from dense_reward_server.config import Settings
from harness.ports import HOST, free_port, loopback_url
from harness.processes import ManagedProcess

if TYPE_CHECKING:
    from dense_reward_server.core.runtime import EngineFactory

# Idle keep-alive of every server the harness runs: the service's DRS_KEEP_ALIVE_TIMEOUT_S
# default, and what the benchmark gives its `vllm serve` peers (VLLM_HTTP_TIMEOUT_KEEP_ALIVE).
SERVER_KEEPALIVE_S: int = Settings.model_fields["keep_alive_timeout_s"].default


def pooled_limits() -> httpx.Limits:
    """An httpx pool with no size limit whose client never expires an idle connection itself.

    httpcore 1.0 closes a connection whose keep-alive expired while another request has just
    been handed that connection but has not started on it yet; under a starved event loop
    (the soak, 2 cores) that request then fails mid-flight with ReadError(ClosedResourceError)
    (seen: headers and body sent, the read failed 1.3 s later). Without a client-side expiry
    only the server closes idle connections, after SERVER_KEEPALIVE_S: longer than any pause
    in a harness run's traffic.
    """
    return httpx.Limits(max_connections=None, max_keepalive_connections=None, keepalive_expiry=None)


def cli_flags(values: Mapping[str, object], *, false_as_no: bool) -> list[str]:
    """`--kebab-name value` per entry; None keeps the program's default, lists and dicts are
    JSON, True is the bare flag, False `--no-name` with `false_as_no`, else left out (for
    programs, like vLLM, whose plain flags default to off and have no `--no-` form)."""
    flags: list[str] = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if value is None or (value is False and not false_as_no):
            continue
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list | dict):
            flags += [flag, json.dumps(value)]
        else:
            flags += [flag, str(value)]
    return flags


def setting_flags(**settings: object) -> list[str]:
    """`serve` flags for Settings fields by name (its implicit flags: `--name`/`--no-name`)."""
    unknown = [name for name in settings if name not in Settings.model_fields]
    if unknown:
        raise ValueError(f"not settings: {unknown}")
    return cli_flags(settings, false_as_no=True)


def serve_command(*args: str, **settings: object) -> list[str]:
    """`dense-reward-server serve` with these settings, then `args` (raw flags) as given."""
    return [sys.executable, "-m", "dense_reward_server", "serve", *setting_flags(**settings), *args]


def wait_ready(url: str, procs: Sequence[ManagedProcess], timeout_s: float) -> float:
    """Polls GET url until it answers 200; returns the seconds it took.

    Fails at once when one of `procs` (the server and anything it depends on) has exited.
    """
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(
                    f"{proc.name} exited with {proc.proc.returncode}; see {proc.log_path}"
                )
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s")


class ServiceProcess(ManagedProcess):
    """`python -m dense_reward_server serve` on a free loopback port: the way users run it.

    `args` are raw serve flags, `settings` Settings fields by name (both may be used).
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        *,
        name: str = "service",
        **settings: object,
    ) -> None:
        self.port = free_port()
        self.url = loopback_url(self.port)
        command = serve_command(*args, host=HOST, port=self.port, **settings)
        super().__init__(command, name=name, env=env)

    def wait_ready(self, timeout_s: float = 600) -> float:
        return wait_ready(self.url + "/ready", [self], timeout_s)

    def models(self) -> dict[str, Any]:
        """GET /v1/models: what the server says about its two engines."""
        answer: dict[str, Any] = httpx.get(self.url + "/v1/models", timeout=30).json()
        return answer


def vocab_size(models: Mapping[str, Any]) -> int:
    """Token ids below this are valid to score (a /v1/models answer's first engine)."""
    return int(models["data"][0]["vocab_size"])


class ThreadServer:
    """A real uvicorn server on loopback, in a thread of this process (app-level tests), wired
    as `dense-reward-server serve` wires it: the lifecycle first, then the app given it."""

    def __init__(self, settings: Settings, engine_factory: EngineFactory | None = None) -> None:
        from dense_reward_server.api.app import create_app
        from dense_reward_server.core.lifecycle import Lifecycle

        self.lifecycle = (
            Lifecycle(settings) if engine_factory is None else Lifecycle(settings, engine_factory)
        )
        app = create_app(self.lifecycle)
        self.port = free_port()
        self.url = loopback_url(self.port)
        config = uvicorn.Config(app, host=HOST, port=self.port, log_config=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

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
