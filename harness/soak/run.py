"""The soak's driver: a server (started here unless --url), Poisson arrivals of the mix, the
server's memory, what is left in flight afterwards, and a reference check of every reward."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from dense_reward_server.sequence import ScoreInput
from harness import load
from harness.paths import pair_settings
from harness.processes import tree_rss_bytes
from harness.servers import ServiceProcess, pooled_limits, vocab_size
from harness.soak.mix import LIMITS, MIX, Body, Mix, expected_status

ROUTE = "/v1/token_rewards"
# vLLM (CPU, fp32) against the transformers reference: measured max difference ~1.2e-5.
TOLERANCE = 1e-4


@dataclass
class Outcome:
    kind: str
    status: int  # 0: transport error; -1: we disconnected on purpose
    latency_s: float
    body: dict[str, Any] | None = None  # a valid request that was answered, to check
    response: dict[str, Any] | None = None
    error: str | None = None


async def send_drawn(
    client: httpx.AsyncClient, kind: str, body: Body, give_up_s: float | None
) -> list[Outcome]:
    """One drawn request; a list of bodies (one-sample traffic) all at once."""
    if isinstance(body, list):
        return list(await asyncio.gather(*(send(client, kind, b, None) for b in body)))
    return [await send(client, kind, body, give_up_s)]


async def send(
    client: httpx.AsyncClient, kind: str, body: dict[str, Any] | bytes, give_up_s: float | None
) -> Outcome:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    start = time.perf_counter()
    headers = {"content-type": "application/json"}
    try:
        if give_up_s is not None:
            # A client that hangs up mid-request, on a connection of its own as a separate
            # client would be: the server must abort the engine work.
            async with httpx.AsyncClient(base_url=client.base_url, timeout=600) as own:
                try:
                    response = await asyncio.wait_for(
                        own.post(ROUTE, content=content, headers=headers), timeout=give_up_s
                    )
                except TimeoutError:
                    return Outcome(kind, -1, time.perf_counter() - start)
        else:
            response = await client.post(ROUTE, content=content, headers=headers)
    except httpx.TransportError as error:
        return Outcome(kind, 0, time.perf_counter() - start, error=repr(error))
    latency = time.perf_counter() - start
    payload = response.json() if response.content else None
    kept = body if isinstance(body, dict) and response.status_code == 200 else None
    return Outcome(kind, response.status_code, latency, kept, payload)


class RssSampler:
    """Peak resident memory of the server process and all its children (the engines)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_bytes = 0

    def sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, tree_rss_bytes(self.process))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            await asyncio.sleep(0.5)


async def drive(
    url: str, rate: float, duration_s: float, seed: int, pid: int | None
) -> tuple[dict[str, Any], list[Outcome]]:
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=pooled_limits()) as client:
        mix = Mix(vocab_size((await client.get("/v1/models")).json()), seed)
        stop = asyncio.Event()
        sampler = RssSampler(pid) if pid is not None else None
        sampling = asyncio.create_task(sampler.run(stop)) if sampler else None
        arrivals = load.poisson_arrivals_within(rate, duration_s, seed + 1)
        # Each request is drawn when it is sent: the mix's order is the arrivals' order.
        results, elapsed = await load.open_loop(
            lambda _: send_drawn(client, *mix.draw()), arrivals.tolist(), drain_s=None
        )
        outcomes = [outcome for drawn in results if drawn is not None for outcome in drawn]
        stop.set()
        if sampling:
            await sampling
        ready = (await client.get("/ready")).status_code
        inflight = await inflight_after(client)
    report = summarize(outcomes, elapsed, rate, duration_s, seed)
    report["after"] = {"ready_status": ready, **inflight}
    report["peak_rss_mb"] = round(sampler.peak_bytes / 2**20, 1) if sampler else None
    return report, outcomes


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
    latencies = sorted(o.latency_s for o in outcomes if o.status == 200)
    return {
        "config": {"rate_per_s": rate, "duration_s": duration_s, "seed": seed, "mix": MIX},
        "limits": LIMITS,
        "elapsed_s": round(elapsed, 1),
        "sent": len(outcomes),
        "answered": len(latencies),
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
        "answered_latency_s": load.latency_summary(latencies),
    }


def scored_pairs(
    body: dict[str, Any], response: dict[str, Any]
) -> list[tuple[ScoreInput, dict[str, Any]]] | None:
    """Each sequence a request asked for, beside its result (None: results out of order, or a
    group answered with another number of completions)."""
    items, results = body["items"], response["results"]
    if [r["index"] for r in results] != list(range(len(items))):
        return None
    pairs = []
    for item, result in zip(items, results, strict=True):
        prompt = item["prompt_token_ids"]
        if "completions" in item:
            completions, members = item["completions"], result.get("completions", [])
            if len(members) != len(completions):
                return None
            pairs += [(ScoreInput(prompt, c), r) for c, r in zip(completions, members, strict=True)]
        else:
            pairs.append((ScoreInput(prompt, item["completion_token_ids"]), result))
    return pairs


def check_rewards(outcomes: list[Outcome], demo: Path) -> dict[str, Any]:
    """Score every answered sequence again with the transformers engine, each sequence whole
    (no prompt shared), and count the mismatches."""
    from dense_reward_server.config import Settings
    from dense_reward_server.engines.factory import load_engine_pair

    settings = Settings(backend="transformers", prefix_sharing=False, **pair_settings(demo))
    pair = load_engine_pair(settings).pair
    checked, mismatched, worst = 0, 0, 0.0
    try:
        for outcome in outcomes:
            if outcome.body is None or outcome.response is None:
                continue
            pairs = scored_pairs(outcome.body, outcome.response)
            if pairs is None:
                mismatched += len(outcome.body["items"])
                continue
            expected = asyncio.run(pair.score([seq for seq, _ in pairs], "soak-reference"))
            base = expected.base or [np.zeros_like(sft) for sft in expected.sft]
            for (seq, result), sft, base_logps in zip(pairs, expected.sft, base, strict=True):
                checked += 1
                got = np.asarray(result["rewards"], dtype=np.float32)
                if result["token_ids"] != list(seq.completion_ids) or got.shape != sft.shape:
                    mismatched += 1
                    continue
                diff = float(np.max(np.abs(got - (sft - base_logps))))
                worst = max(worst, diff)
                mismatched += diff > TOLERANCE
    finally:
        pair.shutdown()
    return {"checked_results": checked, "mismatched": mismatched, "max_abs_diff": worst}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """args: url (None: start a server), demo, backend, rate, duration_s, seed."""
    demo = Path(args.demo)
    server = None
    if args.url is None:
        server = ServiceProcess(
            name="soak-server",
            backend=args.backend,
            log_level="warning",
            **pair_settings(demo),
            **LIMITS,
        )
    try:
        if server is not None:
            server.wait_ready()
        url = server.url if server is not None else args.url
        pid = server.proc.pid if server is not None else None
        report, outcomes = asyncio.run(drive(url, args.rate, args.duration_s, args.seed, pid))
    finally:
        exit_status = server.stop() if server is not None else None
    if server is not None:
        report["server_exit_status"] = exit_status
    report.update(check_rewards(outcomes, demo))
    return report
