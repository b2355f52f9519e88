"""Per system and shape: closed-loop calibration, then an open-loop sweep at fractions of the
capacity; each point's figures and the peak (loadtest/README.md, "Figures")."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.bench.drive import Record
from harness.bench.environment import log
from harness.bench.systems import System
from harness.load import latency_summary, poisson_arrivals
from harness.workloads import SHAPES, Request


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


def rate_between(times: list[float], fallback: float) -> float:
    """Events per second between the first and the last event: (n - 1) / span."""
    if len(times) < 2 or max(times) <= min(times):
        return fallback
    return (len(times) - 1) / (max(times) - min(times))


def summarize(records: list[Record], offered_rps: float, load: float) -> dict[str, Any]:
    ok = [r for r in records if r.status == 200]
    lat = latency_summary([r.latency for r in ok])
    server = [r.server_ms for r in ok if r.server_ms is not None]
    engine = [r.engine_ms for r in ok if r.engine_ms is not None]
    # Offered and achieved are measured the same way, arrivals vs completions, first to last:
    # "completions / (last finish - first arrival)" would charge one latency to the system,
    # a large bias when the latency is a good part of the window (rl_batch).
    realized = rate_between([r.arrival for r in records], offered_rps)
    achieved = rate_between([r.finish for r in ok], 0.0) if len(ok) > 1 else 0.0
    mean_tokens = float(np.mean([r.scored_tokens for r in ok])) if ok else 0.0
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
        "scored_tokens_per_s": achieved * mean_tokens,
        # NaN when nothing was answered (the point is then not sustained).
        **{f"latency_{name}_s": math.nan if v is None else v for name, v in lat.items()},
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
        overhead = point["server_ms_mean"] - point["engine_ms_mean"]
        point["server_overhead_of_engine"] = overhead / point["engine_ms_mean"]
    point["sustained"] = achieved >= 0.9 * realized and len(ok) >= 0.99 * len(records)
    # Raw records (arrival, latency, status, scored tokens, x-total-time ms, x-engine-time ms)
    # for --reanalyze.
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


def records_of(point: dict[str, Any]) -> list[Record]:
    """The inverse of a point's "records" (for --reanalyze)."""
    return [
        Record(arrival, arrival + latency, status, tokens, *timings)
        for arrival, latency, status, tokens, *timings in point["records"]
    ]


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


def sweep(
    system: System, requests: list[Request], capacity: float, cfg: SweepConfig, seed: int
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
        point = summarize(system.open_loop(requests, arrivals, drain), rate, load)
        points.append(point)
        log(
            f"  {system.name} load {load:.2f} ({rate:.3g} rps, n={n}): achieved "
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
            log(f"  {system.name}: saturated; skipping loads {loads[k:]}")
            break
    return points


def bench_system(
    system: System, workloads: dict[str, list[Request]], cfg: SweepConfig, seed: int
) -> dict[str, Any]:
    """Calibration, sweep and peak of every shape, for any system."""
    out: dict[str, Any] = {}
    for shape, requests in workloads.items():
        capacity = system.capacity(requests, cfg.calib_concurrency, cfg.calib_s, cfg.calib_requests)
        log(f" {system.name} {shape}: calibrated capacity {capacity:.3g} rps")
        points = sweep(system, requests, capacity, cfg, seed)
        slo = SHAPES[shape].p99_slo_s
        out[shape] = {"capacity_rps": capacity, "points": points, "peak": peak(points, slo)}
    return out
