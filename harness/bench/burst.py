"""`python -m harness burst`: a whole batch of one-sample requests in flight, against the same
items as one request, with /health probed throughout, per engine.

    python -m harness burst [--backends vllm transformers] [--items 200] [--rounds 5]
                            [--clients aiohttp httpx]

verl's reward loop (and OpenRLHF's remote reward model, slime, AReaL) sends every sample of a
step in its own request, all at once. Per backend: first, lone requests (32 + 96 tokens) one at
a time, 50 ms apart, what a request at zero load costs (p50/p90/max); then per round, one
request of N fresh items (64 + 192 tokens each), then N fresh one-item requests sent at once by
each client while /health is asked every 100 ms as the kubelet would (5 s timeout); the burst
over the batched time is the figure (min/median/max over rounds). CPU seconds of the server's
processes (the API process, each engine's core and worker) in each phase size the pod's CPU
request. Both clients run because the client itself is part of what a burst costs on a small
machine (httpx takes ~17x aiohttp's CPU per request, measured here too with 200 concurrent GET
/health; httpx is what `dense_reward_client` uses).
Writes loadtest/results/burst-<UTC>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import psutil

from harness import load
from harness.bench import environment as env
from harness.bench.clients import Client, make_client
from harness.bench.environment import log, shown
from harness.paths import RESULTS, pair_settings
from harness.servers import ServiceProcess

HEALTH_TIMEOUT_S = 5.0  # k8s/base/deployment.yaml's livenessProbe timeoutSeconds
HEALTH_EVERY_S = 0.1
LONE_GAP_S = 0.05  # between lone requests: the engines go idle
T = TypeVar("T")


def items(rng: random.Random, count: int) -> list[dict[str, Any]]:
    return [
        {
            "prompt_token_ids": [1, *(rng.randrange(3, 1000) for _ in range(63))],
            "completion_token_ids": [rng.randrange(3, 1000) for _ in range(192)],
        }
        for _ in range(count)
    ]


class CpuMeter:
    """CPU seconds of a process tree, per process name, between `start()` and `stop()`."""

    def __init__(self, pid: int) -> None:
        root = psutil.Process(pid)
        self.procs = [root, *root.children(recursive=True)]
        self.before: dict[int, float] = {}

    @staticmethod
    def seconds(proc: psutil.Process) -> float:
        times = proc.cpu_times()
        return float(times.user + times.system)

    def start(self) -> None:
        self.before = {p.pid: self.seconds(p) for p in self.procs}

    def stop(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for proc in self.procs:
            name = "api" if proc.pid == self.procs[0].pid else proc.name()
            used[name] = used.get(name, 0.0) + self.seconds(proc) - self.before[proc.pid]
        return {name: round(value, 2) for name, value in used.items()}


async def probe_health(url: str, stop: asyncio.Event, seen: list[float]) -> None:
    """GET /health every 100 ms: each probe's seconds (HEALTH_TIMEOUT_S + 1 if unanswered)."""
    async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S) as http:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                ok = (await http.get(url + "/health")).status_code == 200
            except httpx.TransportError:
                ok = False
            seen.append(time.perf_counter() - started if ok else HEALTH_TIMEOUT_S + 1)
            await asyncio.sleep(HEALTH_EVERY_S)


async def probed(url: str, work: Awaitable[T]) -> tuple[T, list[float]]:
    """`work`'s result, and the seconds of each /health probe made while it ran."""
    health: list[float] = []
    stop = asyncio.Event()
    prober = asyncio.create_task(probe_health(url, stop, health))
    try:
        return await work, health
    finally:
        stop.set()
        await prober


async def send_all(client: Client, url: str, bodies: list[bytes]) -> tuple[float, list[bytes]]:
    """All bodies at once: seconds until the last answer, and the answers (each must be 200)."""
    started = time.perf_counter()
    answers = await asyncio.gather(*(client.post(url, body) for body in bodies))
    elapsed = time.perf_counter() - started
    bad = [status for status, _, _ in answers if status != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} requests failed, statuses {sorted(set(bad))}")
    return elapsed, [content for _, _, content in answers]


def own_cpu_s() -> float:
    """CPU seconds this process (the load generator and the prober) has used."""
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


async def one_round(
    server: ServiceProcess, client_kind: str, count: int, rng: random.Random
) -> dict[str, Any]:
    url = server.url + "/v1/token_rewards"
    meter = CpuMeter(server.proc.pid)
    client = make_client(client_kind)
    try:
        meter.start()
        batched, _ = await send_all(client, url, [orjson.dumps({"items": items(rng, count)})])
        batched_cpu = meter.stop()
        bodies = [orjson.dumps({"items": [item]}) for item in items(rng, count)]
        client_cpu = own_cpu_s()
        meter.start()
        (burst, _), health = await probed(server.url, send_all(client, url, bodies))
        burst_cpu = meter.stop()
        client_cpu = own_cpu_s() - client_cpu
    finally:
        await client.close()
    return {
        "batched_s": round(batched, 3),
        "burst_s": round(burst, 3),
        "ratio": round(burst / batched, 3),
        "health_max_s": round(max(health), 3),
        "health_probes": len(health),
        "cpu_s_batched": batched_cpu,
        "cpu_s_burst": burst_cpu,
        # This process: the load generator and the prober.
        "client_cpu_s_burst": round(client_cpu, 2),
    }


async def lone_latency(server: ServiceProcess, count: int, gap_s: float) -> dict[str, float]:
    """One single-shape request (32 + 96 tokens) at a time, `gap_s` apart (the engines idle in
    between, as at zero load): p50/p90/max in ms."""
    rng = random.Random(7)
    url = server.url + "/v1/token_rewards"
    client = make_client("aiohttp")
    latencies = []
    try:
        for _ in range(count + 5):  # the first 5 are a warm-up
            item = {
                "prompt_token_ids": [rng.randrange(3, 1000) for _ in range(32)],
                "completion_token_ids": [rng.randrange(3, 1000) for _ in range(96)],
            }
            elapsed, _ = await send_all(client, url, [orjson.dumps({"items": [item]})])
            latencies.append(elapsed)
            await asyncio.sleep(gap_s)
    finally:
        await client.close()
    summary = load.latency_summary(latencies[5:])
    return {
        "p50_ms": round(1000 * (summary["p50"] or 0), 1),
        "p90_ms": round(1000 * (summary["p90"] or 0), 1),
        "max_ms": round(1000 * max(latencies[5:]), 1),
    }


async def client_cost(url: str, kind: str, count: int = 200) -> dict[str, float]:
    """`count` concurrent GET /health from a fresh client: wall and this process's CPU seconds
    (the server does next to nothing: what is measured is the client)."""
    started, cpu = time.perf_counter(), own_cpu_s()
    client = make_client(kind)
    try:
        await asyncio.gather(*(client.get(url + "/health") for _ in range(count)))
    finally:
        await client.close()
    used = own_cpu_s() - cpu
    return {"wall_s": round(time.perf_counter() - started, 3), "cpu_s": round(used, 3)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        **env.run_record("python -m harness burst", started),
        "config": {
            "items": args.items,
            "item_tokens": "64 + 192",
            "rounds": args.rounds,
            "clients": args.clients,
            "lone_requests": args.lone,
            "lone_gap_s": LONE_GAP_S,
            "health_every_s": HEALTH_EVERY_S,
            "health_timeout_s": HEALTH_TIMEOUT_S,
        },
        "backends": {},
    }
    rng = random.Random(args.seed)
    for backend in args.backends:
        server = ServiceProcess(
            name=f"burst-{backend}",
            backend=backend,
            log_level="warning",
            **pair_settings(args.demo),
        )
        log(f"starting the {backend} server")
        try:
            server.wait_ready()
            lone = asyncio.run(lone_latency(server, args.lone, LONE_GAP_S))
            log(f" {backend} lone request: {json.dumps(lone)}")
            report["backends"].setdefault(backend, {})["lone"] = lone
            costs = {kind: asyncio.run(client_cost(server.url, kind)) for kind in args.clients}
            log(f" 200 concurrent GET /health, per client: {json.dumps(costs)}")
            report["client_cost"] = costs
            asyncio.run(one_round(server, "aiohttp", 16, rng))  # warm-up
            for client_kind in args.clients:
                rounds = [
                    asyncio.run(one_round(server, client_kind, args.items, rng))
                    for _ in range(args.rounds)
                ]
                for r in rounds:
                    shown_keys = ("batched_s", "burst_s", "ratio", "health_max_s")
                    log(f" {backend} {client_kind}: {json.dumps({k: r[k] for k in shown_keys})}")
                report["backends"].setdefault(backend, {})[client_kind] = {
                    "ratio": load.spread([r["ratio"] for r in rounds]),
                    "health_max_s": load.spread([r["health_max_s"] for r in rounds]),
                    "rounds": rounds,
                }
        finally:
            server.stop()
    report["elapsed_s"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    return report


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", nargs="+", default=["vllm", "transformers"])
    parser.add_argument("--clients", nargs="+", default=["aiohttp", "httpx"])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lone", type=int, default=40, help="lone requests, one at a time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--demo", type=Path, default=Path(".models/demo"))
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    report = run(args)
    path = args.output or RESULTS / f"burst-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {shown(path)}")
    summary = {
        backend: {
            client: v if client == "lone" else {k: v[k] for k in ("ratio", "health_max_s")}
            for client, v in kinds.items()
        }
        for backend, kinds in report["backends"].items()
    }
    print(json.dumps(summary, indent=2))
