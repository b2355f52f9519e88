"""The in-process peer: both models run by the service's own transformers engine, in a loop.

The service's engine factory builds the pair (`HFScoringEngine`, configured from the same
Settings) that does the batching and the forward passes; the loop scores each request under
the SFT model, then the base model, one request at a time, as a plain training-script loop
would.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from dense_reward_server.config import Settings
from harness.bench.drive import Record
from harness.bench.systems import System
from harness.workloads import Request

if TYPE_CHECKING:  # torch loads when the loop starts, not when the benchmark does
    from dense_reward_server.engines.base import ScoringEngine


class TransformersLoop(System):
    name = "transformers_loop"

    def __init__(self, settings: Settings, threads: int) -> None:
        super().__init__()
        if settings.backend != "transformers":
            raise ValueError("the transformers loop needs backend='transformers' settings")
        self.settings, self.threads = settings, threads
        self.engines: list[ScoringEngine] = []
        self._loop = asyncio.new_event_loop()  # one loop for all calls into the engines

    def start(self) -> None:
        import torch

        from dense_reward_server.engines.factory import load_engine_pair

        started = time.perf_counter()
        torch.set_num_threads(self.threads)
        self.engines = load_engine_pair(self.settings).pair.engines
        self.startup_s = time.perf_counter() - started

    def stop(self) -> None:
        for engine in self.engines:
            engine.shutdown()
        self.engines = []
        self._loop.close()

    def describe(self) -> dict[str, Any]:
        info = self.engines[0].info if self.engines else None
        return {
            "threads": self.threads,
            "max_batch_tokens": self.settings.hf_max_batch_tokens,
            "startup_s": self.startup_s,
            "device": info.device if info else self.settings.device,
            "dtype": info.dtype if info else self.settings.dtype,
        }

    def rewards(self, request: Request) -> list[np.ndarray]:
        sft, base = [
            self._loop.run_until_complete(engine.score(request.inputs, "bench"))
            for engine in self.engines  # one after the other: all threads to each forward
        ]
        return [a - b for a, b in zip(sft, base, strict=True)]

    def capacity(
        self, requests: list[Request], concurrency: int, min_s: float, min_n: int
    ) -> float:
        """One loop: `concurrency` does not apply."""
        self.rewards(requests[0])  # warm-up
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < min_s or n < min_n:
            n += 1
            self.rewards(requests[n % len(requests)])  # after the warm-up, as the HTTP driver
        return n / (time.perf_counter() - start)

    def open_loop(
        self, requests: list[Request], arrivals: np.ndarray, drain_s: float
    ) -> list[Record]:
        """A FIFO served by the loop, in virtual time: each request really runs (its service
        time is measured), start = max(arrival, previous finish). Idle gaps are not slept
        through, which changes nothing for one in-process server and saves wall time."""
        records = []
        clock = 0.0
        deadline = float(arrivals[-1]) + drain_s
        for i, at in enumerate(arrivals):
            request = requests[i % len(requests)]
            start = max(clock, float(at))
            if start > deadline:  # would not have finished within the drain window
                records.append(Record(float(at), deadline, 0, request.scored_tokens))
                continue
            t = time.perf_counter()
            self.rewards(request)
            clock = start + time.perf_counter() - t
            records.append(Record(float(at), clock, 200, request.scored_tokens))
        return records
