"""`python -m harness bench`: runs the systems one after another and writes the report."""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import signal
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from dense_reward_server.config import Settings
from dense_reward_server.engines.options import vllm_options
from harness.bench import environment as env
from harness.bench import mfu
from harness.bench.environment import log, shown
from harness.bench.options import parse_args
from harness.bench.report import dumps, plot, ratios, service_overhead
from harness.bench.sweep import SweepConfig, bench_system, peak, records_of, summarize
from harness.bench.systems import System
from harness.paths import RESULTS
from harness.workloads import SHAPES, Request, TokenSampler, make_requests


def scoring_vocab(model_dir: Path) -> tuple[list[int], int]:
    """Token ids to draw from (special ids left out) and the models' context length."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    special = set(tokenizer.all_special_ids)
    vocab = [i for i in range(int(config.vocab_size)) if i not in special]
    return vocab, int(config.max_position_embeddings)


def sampler(vocab: list[int], seed: int) -> TokenSampler:
    return TokenSampler(vocab, random.Random(seed))


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (no CUDA context is created)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolved_device(device: str) -> str:
    """`auto`: cuda where torch sees a GPU, else cpu."""
    if device != "auto":
        return device
    return "cuda" if cuda_available() else "cpu"


def shared_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings every system is configured from: the service gets them as `serve` flags,
    the peers through the service's own engine options."""
    values = {
        "sft_model": str(args.sft or args.demo / "sft"),
        "base_model": str(args.base or args.demo / "base"),
        "dtype": args.dtype,
        "gpu_memory_utilization": args.gpu_memory_utilization,
    }
    return {name: value for name, value in values.items() if value is not None}


def peer_settings(args: argparse.Namespace, shared: dict[str, Any]) -> Settings:
    engine_args: dict[str, Any] = {}
    if args.peer_enforce_eager != "auto":
        engine_args["enforce_eager"] = args.peer_enforce_eager == "yes"
    if args.peer_detokenize:
        engine_args["skip_tokenizer_init"] = False
    return Settings(**shared, engine_args=engine_args)


def make_system(name: str, args: argparse.Namespace, shared: dict[str, Any], cpu: bool) -> System:
    if name == "service":
        from harness.bench.systems import ServiceSystem

        return ServiceSystem(shared, list(args.service_flag), args.client)
    if name == "vllm_serve_pair":
        from harness.bench.peer import VllmServePair

        return VllmServePair(peer_settings(args, shared), args.peer_mode, cpu, args.client)
    from harness.bench.loop import TransformersLoop

    # The plain loop a user writes: every sequence whole. `transformers_shared` (bench groups)
    # is the same engine computing a shared prompt once.
    settings = Settings(
        **shared,
        backend="transformers",
        device="cpu" if cpu else "cuda",
        hf_max_batch_tokens=args.hf_max_batch_tokens,
        prefix_sharing=name == "transformers_shared",
    )
    loop = TransformersLoop(settings, args.hf_threads)
    loop.name = name
    return loop


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(max(np.max(np.abs(x - y)) for x, y in zip(a, b, strict=True)))


def new_report(
    args: argparse.Namespace,
    started: datetime,
    workloads: dict[str, list[Request]],
    vocab: list[int],
    context: int,
    cfg: SweepConfig,
    device: str,
    shared: dict[str, Any],
) -> dict[str, Any]:
    peer = vllm_options(
        peer_settings(args, shared), "sft", shared["sft_model"], None, cpu=device == "cpu"
    )
    report: dict[str, Any] = {
        **env.run_record("python -m harness bench", started),
        "config": {
            "quick": args.quick,
            "shapes": {name: asdict(SHAPES[name]) for name in workloads},
            "variants_per_shape": args.variants,
            "vocab_drawn_from": len(vocab),
            "context": context,
            "sweep": asdict(cfg),
            "seed": args.seed,
            "client": args.client,
            "models": {"sft": shared["sft_model"], "base": shared["base_model"]},
            "device": device,
            "dtype": {
                "service": args.dtype or "auto (service default)",
                "peers": peer.engine_args["dtype"],
            },
        },
        "systems": {},
        "server_config": {},
        "equality": {},
    }
    if device == "cuda":
        report["machine"]["gpu"] = env.gpu_info()
    if args.peak_tflops or args.measure_peak:
        models = [mfu.model_flops(Path(shared[key])) for key in ("sft_model", "base_model")]
        measured = mfu.measure_peak(device) if args.measure_peak else None
        if measured:
            log(f"matmul peak: {measured['tflops']} TFLOP/s ({measured['dtype']})")
        report["config"]["mfu"] = {
            "peak_tflops": args.peak_tflops or (measured or {})["tflops"],
            "peak_source": "--peak-tflops" if args.peak_tflops else "matmul_peak.py",
            "matmul_peak": measured,
            "formula": mfu.MFU_FORMULA,
            "models": models,
            "embeddings": "input embedding excluded (a lookup); LM head included",
            "shapes": {name: mfu.shape_flops(models, reqs) for name, reqs in workloads.items()},
        }
    return report


def derive(report: dict[str, Any]) -> None:
    """The figures computed from the systems' results."""
    report["ratios"] = ratios(report["systems"])
    report["service_overhead"] = service_overhead(report["systems"])
    if report["config"].get("mfu"):
        report["mfu"] = mfu.mfu_report(report)


def reanalyze(path: Path) -> None:
    """Derived figures from the recorded points, so a changed definition needs no rerun."""
    report = json.loads(path.read_text())
    for system in report["systems"].values():
        for shape, figures in system.items():
            points = figures["points"]
            for i, point in enumerate(points):
                if "records" in point:
                    points[i] = summarize(records_of(point), point["offered_rps"], point["load"])
            config = report["config"]["shapes"][shape]
            config.setdefault("p99_slo_s", SHAPES[shape].p99_slo_s)
            figures["peak"] = peak(points, config["p99_slo_s"])
    derive(report)
    path.write_text(dumps(copy.deepcopy(report)))
    plot(report, path.with_suffix(".png"))


def save(report: dict[str, Any], path: Path, started: datetime) -> None:
    derive(report)
    report["elapsed_s"] = (datetime.now(UTC) - started).total_seconds()
    path.write_text(dumps(copy.deepcopy(report)))  # dumps rewrites the records in place


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_system(
    system: System,
    workloads: dict[str, list[Request]],
    cfg: SweepConfig,
    args: argparse.Namespace,
    report: dict[str, Any],
    reference: dict[str, list[np.ndarray]],
) -> None:
    """One system: start, equality against the service's rewards, sweeps, stop."""
    name = system.name
    log(f"starting {name}")
    try:
        system.start()
        log(f"{name} ready after {system.startup_s:.1f} s")
        for requests in workloads.values():
            system.prepare(requests)
        for shape, requests in workloads.items():
            rewards = system.rewards(requests[0])
            if name == "service":
                reference[shape] = rewards
            elif shape in reference:
                diff = max_abs_diff(reference[shape], rewards)
                report["equality"].setdefault(name, {})[shape] = diff
                log(f" {name} {shape}: max |reward - service reward| = {diff:.2e}")
        figures = bench_system(system, workloads, cfg, args.seed)
        report["server_config"][name] = system.describe()
        report["systems"][name] = figures
    finally:
        system.stop()
        log(f"stopped {name}")


def print_summary(report: dict[str, Any]) -> None:
    for shape in report["config"]["shapes"]:
        for system_name, figures in report["systems"].items():
            pk = figures[shape]["peak"]
            note = "" if pk["sustained"] else " (not sustained)"
            log(
                f"{shape:>10} {system_name:>17}: peak {pk['scored_tokens_per_s']:8.0f} tok/s, "
                f"p99 {pk['latency_p99_s']:.3f} s{note}"
            )
    for system_name, shapes_mfu in (report.get("mfu") or {}).items():
        for shape, m in shapes_mfu.items():
            log(
                f"{shape:>10} {system_name:>17}: MFU {100 * m['mfu']:.1f}% at peak "
                f"({m['peak_achieved_tflops']:.3g} TFLOP/s), {100 * m['capacity_mfu']:.1f}% "
                "at closed-loop capacity"
            )
    print(json.dumps(report["ratios"], indent=2))


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.reanalyze:
        reanalyze(args.reanalyze)
        return
    # SIGTERM (e.g. from make or CI) takes the same path as Ctrl-C: finally blocks stop servers.
    signal.signal(signal.SIGTERM, interrupt)
    started = datetime.now(UTC)
    json_path = (args.output or RESULTS / f"bench-{started:%Y%m%dT%H%M%SZ}.json").resolve()
    json_path.parent.mkdir(parents=True, exist_ok=True)
    device = resolved_device(args.device)
    shared = shared_settings(args)

    vocab, context = scoring_vocab(Path(shared["sft_model"]))
    longest = max(SHAPES[name].longest for name in args.shapes)
    if longest > context - 1:  # vLLM must generate one token after the scored sequence
        raise SystemExit(f"a sequence of {longest} tokens does not fit a context of {context}")
    workloads = {
        name: make_requests(SHAPES[name], args.variants, sampler(vocab, args.seed + i))
        for i, name in enumerate(args.shapes)
    }
    cfg = SweepConfig(
        *(args.loads, args.point_s, args.min_requests, args.max_requests, args.drain_s),
        *(args.extend, args.calib_s, args.calib_requests, args.calib_concurrency),
    )
    report = new_report(args, started, workloads, vocab, context, cfg, device, shared)
    reference: dict[str, list[np.ndarray]] = {}  # the service's rewards, per shape
    for name in args.systems:
        system = make_system(name, args, shared, cpu=device == "cpu")
        run_system(system, workloads, cfg, args, report, reference)
        save(report, json_path, started)
    report["machine"]["loadavg_end"] = os.getloadavg()
    save(report, json_path, started)
    plot(report, json_path.with_suffix(".png"))
    log(f"wrote {shown(json_path)} and {shown(json_path.with_suffix('.png'))}")
    print_summary(report)
