"""`make rl`: Dense-Path REINFORCE on the demo task, six arms x seeds, against live servers.

Every trained arm runs the same trainer (harness.rl.trainer) for the same steps, prompts per
step and samples per prompt, from the same SFT policy, with the same seeds (so the same
training prompts); only the reward differs. Rewards come from real servers over loopback,
one per baseline: `base`, `sft-half` and none (`DRS_BASELINE=none`, the reward is log pi_sft).
Held-out prompts are the demo build's (never trained on by the pair); every arm is scored on
the same ones. Writes `<out>/results.json`, `<out>/table.md` and `<out>/rl.png`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from dense_reward_client import RewardClient
from transformers.utils import logging as hf_logging

from harness.bench.environment import run_record
from harness.paths import DEMO, ROOT
from harness.rl.config import DPRConfig
from harness.rl.credit import Credit
from harness.rl.report import plot, summarize, table
from harness.rl.trainer import DPRTrainer, heldout_prompts, run
from harness.servers import ServiceProcess


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


def positive(text: str) -> int:
    """An argparse type: a whole number >= 1 (bad ones exit 2 with argparse's one line)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not >= 1")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness rl", description=__doc__)
    parser.add_argument("--demo", type=Path, default=DEMO)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "rl")
    parser.add_argument(
        "--report", type=Path, default=None, help="only re-render this results.json's table, plot"
    )
    parser.add_argument("--arms", nargs="+", default=[a.name for a in ARMS], choices=list(LABELS))
    parser.add_argument("--seeds", type=positive, default=3)
    parser.add_argument("--steps", type=positive, default=DPRConfig.steps)
    parser.add_argument("--lr", type=float, default=DPRConfig.lr)
    parser.add_argument("--kl-coef", type=float, default=DPRConfig.kl_coef)
    parser.add_argument("--eval-prompts", type=positive, default=300)
    parser.add_argument(
        "--eval-samples", type=positive, default=4, help="T=1 answers per held-out prompt."
    )
    parser.add_argument(
        "--backend",
        default="transformers",
        choices=["transformers", "vllm"],
        help="The reward servers' engine (transformers: ~8x faster to start on the demo pair).",
    )
    parser.add_argument("--jobs", type=positive, default=2, help="Runs at once (worker processes).")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="A progress bar per run (with --jobs 1; else a line per finished run).",
    )
    return parser.parse_args(argv)


def run_arm(
    arm: Arm, seed: int, url: str, args: argparse.Namespace, held: list[str]
) -> dict[str, Any]:
    """One arm, one seed: train (unless SFT alone), then evaluate on the held-out prompts.

    Runs in a worker process: one torch thread, so two runs and their servers share 2 cores.
    """
    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()  # one line per model load otherwise
    config = DPRConfig(
        credit=arm.credit or "dense",
        steps=args.steps if arm.credit else 0,
        lr=args.lr,
        kl_coef=args.kl_coef,
        seed=seed,
    )
    with RewardClient(url) as client:
        trainer = DPRTrainer(args.demo / "sft", client, config)
        record = run(
            trainer,
            held,
            args.eval_prompts,
            args.eval_samples,
            progress=args.progress and args.jobs == 1,
        )
    record["arm"] = arm.name
    return record


def run_all(
    arms: list[Arm], args: argparse.Namespace, held: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Every (arm, seed) on `args.jobs` worker processes, against one server per baseline
    (all started first). A run's numbers depend only on its arm and seed, not on the order."""
    names = dict.fromkeys(arm.server for arm in arms)
    servers = {
        name: ServiceProcess(
            name=f"rl-{name}", backend=args.backend, **server_settings(name, args.demo)
        )
        for name in names
    }
    jobs = [(arm, seed) for arm in arms for seed in range(args.seeds)]
    jobs.sort(key=lambda job: job[0].credit is None)  # trained runs first: they take longest
    done: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        for server in servers.values():
            server.wait_ready()
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            futures = {
                pool.submit(run_arm, arm, seed, servers[arm.server].url, args, held): (arm, seed)
                for arm, seed in jobs
            }
            for future in as_completed(futures):
                arm, seed = futures[future]
                record = done[arm.name, seed] = future.result()
                final = record["eval"]
                print(
                    f"[{len(done)}/{len(jobs)}] {arm.name} seed {seed}: greedy "
                    f"{final['greedy_accuracy']:.3f}, sampled {final['sampled_accuracy']:.3f}, "
                    f"KL {final['kl']:.2f} ({record['train_s']:.0f} s)",
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.stop()
    return {arm.name: [done[arm.name, seed] for seed in range(args.seeds)] for arm in arms}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.report is not None:
        return rerender(args.report)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    held = heldout_prompts(args.demo / "heldout_pairs.jsonl")
    arms = [arm for arm in ARMS if arm.name in args.arms]
    runs = run_all(arms, args, held)
    result = {
        **run_record("python -m harness rl", started),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "arms": {arm.name: arm.label for arm in arms},
        "summary": summarize(runs),
        "runs": runs,
        "wall_s": round(time.perf_counter() - clock, 1),
    }
    write_outputs(result, args.out)
    return result


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """results.json, table.md and rl.png from one experiment's result."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    markdown = table(result["summary"], LABELS)
    (out / "table.md").write_text(markdown)
    plot(result["runs"], result["summary"], out / "rl.png")
    print(markdown)
    print(f"{result['wall_s']:.0f} s; wrote {out}/results.json, table.md, rl.png")


def rerender(results: Path) -> dict[str, Any]:
    """The table and plot again from a results.json (after a change to the report only)."""
    result: dict[str, Any] = json.loads(results.read_text())
    result["summary"] = summarize(result["runs"])
    write_outputs(result, results.parent)
    return result
