"""`make rl`: Dense-Path REINFORCE on the demo task, six arms x seeds, against live servers.

Every trained arm runs the same trainer (service.rl.trainer) for the same steps, prompts per
step and samples per prompt, from the same SFT policy, with the same seeds (so the same
training prompts); only the reward differs. Rewards come from real servers over loopback,
one per baseline: `base`, `sft-half` and none (`DRS_BASELINE=none`, the reward is log pi_sft).
Held-out prompts are the demo build's (never trained on by the pair); every arm is scored on
the same ones. Writes `<out>/results.json`, `<out>/table.md` and `<out>/rl.png`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from transformers.utils import logging as hf_logging

from harness.bench.environment import run_record
from harness.paths import DEMO, ROOT
from harness.rl.report import plot, summarize, table
from harness.servers import ServiceProcess
from service.client import RewardClient
from service.rl.config import DPRConfig
from service.rl.credit import Credit
from service.rl.trainer import DPRTrainer, heldout_prompts, run, train_prompts


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    server: str  # which reward server (SERVERS)
    credit: Credit | None  # None: not trained (SFT alone)


ARMS = (
    Arm("sft", "(a) SFT alone", "base", None),
    Arm("dpr-base", "(b) DPR, baseline base", "base", "dense"),
    Arm("dpr-sft-half", "(c) DPR, baseline sft-half", "sft-half", "dense"),
    Arm("logpi-sft", "(d) log pi_sft alone (no baseline)", "none", "dense"),
    Arm("sparse-base", "(e) same total at the last token (base)", "base", "sparse"),
    Arm("verifier", "(f) verifier 0/1 at the last token", "base", "verifier"),
)
LABELS = {arm.name: arm.label for arm in ARMS}


def server_settings(name: str, demo: Path) -> dict[str, Any]:
    """Serve settings of each reward server: the SFT model against one baseline."""
    sft = {"sft_model": str(demo / "sft")}
    if name == "none":
        return {**sft, "baseline": "none"}
    return {**sft, "base_model": str(demo / ("base" if name == "base" else "sft-half"))}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.rl", description=__doc__)
    parser.add_argument("--demo", type=Path, default=DEMO)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "rl")
    parser.add_argument("--arms", nargs="+", default=[a.name for a in ARMS], choices=list(LABELS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=DPRConfig.steps)
    parser.add_argument("--lr", type=float, default=DPRConfig.lr)
    parser.add_argument("--kl-coef", type=float, default=DPRConfig.kl_coef)
    parser.add_argument("--eval-prompts", type=int, default=300)
    parser.add_argument("--eval-samples", type=int, default=4, help="T=1 answers per prompt.")
    parser.add_argument(
        "--backend",
        default="transformers",
        choices=["transformers", "vllm"],
        help="The reward servers' engine (transformers: ~8x faster to start on the demo pair).",
    )
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return parser.parse_args(argv)


def run_arm(
    arm: Arm, seed: int, url: str, args: argparse.Namespace, held: list[str]
) -> dict[str, Any]:
    """One arm, one seed: train (unless SFT alone), then evaluate on the held-out prompts."""
    config = replace(
        DPRConfig(),
        credit=arm.credit or "dense",
        steps=args.steps if arm.credit else 0,
        lr=args.lr,
        kl_coef=args.kl_coef,
        seed=seed,
    )
    eval_prompts = held[: args.eval_prompts]
    with RewardClient(url) as client:
        trainer = DPRTrainer(args.demo / "sft", client, config)
        record = run(
            trainer,
            train_prompts(seed, set(held)),
            eval_prompts,
            args.eval_samples,
            progress=args.progress,
        )
    record["arm"] = arm.name
    return record


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    hf_logging.disable_progress_bar()  # one line per model load otherwise; ours is the bar
    started = datetime.now(UTC)
    clock = time.perf_counter()
    held = heldout_prompts(args.demo / "heldout_pairs.jsonl")
    arms = [arm for arm in ARMS if arm.name in args.arms]
    runs: dict[str, list[dict[str, Any]]] = {arm.name: [] for arm in arms}
    for server_name in dict.fromkeys(arm.server for arm in arms):
        settings = server_settings(server_name, args.demo)
        server = ServiceProcess(name=f"rl-{server_name}", backend=args.backend, **settings)
        try:
            server.wait_ready()
            for arm in (a for a in arms if a.server == server_name):
                for seed in range(args.seeds):
                    runs[arm.name].append(run_arm(arm, seed, server.url, args, held))
        finally:
            server.stop()
    rows = summarize(runs)
    result = {
        **run_record("rl", started),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "arms": {arm.name: arm.label for arm in arms},
        "summary": rows,
        "runs": runs,
        "wall_s": round(time.perf_counter() - clock, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    markdown = table(rows, LABELS)
    (args.out / "table.md").write_text(markdown)
    plot(runs, rows, args.out / "rl.png")
    print(markdown)
    print(f"{result['wall_s']:.0f} s; wrote {args.out}/results.json, table.md, rl.png")
    return result
