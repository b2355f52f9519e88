"""The comparisons derived from the figures (ratios, service overhead), the JSON text and the
plot of a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
