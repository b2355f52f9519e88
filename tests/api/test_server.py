"""The server process as an orchestrator runs it: SIGTERM drains, a dead engine exits non-zero."""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest

from dense_reward_server.engines.base import EnginePair
from dense_reward_server.sequence import ScoreInput
from harness.paths import pair_settings
from harness.probes import ready_code, wait_until
from harness.servers import ServiceProcess

URL = "/v1/token_rewards"


def long_items(vocab: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "prompt_token_ids": [rng.randrange(vocab) for _ in range(20)],
            "completion_token_ids": [rng.randrange(vocab) for _ in range(700)],
        }
        for _ in range(24)
    ]


def inflight_requests(url: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("drs_inflight_requests "):
            return float(line.split()[1])
    return 0.0


def test_sigterm_drains_accepted_requests_then_exits_0(
    demo_dir: Path, reference: EnginePair
) -> None:
    server = ServiceProcess(
        backend="transformers",
        hf_max_batch_tokens=2048,
        log_format="text",
        drain_timeout_s=120,
        **pair_settings(demo_dir),
    )
    server.wait_ready(300)
    vocab = httpx.get(server.url + "/v1/models").json()["data"][0]["vocab_size"]
    bodies = [{"items": long_items(vocab, seed)} for seed in range(3)]
    answers: dict[int, httpx.Response] = {}

    def send(k: int) -> None:
        answers[k] = httpx.post(server.url + URL, json=bodies[k], timeout=300)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    wait_until(lambda: inflight_requests(server.url) == 3, 60)
    server.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: ready_code(server.url) == (503, "draining"), 5)
    late = httpx.post(server.url + URL, json={"items": [{"prompt": "x", "completion": "1"}]})
    assert late.status_code == 503 and late.json()["error"]["code"] == "draining"
    for thread in threads:
        thread.join(timeout=300)
    assert server.proc.wait(timeout=120) == 0
    server.stop()
    # Every accepted request got a complete and correct answer.
    for k, body in enumerate(bodies):
        assert answers[k].status_code == 200, answers[k].text
        results = answers[k].json()["results"]
        assert len(results) == len(body["items"])
        batch = [
            ScoreInput(i["prompt_token_ids"], i["completion_token_ids"]) for i in body["items"]
        ]
        expected = asyncio.run(reference.score(batch, "ref"))
        assert expected.base is not None
        for result, sft, base in zip(results, expected.sft, expected.base, strict=True):
            assert np.max(np.abs(np.float32(result["rewards"]) - (sft - base))) <= 1e-5


@pytest.mark.vllm
def test_killed_engine_process_fails_fast_and_exits_non_zero(demo_dir: Path) -> None:
    server = ServiceProcess(backend="vllm", log_format="text", **pair_settings(demo_dir))
    server.wait_ready(600)
    vocab = httpx.get(server.url + "/v1/models").json()["data"][0]["vocab_size"]
    answer: dict[str, httpx.Response] = {}

    def send() -> None:
        body = {"items": long_items(vocab, 9) * 8}
        answer["response"] = httpx.post(server.url + URL, json=body, timeout=120)

    thread = threading.Thread(target=send)
    thread.start()
    wait_until(lambda: inflight_requests(server.url) == 1, 60)
    children = psutil.Process(server.proc.pid).children(recursive=True)
    engine_cores = [c for c in children if "EngineCore" in " ".join(c.cmdline()) + c.name()]
    assert engine_cores, [(c.name(), c.cmdline()) for c in children]
    killed_at = time.monotonic()
    engine_cores[0].kill()
    thread.join(timeout=120)
    response = answer["response"]
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "engine_unavailable"
    assert time.monotonic() - killed_at < 30  # failed fast, not a hang
    assert server.proc.wait(timeout=120) != 0
    server.stop()
