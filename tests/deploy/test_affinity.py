"""Prompt affinity across replicas: the real nginx (deploy/nginx/, `make tools`) in front of two
real replicas (the transformers backend on the demo pair), over loopback.

Every scoring request of dense_reward_client carries `X-DRS-Prompt-Key` (16 hex digits of its
first item's prompt). nginx hashes it consistently, so a GRPO group (one prompt, K requests)
lands on one replica, whose prefix cache then holds the prompt. Requests without the header
(OpenRLHF's own client) are balanced round robin over all replicas. A replica that stops is
taken over by the other one, and nginx retries the POSTs it could not finish there.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from dense_reward_client.routing import PROMPT_KEY_HEADER, routing_headers

from harness.balancer import Nginx, find_nginx
from harness.paths import pair_settings
from harness.servers import ServiceProcess
from harness.tools import ToolMissing

ROUTE = "/v1/token_rewards"
K = 4  # requests per group
# Concurrent requests are scored together: other padding and shapes round float32 differently
# (seen: 2e-6). The same tolerance as tests/api/test_server.py.
TOLERANCE = 1e-5


def nginx_missing() -> str | None:
    try:
        find_nginx()
    except ToolMissing as error:
        return str(error)
    return None


MISSING = nginx_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def prompt(n: int) -> str:
    return f"Question {n}: what is {n} + {n * 7 % 13}?"


def body(n: int, sample: int) -> dict[str, Any]:
    """Sample `sample` of group `n`: one item, the group's prompt, its own completion."""
    completion = f" It is {n + sample}, sample {sample}."
    return {"items": [{"prompt": prompt(n), "completion": completion}]}


def rewards(response: httpx.Response) -> list[list[float]]:
    assert response.status_code == 200, response.text
    return [result["rewards"] for result in response.json()["results"]]


def assert_same(got: list[list[float]], expected: list[list[float]]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOLERANCE)


def scored(url: str) -> int:
    """Scoring requests this replica has answered (drs_requests_total, every status)."""
    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("drs_requests_total{") and f'route="{ROUTE}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


@dataclass
class Balanced:
    replicas: list[ServiceProcess]
    nginx: Nginx
    client: httpx.Client

    def counts(self) -> list[int]:
        return [scored(replica.url) for replica in self.replicas]

    def post(self, payload: dict[str, Any], *, keyed: bool = True) -> httpx.Response:
        """Through nginx, with the header dense_reward_client sends (or none)."""
        headers = routing_headers(payload["items"]) if keyed else {}
        assert (PROMPT_KEY_HEADER in headers) == keyed
        return self.client.post(self.nginx.url + ROUTE, json=payload, headers=headers)

    def send_group(self, bodies: Sequence[dict[str, Any]]) -> list[httpx.Response]:
        """The group's requests at once, as a GRPO trainer sends them."""
        with ThreadPoolExecutor(len(bodies)) as pool:
            return list(pool.map(self.post, bodies))


@contextmanager
def balanced_pair(demo_dir: Path, name: str) -> Iterator[Balanced]:
    """Two replicas (loading side by side, ~7 s on 2 cores) behind nginx."""
    with ExitStack() as stack:
        replicas = []
        for index in range(2):
            replica = ServiceProcess(
                name=f"{name}-replica-{index}",
                backend="transformers",
                log_format="text",
                **pair_settings(demo_dir),
            )
            stack.callback(replica.stop)
            replicas.append(replica)
        for replica in replicas:
            replica.wait_ready(300)
        nginx = stack.enter_context(Nginx([r.url for r in replicas], name=f"{name}-nginx"))
        client = stack.enter_context(httpx.Client(timeout=120))
        yield Balanced(replicas, nginx, client)


@pytest.fixture(scope="module")
def pair(demo_dir: Path) -> Iterator[Balanced]:
    with balanced_pair(demo_dir, "affinity") as balanced:
        yield balanced


def test_each_group_goes_to_one_replica_and_stays(pair: Balanced) -> None:
    owners: dict[int, int] = {}
    for n in range(8):
        before = pair.counts()
        for response in pair.send_group([body(n, s) for s in range(K)]):
            rewards(response)
        deltas = [after - b for after, b in zip(pair.counts(), before, strict=True)]
        assert sorted(deltas) == [0, K], f"group {n} split over the replicas: {deltas}"
        owners[n] = deltas.index(K)
    # A second round of each prompt goes where the first went (its prefix is cached there).
    for n, owner in owners.items():
        before = pair.counts()
        rewards(pair.post(body(n, K)))
        deltas = [after - b for after, b in zip(pair.counts(), before, strict=True)]
        assert deltas.index(1) == owner, f"group {n} moved: {deltas}"


def test_keys_spread_over_both_replicas(pair: Balanced) -> None:
    # Which replica a key hashes to depends on the replicas' (random) ports, so no fixed key
    # has a known owner. With 32 keys, all on one replica has odds of about 2**-31 (for an even
    # split of the hash ring; 160 points per replica keep it near even).
    before = pair.counts()
    for n in range(100, 132):
        rewards(pair.post(body(n, 0)))
    deltas = [after - b for after, b in zip(pair.counts(), before, strict=True)]
    assert sum(deltas) == 32 and min(deltas) > 0, deltas


def test_requests_without_key_are_round_robin(pair: Balanced) -> None:
    # An empty hash key falls back to round robin (nginx >= 1.17.1; see the template). One
    # worker, equal weights: nginx's smooth round robin alternates, hence exactly 4 and 4.
    before = pair.counts()
    for n in range(8):
        rewards(pair.post(body(n, 0), keyed=False))
    deltas = [after - b for after, b in zip(pair.counts(), before, strict=True)]
    assert deltas == [4, 4], deltas


def test_answers_through_nginx_equal_direct_answers(pair: Balanced) -> None:
    payloads = [body(n, s) for n in range(3) for s in range(2)]
    # A request of several items: the key is its first item's prompt.
    payloads.append({"items": [body(0, 5)["items"][0], body(1, 5)["items"][0]]})
    for payload in payloads:
        through = rewards(pair.post(payload))
        for replica in pair.replicas:
            direct = rewards(pair.client.post(replica.url + ROUTE, json=payload))
            assert_same(through, direct)


def score_with_retries(balanced: Balanced, payload: dict[str, Any]) -> tuple[int, Any]:
    """(attempts, rewards): a client's retries on transport errors, 502 and 503."""
    for attempt in range(1, 6):
        try:
            response = balanced.post(payload)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code in (502, 503):
            time.sleep(0.2)
            continue
        return attempt, rewards(response)
    raise AssertionError(f"no answer after 5 attempts: {payload}")


def test_replica_stopped_mid_run_every_request_answers(demo_dir: Path) -> None:
    with balanced_pair(demo_dir, "affinity-failover") as balanced:
        groups = range(8)
        payloads = [body(n, s) for n in groups for s in range(K)]
        reference = [rewards(balanced.post(payload)) for payload in payloads]
        # Stop the replica holding more of the keys: some of the stream must move.
        counts = balanced.counts()
        victim = counts.index(max(counts))
        survivor = balanced.replicas[1 - victim]

        answered: list[tuple[int, int, Any]] = []  # (payload index, attempts, rewards)
        lock = threading.Lock()
        stop_sending = threading.Event()
        indices = itertools.cycle(range(len(payloads)))

        def sender() -> None:
            while not stop_sending.is_set():
                with lock:
                    index = next(indices)
                attempts, result = score_with_retries(balanced, payloads[index])
                with lock:
                    answered.append((index, attempts, result))

        def answered_count() -> int:
            with lock:
                return len(answered)

        with ThreadPoolExecutor(4) as pool:
            senders = [pool.submit(sender) for _ in range(4)]
            while answered_count() < len(payloads) and all(not s.done() for s in senders):
                time.sleep(0.05)
            # SIGTERM: the replica drains (503 to new requests), then exits.
            assert balanced.replicas[victim].stop() == 0
            stopped_at = answered_count()
            while answered_count() < stopped_at + len(payloads):
                if any(s.done() for s in senders):
                    break
                time.sleep(0.05)
            stop_sending.set()
            for future in senders:
                future.result()  # a sender's AssertionError fails the test here

        assert len(answered) >= stopped_at + len(payloads)
        for index, _attempts, result in answered:
            assert_same(result, reference[index])
        # nginx retried the refused and the drained (503) POSTs itself (non_idempotent); the
        # client's own retries were never needed.
        retries = sum(attempts - 1 for _index, attempts, _result in answered)
        assert retries == 0, f"{retries} client retries over {len(answered)} requests"
        # Every group answers after the stop, from the survivor.
        for payload, expected in zip(payloads, reference, strict=True):
            assert_same(rewards(balanced.post(payload)), expected)
        assert survivor.alive()
        # nginx itself moved requests from the stopped replica to the survivor: the access
        # log's `upstream=A, B` (tried A, answered by B).
        moved = [
            line
            for line in balanced.nginx.access_log()
            if " upstream=" in line and ", " in line.split(" upstream=")[1]
        ]
        assert moved, "nginx retried nothing on the survivor"
