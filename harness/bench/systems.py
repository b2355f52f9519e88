"""What the benchmark compares, behind one interface: `System`, and this service over HTTP.

The peers are in `peer` (two `vllm serve` servers) and `loop` (an in-process transformers
loop). Every process a system starts is a ManagedProcess, stopped by `stop()`, which the
benchmark always reaches through try/finally.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from functools import partial
from typing import Any

import numpy as np
import orjson

from harness.bench.clients import Client, ClientError, parse_ms
from harness.bench.drive import Outcome, Record, closed_loop, one_request, open_loop
from harness.processes import ManagedProcess
from harness.servers import ServiceProcess
from harness.workloads import Request


class System(ABC):
    """start(), then prepare() the workloads, then rewards/capacity/open_loop, then stop()."""

    name = "system"

    def __init__(self) -> None:
        self.startup_s = 0.0

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The system's configuration for the report."""

    def prepare(self, requests: list[Request]) -> None:
        """Work done once per request before timing (e.g. serializing bodies)."""
        return None  # nothing by default

    @abstractmethod
    def rewards(self, request: Request) -> list[np.ndarray]:
        """Rewards per sequence of one request (beta = 1), for the equality check."""

    @abstractmethod
    def capacity(
        self, requests: list[Request], concurrency: int, min_s: float, min_n: int
    ) -> float:
        """Closed-loop requests/s (calibration)."""

    @abstractmethod
    def open_loop(
        self, requests: list[Request], arrivals: np.ndarray, drain_s: float
    ) -> list[Record]:
        """One sweep point: request i arrives at arrivals[i] (cycling through `requests`)."""


class HttpSystem(System):
    """A system reached over HTTP: the drivers call `send` with pre-serialized bodies."""

    def __init__(self, client_kind: str) -> None:
        super().__init__()
        self.client_kind = client_kind
        self.procs: list[ManagedProcess] = []

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()
        self.procs = []

    def describe(self) -> dict[str, Any]:
        return {"commands": [" ".join(p.command) for p in self.procs], "startup_s": self.startup_s}

    @abstractmethod
    async def send(self, client: Client, request: Request, keep: bool = False) -> Outcome: ...

    def rewards(self, request: Request) -> list[np.ndarray]:
        send = partial(self.send, keep=True)
        outcome = asyncio.run(one_request(send, self.client_kind, request))
        if outcome.status != 200 or outcome.rewards is None:
            raise RuntimeError(f"{self.name}: equality request got {outcome.status}")
        return outcome.rewards

    def capacity(
        self, requests: list[Request], concurrency: int, min_s: float, min_n: int
    ) -> float:
        return asyncio.run(
            closed_loop(self.send, self.client_kind, requests, concurrency, min_s, min_n)
        )

    def open_loop(
        self, requests: list[Request], arrivals: np.ndarray, drain_s: float
    ) -> list[Record]:
        return asyncio.run(open_loop(self.send, self.client_kind, requests, arrivals, drain_s))


class ServiceSystem(HttpSystem):
    """This service: `dense-reward-server serve` (vLLM engine unless told) with the shared
    settings."""

    name = "service"

    def __init__(
        self,
        settings: dict[str, Any],
        flags: list[str],
        client_kind: str,
        backend: str = "vllm",
    ) -> None:
        super().__init__(client_kind)
        self.settings, self.flags, self.backend = settings, flags, backend
        self.url = ""
        self.models: dict[str, Any] = {}
        self._bodies: dict[Request, list[bytes]] = {}

    def start(self) -> None:
        server = ServiceProcess(
            self.flags, backend=self.backend, log_level="warning", **self.settings
        )
        self.procs = [server]
        self.url = server.url
        self.startup_s = server.wait_ready(600)
        self.models = server.models()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "v1_models": self.models}

    def prepare(self, requests: list[Request]) -> None:
        # Default include (rewards + both log-probs): what the peer returns too.
        self._bodies.update((r, [orjson.dumps(b) for b in r.bodies()]) for r in requests)

    async def send(self, client: Client, request: Request, keep: bool = False) -> Outcome:
        """The request's body, or its one-sample bodies all at once (done when all are)."""
        url = self.url + "/v1/token_rewards"
        try:
            answers = await asyncio.gather(*(client.post(url, b) for b in self._bodies[request]))
        except ClientError:
            return Outcome(status=0)
        server_ms = max_ms([parse_ms(total) for _, (total, _), _ in answers])
        engine_ms = max_ms([parse_ms(engine) for _, (_, engine), _ in answers])
        bad = [status for status, _, _ in answers if status != 200]
        if bad:
            return Outcome(status=bad[0], server_ms=server_ms)
        # Parse like a real client would: rewards in hand is the end of the request.
        rewards = []
        for _, _, content in answers:
            results = orjson.loads(content)["results"]
            if request.group and not request.one_sample:
                results = results[0]["completions"]
            rewards += [np.asarray(r["rewards"], dtype=np.float32) for r in results]
        return Outcome(200, server_ms, engine_ms, rewards if keep else None)


def max_ms(values: list[float | None]) -> float | None:
    """The slowest of a request's answers (None when one did not say)."""
    return None if any(v is None for v in values) else max(v for v in values if v is not None)
