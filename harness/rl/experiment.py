"""`make rl`: Dense-Path REINFORCE on a demo task, the arms x seeds, against live servers.

Every trained arm runs the same trainer (harness.rl.trainer) for the same steps, prompts per
step and samples per prompt, from the same SFT policy, with the same seeds (so the same
training prompts); only the reward differs. Rewards come from real servers over loopback: one
loads `base` and `sft-half` together (every arm but one picks its reward with request fields:
baselines, floor, clip, aggregate), one has no baseline (`DRS_BASELINE=none`, log pi_sft).
Before training, `dense-reward-server audit` judges each trained reward on the same server, so
the table shows whether the audit predicted the outcome. Held-out prompts are the task's demo
build's (never trained on); every arm is scored on the same ones. Writes
`<out>/results.json`, `<out>/table.md` and `<out>/rl.png`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from dense_reward_client import RewardClient
from transformers.utils import logging as hf_logging

from harness.bench.environment import run_record
from harness.demo.tasks import TASKS
from harness.paths import ROOT
from harness.rewards import BASE, FLOOR_CLIP, HALF, PESSIMISTIC, SOFT_MIN
from harness.rl.config import DPRConfig, task_lr
from harness.rl.credit import Credit
from harness.rl.report import contrast_table, contrasts, plot, summarize, table
from harness.rl.trainer import DPRTrainer, heldout_prompts, run
from harness.servers import ServiceProcess


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    credit: Credit | None  # None: not trained (SFT alone)
    reward: dict[str, Any] = field(default_factory=dict)  # request fields (harness.rl.config)
    server: str = "pair"  # "pair" (base and sft-half loaded) or "none" (no baseline)


ARMS = (
    Arm("sft", "(a) SFT alone", None, BASE),
    Arm("dpr-base", "(b) DPR, baseline base", "dense", BASE),
    Arm("dpr-sft-half", "(c) DPR, baseline sft-half", "dense", HALF),
    Arm("sft-half-floor-clip", "(d) sft-half, floor -5 and clip [-5, 1]", "dense", FLOOR_CLIP),
    Arm("pessimistic", "(e) pessimistic: max of base and sft-half", "dense", PESSIMISTIC),
    Arm("sft-half-soft-min", "(f) sft-half, soft minimum (T = 1)", "dense", SOFT_MIN),
    Arm("sparse-base", "(g) same total at the last token (base)", "sparse", BASE),
    Arm("verifier", "(h) verifier 0/1 at the last token", "verifier", BASE),
    Arm("logpi-sft", "(i) log pi_sft alone (no baseline)", "dense", {}, "none"),
)
LABELS = {arm.name: arm.label for arm in ARMS}
DEFAULT_ARMS = [arm.name for arm in ARMS if arm.name != "logpi-sft"]


def server_settings(name: str, demo: Path) -> dict[str, Any]:
    """Serve settings of each reward server: the SFT model against its baselines."""
    sft = {"sft_model": str(demo / "sft")}
    if name == "none":
        return {**sft, "baseline": "none"}
    return {
        **sft,
        "base_model": str(demo / "base"),
        "extra_baselines": json.dumps({"sft-half": str(demo / "sft-half")}),
    }


def positive(text: str) -> int:
    """An argparse type: a whole number >= 1 (bad ones exit 2 with argparse's one line)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not >= 1")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness rl", description=__doc__)
    parser.add_argument("--task", default="sort", choices=list(TASKS))
    parser.add_argument("--demo", type=Path, default=None, help="default: the task's folder")
    parser.add_argument("--out", type=Path, default=None, help="default: docs/rl/<task>")
    parser.add_argument(
        "--report", type=Path, default=None, help="only re-render this results.json's table, plot"
    )
    parser.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(LABELS))
    parser.add_argument("--seeds", type=positive, default=3)
    parser.add_argument("--steps", type=positive, default=DPRConfig.steps)
    parser.add_argument("--lr", type=float, default=None, help="default: the task's TASK_LR")
    parser.add_argument("--kl-coef", type=float, default=DPRConfig.kl_coef)
    parser.add_argument("--eval-prompts", type=positive, default=300)
    parser.add_argument(
        "--eval-samples", type=positive, default=4, help="T=1 answers per held-out prompt."
    )
    parser.add_argument(
        "--audit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Audit each trained arm's reward first (dense-reward-server audit).",
    )
    parser.add_argument("--audit-demos", type=positive, default=200, help="Demos edited.")
    parser.add_argument("--audit-prompts", type=positive, default=48, help="Best-of-N prompts.")
    parser.add_argument("--audit-samples", type=positive, default=64, help="Largest N.")
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
    args = parser.parse_args(argv)
    args.demo = args.demo or ROOT / TASKS[args.task].folder
    args.out = args.out or ROOT / "docs" / "rl" / args.task
    args.lr = task_lr(args.task, args.lr)
    return args


def run_arm(
    arm: Arm, seed: int, url: str, args: argparse.Namespace, held: list[str]
) -> dict[str, Any]:
    """One arm, one seed: train (unless SFT alone), then evaluate on the held-out prompts.

    Runs in a worker process: one torch thread, so two runs and their servers share 2 cores.
    """
    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()  # one line per model load otherwise
    config = DPRConfig(
        task=args.task,
        credit=arm.credit or "dense",
        reward=arm.reward,
        steps=args.steps if arm.credit else 0,
        max_new_tokens=TASKS[args.task].max_answer_tokens,
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
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
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
        if args.audit:
            audits = audit_rewards(arms, servers, args)
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
    runs = {arm.name: [done[arm.name, seed] for seed in range(args.seeds)] for arm in arms}
    return runs, audits if args.audit else {}


def audit_rewards(
    arms: list[Arm], servers: dict[str, ServiceProcess], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """The audit's verdict on every dense reward an arm trains on (once per reward)."""
    from dense_reward_server.audit.run import AuditConfig, audit

    reports: dict[str, dict[str, Any]] = {}
    for arm in arms:
        if arm.credit != "dense":
            continue
        config = AuditConfig(
            url=servers[arm.server].url,
            demos=args.demo / "heldout_pairs.jsonl",
            reward=arm.reward,
            edit_demos=args.audit_demos,
            prompts=args.audit_prompts,
            samples=args.audit_samples,
            policy=str(args.demo / "sft"),
            max_new_tokens=TASKS[args.task].max_answer_tokens,
        )
        started = time.perf_counter()
        report = audit(config)
        support = report["on_support"]
        print(
            f"audit {arm.name}: gameable {report['gameable']}, edits failing "
            f"{report['off_support']['failing']}, best-of-{support['n'][-1]} minus best-of-1 "
            f"{support['gain_at_max_n'][0]:+.3f} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        reports[arm.name] = report
    return reports


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.report is not None:
        return rerender(args.report)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    held = heldout_prompts(args.demo / "heldout_pairs.jsonl")
    arms = [arm for arm in ARMS if arm.name in args.arms]
    runs, audits = run_all(arms, args, held)
    result = {
        **run_record("python -m harness rl", started),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "task": TASKS[args.task].description,
        "arms": {arm.name: arm.label for arm in arms},
        "rewards": {arm.name: arm.reward for arm in arms},
        "summary": summarize(runs, audits),
        "contrasts": contrasts(runs),
        "audits": audits,
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
    if result.get("contrasts"):
        markdown += "\n" + contrast_table(result["contrasts"], LABELS)
    (out / "table.md").write_text(markdown)
    plot(result["runs"], result["summary"], out / "rl.png")
    print(markdown)
    print(f"{result['wall_s']:.0f} s; wrote {out}/results.json, table.md, rl.png")


def rerender(results: Path) -> dict[str, Any]:
    """The table and plot again from a results.json (after a change to the report only)."""
    result: dict[str, Any] = json.loads(results.read_text())
    result["summary"] = summarize(result["runs"], result.get("audits", {}))
    result["contrasts"] = contrasts(result["runs"])
    write_outputs(result, results.parent)
    return result
