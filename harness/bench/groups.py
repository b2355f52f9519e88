"""`make bench-groups`: GRPO groups, cold and again, on every system side by side in one run.

    python -m harness groups [--shapes grpo_group long_group] [--requests N] [--repeats R]

Per system and group shape: closed-loop capacity (groups/s, 4 clients) over N groups never
sent before (first round: every prompt new to the server), then over the same N groups again
(second round: a trainer re-scoring its batch after an update), R times over fresh groups:
the figure is the median, reported beside min and max. Each group goes as one request
(`grpo_group`, `long_group`) or as trainers send it, one one-item request per sample, all in
flight at once (`grpo_one_sample`, `long_one_sample`; `long_distinct` is the same traffic with
16 distinct prompts: nothing to share). Systems: this service with prefix sharing (`service`),
the same service with the transformers engine (`service_transformers`), the service as it was
before prefix sharing (`service_unshared`: no cache reads, vLLM's block size 128), two `vllm
serve` servers given their best shot (`vllm_serve_pair`; one call per sample for one-sample
traffic), and the in-process transformers loop, plain (`transformers_loop`: each sequence
whole) and with the transformers engine's prompt sharing (`transformers_shared`); in process,
delivery does not apply to the loops. Rewards of every system are checked against the
service's.
Writes loadtest/results/groups-<UTC>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import load
from harness.bench import environment as env
from harness.bench.cli import (
    make_system,
    max_abs_diff,
    resolved_device,
    sampler,
    scoring_vocab,
    shared_settings,
)
from harness.bench.environment import log, shown
from harness.bench.options import parse_args
from harness.bench.systems import ServiceSystem, System
from harness.paths import RESULTS
from harness.workloads import SHAPES, Request, make_requests

SYSTEMS = (
    "service",
    "service_unshared",
    "service_transformers",
    "vllm_serve_pair",
    "transformers_loop",
    "transformers_shared",
)
GROUP_SHAPES = (
    "grpo_group",
    "grpo_one_sample",
    "long_group",
    "long_one_sample",
    "long_distinct",
)
# The service as it was before prefix sharing: every sequence prefilled whole.
UNSHARED_FLAGS = ["--no-prefix-sharing", "--block-size", "128"]
CONCURRENCY = 4


def group_system(name: str, args: argparse.Namespace, shared: dict[str, Any]) -> System:
    if name in ("service_unshared", "service_transformers"):
        unshared = name == "service_unshared"
        flags = [*args.service_flag, *(UNSHARED_FLAGS if unshared else [])]
        backend = "vllm" if unshared else "transformers"
        system = ServiceSystem(shared, flags, args.client, backend)
        system.name = name
        return system
    return make_system(name, args, shared, cpu=args.device != "cuda")


ROUNDS = ("first_round_rps", "second_round_rps")


def measure(system: System, pools: list[list[Request]]) -> dict[str, Any]:
    """Per pool: capacity over groups new to the server, then over the same groups again. The
    figure is the median over pools, beside the min/median/max spread and every value."""
    values: dict[str, list[float]] = {name: [] for name in ROUNDS}
    for requests in pools:
        for round_name in ROUNDS:
            # min_s 0: exactly the pool once (after its warm-up request), never a repeat in it.
            capacity = system.capacity(requests, CONCURRENCY, 0.0, len(requests) - 1)
            values[round_name].append(capacity)
    figures: dict[str, Any] = {name: statistics.median(v) for name, v in values.items()}
    figures["spread"] = {name: {**load.spread(v), "all": v} for name, v in values.items()}
    return figures


def run(args: argparse.Namespace, requests_per_round: int, repeats: int) -> dict[str, Any]:
    started = datetime.now(UTC)
    shared = shared_settings(args)
    vocab, _ = scoring_vocab(Path(shared["sft_model"]))
    # One pool of never-sent groups per repeat (each pool's first round is cold).
    workloads = {
        name: [
            make_requests(
                SHAPES[name], requests_per_round + 1, sampler(vocab, args.seed + i + 1000 * r)
            )
            for r in range(repeats)
        ]
        for i, name in enumerate(args.shapes)
    }
    report: dict[str, Any] = {
        **env.run_record("python -m harness groups", started),
        "config": {
            "shapes": {name: asdict(SHAPES[name]) for name in workloads},
            "requests_per_round": requests_per_round,
            "repeats": repeats,
            "concurrency": CONCURRENCY,
            "unshared_flags": UNSHARED_FLAGS,
            "seed": args.seed,
        },
        "systems": {},
        "equality": {},
    }
    reference: dict[str, Any] = {}
    for name in args.systems:
        system = group_system(name, args, shared)
        log(f"starting {name}")
        try:
            system.start()
            for pools in workloads.values():
                for requests in pools:
                    system.prepare(requests)
            for shape, pools in workloads.items():
                # A throwaway group for the equality check: the measured pool stays unseen.
                check = make_requests(SHAPES[shape], 1, sampler(vocab, args.seed + 99))[0]
                system.prepare([check])
                rewards = system.rewards(check)
                # The first system is the reference (the service, when it runs).
                if shape not in reference:
                    reference[shape] = rewards
                else:
                    report["equality"].setdefault(name, {})[shape] = max_abs_diff(
                        reference[shape], rewards
                    )
                figures = measure(system, pools)
                report["systems"].setdefault(name, {})[shape] = figures
                log(f" {name} {shape}: {json.dumps(figures['spread'])}")
            report.setdefault("server_config", {})[name] = system.describe()
        finally:
            system.stop()
    report["ratios"] = ratios(report["systems"])
    report["elapsed_s"] = (datetime.now(UTC) - started).total_seconds()
    return report


def ratios(systems: dict[str, Any]) -> dict[str, Any]:
    """The service's capacity over each other system's, per shape and round."""
    if "service" not in systems:
        return {}
    out: dict[str, Any] = {}
    for other, shapes in systems.items():
        if other == "service":
            continue
        for shape, figures in shapes.items():
            ours = systems["service"].get(shape, {})
            out.setdefault(f"service_over_{other}", {})[shape] = {
                key: round(ours[key] / figures[key], 3) for key in ROUNDS if figures.get(key)
            }
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=12, help="groups per round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of fresh groups")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--shapes", nargs="+", default=list(GROUP_SHAPES), choices=GROUP_SHAPES)
    own, rest = parser.parse_known_args(argv)
    args = parse_args(rest)  # the benchmark's other flags (--demo, --client, --device, ...)
    args.systems, args.shapes = own.systems, own.shapes
    args.device = resolved_device(args.device)
    report = run(args, own.requests, own.repeats)
    path = (args.output or RESULTS / f"groups-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {shown(path)}")
    print(json.dumps(report["ratios"], indent=2))
