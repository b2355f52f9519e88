"""Soak test: open-loop load above saturation with valid, invalid and huge requests and abrupt
disconnects, against a real server process over loopback; every returned reward is checked.

    python loadtest/soak.py --duration-s 600 --rate 8          # by hand, minutes
    python loadtest/soak.py --url http://127.0.0.1:8000 ...     # against a running server

Without --url it starts `python -m service serve` (vLLM engines, the demo pair) with tight
admission limits so that load above saturation meets 429s, not an unbounded queue. Arrivals
are Poisson at --rate; each request is drawn from a fixed mix (seeded):

    valid       1-4 token-id items, lengths 1-200: must be answered (200) or refused (429)
    batch       16 items x 300 tokens: same, heavier
    invalid     an out-of-vocabulary id, a wrong-length mask, an empty or too-long completion: 422
    huge        over max_items_per_request, over max_tokens_per_request, over max_body_bytes: 413
    disconnect  a valid batch whose client gives up after 10-300 ms (the server must cancel it)

Afterwards every 200 answer's rewards are compared with a reference computed separately (the
transformers engine, in this process) and the server must still be ready with nothing in
flight. Report (JSON, --out): sent, answered, refused by status, failed (valid requests that
got anything but 200/429: must be 0), mismatched results (must be 0), disconnects, peak RSS of
the server and its engine processes, and the latency distribution of answered requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
URL = "/v1/token_rewards"
# The limits the soak server runs with: low enough that the mix reaches every one of them,
# on any machine: two 16 x 300-token batches in flight at once already pass the in-flight limit.
LIMITS = {
    "max_items_per_request": 32,
    "max_tokens_per_request": 8_000,
    "max_inflight_tokens": 8_000,
    "max_body_bytes": 256 * 1024,
}
# vLLM (CPU, fp32) against the transformers reference: measured max difference ~1.2e-5.
TOLERANCE = 1e-4
MIX = {"valid": 0.40, "batch": 0.20, "invalid": 0.15, "huge": 0.10, "disconnect": 0.15}


@dataclass
class Outcome:
    kind: str
    status: int  # 0: transport error; -1: we disconnected on purpose
    latency_s: float
    body: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Workload:
    vocab: int
    rng: random.Random
    counter: Counter[str] = field(default_factory=Counter)

    def ids(self, n: int) -> list[int]:
        return [self.rng.randrange(3, self.vocab) for _ in range(n)]

    def items(self, count: int, low: int, high: int) -> list[dict[str, Any]]:
        return [
            {
                "prompt_token_ids": self.ids(self.rng.randint(1, 40)),
                "completion_token_ids": self.ids(self.rng.randint(low, high)),
            }
            for _ in range(count)
        ]

    def draw(self) -> tuple[str, dict[str, Any] | bytes, float | None]:
        """A request of the mix, and for a disconnect how long its client waits."""
        kind, body = self._draw()
        give_up_s = self.rng.uniform(0.01, 0.3) if kind == "disconnect" else None
        return kind, body, give_up_s

    def _draw(self) -> tuple[str, dict[str, Any] | bytes]:
        kind = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        self.counter[kind] += 1
        if kind == "valid":
            return kind, {"items": self.items(self.rng.randint(1, 4), 1, 200)}
        if kind in ("batch", "disconnect"):
            return kind, {"items": self.items(16, 260, 300)}
        if kind == "invalid":
            return kind, self.invalid()
        return kind, self.huge()

    def invalid(self) -> dict[str, Any]:
        items = self.items(3, 1, 20)
        bad = self.rng.randrange(len(items))
        which = self.rng.choice(["vocab", "mask", "empty", "too_long"])
        if which == "vocab":
            items[bad]["completion_token_ids"][0] = self.vocab + 7
        elif which == "mask":
            items[bad]["mask"] = [1] * (len(items[bad]["completion_token_ids"]) + 1)
        elif which == "empty":
            items[bad]["completion_token_ids"] = []
        else:  # longer than the model allows: refused, never truncated
            items[bad]["completion_token_ids"] = self.ids(5000)
        return {"items": items}

    def huge(self) -> dict[str, Any] | bytes:
        which = self.rng.choice(["items", "tokens", "bytes"])
        if which == "items":
            return {"items": self.items(LIMITS["max_items_per_request"] + 1, 1, 4)}
        if which == "tokens":
            # Every item fits the model; together they are over the per-request token limit.
            return {"items": self.items(13, 960, 1000)}
        # Valid JSON, far over the byte limit: refused before it is parsed.
        return json.dumps({"items": self.items(1, 1, 4), "pad": "x" * 400_000}).encode()


async def send(
    client: httpx.AsyncClient, kind: str, body: dict[str, Any] | bytes, give_up_s: float | None
) -> Outcome:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    start = time.perf_counter()
    try:
        request = client.post(URL, content=content, headers={"content-type": "application/json"})
        if give_up_s is not None:
            # Closing the connection mid-request: the server must abort the engine work.
            try:
                response = await asyncio.wait_for(request, timeout=give_up_s)
            except TimeoutError:
                return Outcome(kind, -1, time.perf_counter() - start)
        else:
            response = await request
    except httpx.TransportError as error:
        return Outcome(kind, 0, time.perf_counter() - start, error=repr(error))
    latency = time.perf_counter() - start
    payload = response.json() if response.content else None
    kept = body if isinstance(body, dict) and response.status_code == 200 else None
    return Outcome(kind, response.status_code, latency, kept, payload)


def expected_status(kind: str, status: int) -> bool:
    """May this kind of request get this answer?"""
    if kind in ("valid", "batch"):
        return status in (200, 429)
    if kind == "disconnect":
        return status in (-1, 200, 429)
    if kind == "invalid":
        return status == 422
    return status == 413  # huge


class RssSampler:
    """Peak resident memory of the server process and all its children (the engines)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_bytes = 0

    def sample(self) -> None:
        try:
            procs = [self.process, *self.process.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        self.peak_bytes = max(self.peak_bytes, total)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            await asyncio.sleep(0.5)


async def drive(
    url: str, rate: float, duration_s: float, seed: int, pid: int | None
) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=url, timeout=600, limits=httpx.Limits(max_connections=None)
    ) as client:
        vocab = int((await client.get("/v1/models")).json()["data"][0]["vocab_size"])
        workload = Workload(vocab, random.Random(seed))
        arrivals = random.Random(seed + 1)
        stop = asyncio.Event()
        sampler = RssSampler(pid) if pid is not None else None
        sampling = asyncio.create_task(sampler.run(stop)) if sampler else None
        tasks: list[asyncio.Task[Outcome]] = []
        start = time.perf_counter()
        next_at = start
        while next_at - start < duration_s:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            kind, body, give_up_s = workload.draw()
            tasks.append(asyncio.create_task(send(client, kind, body, give_up_s)))
            next_at += arrivals.expovariate(rate)  # open loop: never waits for answers
        outcomes = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
        stop.set()
        if sampling:
            await sampling
        ready = (await client.get("/ready")).status_code
        inflight = await inflight_after(client)
    report = summarize(outcomes, elapsed, rate, duration_s, seed)
    report["after"] = {"ready_status": ready, **inflight}
    report["peak_rss_mb"] = round(sampler.peak_bytes / 2**20, 1) if sampler else None
    report["_outcomes"] = outcomes
    return report


async def inflight_after(client: httpx.AsyncClient) -> dict[str, float]:
    """In-flight requests and tokens, once cancelled work has had a moment to be aborted."""
    values: dict[str, float] = {}
    for _ in range(50):
        text = (await client.get("/metrics")).text
        values = {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith(("drs_inflight_requests ", "drs_inflight_tokens "))
        }
        if not any(values.values()):
            break
        await asyncio.sleep(0.2)
    return values


def summarize(
    outcomes: list[Outcome], elapsed: float, rate: float, duration_s: float, seed: int
) -> dict[str, Any]:
    statuses: dict[str, Counter[int]] = {}
    for outcome in outcomes:
        statuses.setdefault(outcome.kind, Counter())[outcome.status] += 1
    failed = [o for o in outcomes if not expected_status(o.kind, o.status)]
    answered = [o for o in outcomes if o.status == 200]
    latencies = sorted(o.latency_s for o in answered)
    return {
        "config": {"rate_per_s": rate, "duration_s": duration_s, "seed": seed, "mix": MIX},
        "limits": LIMITS,
        "elapsed_s": round(elapsed, 1),
        "sent": len(outcomes),
        "answered": len(answered),
        "refused": {
            str(code): sum(1 for o in outcomes if o.status == code) for code in (413, 422, 429)
        },
        "disconnected": sum(1 for o in outcomes if o.status == -1),
        "failed": len(failed),
        "failures": [
            {"kind": o.kind, "status": o.status, "error": o.error or o.response}
            for o in failed[:10]
        ],
        "by_kind": {
            kind: {str(k): v for k, v in sorted(c.items())} for kind, c in statuses.items()
        },
        "answered_latency_s": {
            "p50": round(statistics.median(latencies), 3) if latencies else None,
            "p99": round(latencies[int(0.99 * (len(latencies) - 1))], 3) if latencies else None,
        },
    }


def check_rewards(outcomes: list[Outcome], sft_dir: Path, base_dir: Path) -> dict[str, Any]:
    """Score every answered item again with the transformers engine; count the mismatches."""
    from service.config import Settings
    from service.engines.base import ScoreInput
    from service.engines.factory import load_engine_pair

    settings = Settings(backend="transformers", sft_model=str(sft_dir), base_model=str(base_dir))
    pair = load_engine_pair(settings).pair
    checked, mismatched, worst = 0, 0, 0.0
    try:
        for outcome in outcomes:
            if outcome.body is None or outcome.response is None:
                continue
            items = outcome.body["items"]
            results = outcome.response["results"]
            if len(results) != len(items) or [r["index"] for r in results] != list(
                range(len(items))
            ):
                mismatched += len(items)
                continue
            batch = [ScoreInput(i["prompt_token_ids"], i["completion_token_ids"]) for i in items]
            expected = asyncio.run(pair.score(batch, "soak-reference"))
            for result, item, sft, base in zip(
                results, items, expected.sft, expected.base, strict=True
            ):
                checked += 1
                got = np.asarray(result["rewards"], dtype=np.float32)
                if result["token_ids"] != item["completion_token_ids"] or got.shape != sft.shape:
                    mismatched += 1
                    continue
                diff = float(np.max(np.abs(got - (sft - base))))
                worst = max(worst, diff)
                mismatched += diff > TOLERANCE
    finally:
        asyncio.run(pair.shutdown())
    return {"checked_results": checked, "mismatched": mismatched, "max_abs_diff": worst}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(demo: Path, backend: str, port: int) -> subprocess.Popen[bytes]:
    args = [
        sys.executable, "-m", "service", "serve", "--port", str(port),
        "--backend", backend,
        "--sft-model", str(demo / "sft"), "--base-model", str(demo / "base"),
        "--log-level", "warning",
    ]  # fmt: skip
    for name, value in LIMITS.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise RuntimeError("the server was not ready in time")


def run(args: argparse.Namespace) -> dict[str, Any]:
    demo = Path(args.demo)
    proc = None
    url = args.url
    if url is None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(demo, args.backend, port)
    try:
        if proc is not None:
            wait_ready(url, proc)
        pid = proc.pid if proc is not None else None
        report = asyncio.run(drive(url, args.rate, args.duration_s, args.seed, pid))
    finally:
        if proc is not None:
            proc.terminate()
            report_exit = proc.wait(timeout=120)
    outcomes = report.pop("_outcomes")
    if proc is not None:
        report["server_exit_status"] = report_exit
    report.update(check_rewards(outcomes, demo / "sft", demo / "base"))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="a running server (default: start one)")
    parser.add_argument("--demo", default=str(ROOT / ".models" / "demo"))
    parser.add_argument("--backend", default="vllm", choices=["vllm", "transformers"])
    parser.add_argument("--rate", type=float, default=8.0, help="offered requests per second")
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON report path")
    args = parser.parse_args()
    report = run(args)
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    ok = report["failed"] == 0 and report["mismatched"] == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
