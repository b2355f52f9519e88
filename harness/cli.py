"""`python -m harness COMMAND`: the repository's one entry to what is not the server.

demo builds the demo pair; eval and ablation measure the reward's quality; train-dpr trains a
policy on a running server; rl runs the Dense-Path REINFORCE experiment; bench, groups, burst,
soak, one-request, prefix-blocks and image measure the server. Each command's `--help` says more.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable
from pathlib import Path

import typer

from dense_reward_server.cli import load_settings, reward_fields
from dense_reward_server.logs import configure_logging
from harness.rl.config import DPRConfig, task_lr
from harness.rl.credit import CREDITS

app = typer.Typer(
    name="python -m harness",
    help=__doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else None,
    no_args_is_help=True,
    add_completion=False,
)
# The measuring tools parse their own flags (argparse): the entry passes them through untouched.
# name: (module with `main(argv)`, what it does)
TOOLS = {
    "bench": ("harness.bench.cli", "Throughput and latency against the peers (`make bench`)."),
    "groups": ("harness.bench.groups", "GRPO groups, first and second round (bench-groups)."),
    "burst": ("harness.bench.burst", "A batch of one-sample requests at once, /health probed."),
    "soak": ("harness.soak.cli", "Open-loop load above saturation, every answer checked."),
    "one-request": ("harness.bench.one_request", "One 64 x 256-token request, per engine."),
    "prefix-blocks": ("harness.bench.prefix_blocks", "vLLM-CPU block size 32 vs 128, one engine."),
    "image": ("harness.image", "Serve the CPU image from its own filesystem (test-image)."),
    "rl": ("harness.rl.experiment", "The Dense-Path REINFORCE experiment (`make rl`)."),
    "baselines": ("harness.bench.baselines", "Memory and throughput of an extra baseline."),
    "hacking": ("harness.rl.hacking", "The hacking metrics while DPR games a reward, or not."),
    "anatomy": ("harness.demo.anatomy", "Where the running-sums reward comes from, by token."),
}
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def require_one_of(option: str, value: str, known: Iterable[str]) -> None:
    """Exit 2 with one line unless `value` is one of `known`."""
    if value not in known:
        typer.echo(f"--{option} {value!r}: expected one of {', '.join(known)}", err=True)
        raise typer.Exit(2)


def add_tool(name: str, module: str, summary: str) -> None:
    def run(ctx: typer.Context) -> None:
        importlib.import_module(module).main(ctx.args)

    app.command(
        name, help=f"{summary} `{name} --help` lists its flags.", context_settings=PASS_THROUGH
    )(run)


for _name, (_module, _summary) in TOOLS.items():
    add_tool(_name, _module, _summary)


@app.command("demo")
def demo(
    task: str = typer.Option("sort", help="sort, or sums (running sums: long answers)."),
    out: str | None = typer.Option(
        None, help="Folder for base, sft, sft-half; default .models/demo, .models/demo-sums."
    ),
    sort_pair: str = typer.Option(
        ".models/demo", help="The sorting pair whose tokenizer and base another task starts from."
    ),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same weights."),
    log_format: str = typer.Option("text", help="json or text."),
) -> None:
    """Build a small demo SFT/base pair (a few minutes on 2 CPU cores).

    sums trains a copy of the sorting pair's base (built first if it is missing) further on a
    careless writer's transcripts, then fine-tunes it on expert ones.
    """
    configure_logging(log_format, "info")
    from harness.demo.build import main as build_main
    from harness.demo.tasks import TASKS

    require_one_of("task", task, TASKS)
    build_main(out, seed, task, sort_pair)


@app.command(
    "eval",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def eval_command(
    ctx: typer.Context,
    pairs: Path = typer.Argument(..., help="JSONL: prompt or messages, chosen, rejected, kind."),
    url: str | None = typer.Option(None, help="A running server; default: in-process engines."),
    api_key: str | None = typer.Option(None, envvar="DRS_EVAL_API_KEY", help="Bearer key."),
    out: Path = typer.Option(Path("results/eval.json"), help="Report (JSON)."),
    plot: Path = typer.Option(Path("results/eval.png"), help="Plot (PNG)."),
    batch_size: int = typer.Option(32, help="Pairs per request."),
    append_eos: bool = typer.Option(True, help="Score the EOS that ends each completion."),
) -> None:
    """Pairwise accuracy of the reward on (chosen, rejected) pairs, with a bootstrap 95% CI.

    Extra flags (e.g. --backend transformers --baseline none) configure in-process engines.
    """
    configure_logging("text", "warning")
    from harness.evaluation.run import evaluate, in_process_scorer, write_report
    from harness.evaluation.scoring import HttpScorer

    if url is not None:
        scorer = HttpScorer(url, api_key)
        report = evaluate(pairs, scorer, batch_size=batch_size, append_eos=append_eos)
    else:
        local = in_process_scorer(load_settings(ctx.args, "python -m harness eval"))
        try:
            report = evaluate(pairs, local, batch_size=batch_size, append_eos=append_eos)
        finally:
            local.close()
    write_report(report, out, plot, f"{pairs.name}")
    total = report["total_reward"]
    typer.echo(
        f"pairwise accuracy (total reward): {total['accuracy']:.3f} "
        f"[{total['ci95'][0]:.3f}, {total['ci95'][1]:.3f}] over {report['pairs']} pairs "
        f"-> {out}, {plot}"
    )


@app.command()
def ablation(
    pairs: Path = typer.Argument(..., help="Held-out pairs (JSONL)."),
    demo: Path = typer.Option(Path(".models/demo"), help="The demo pair folder."),
    out: Path = typer.Option(Path("results"), help="Folder for the reports and the table."),
    backend: str = typer.Option("transformers", help="Engine for the in-process scorers."),
) -> None:
    """The paper's baseline ablation on the demo pair: base, sft-half, and no baseline."""
    configure_logging("text", "warning")
    from harness.evaluation.run import ablation as run_ablation

    typer.echo(run_ablation(pairs, demo, out, backend))


@app.command()
def guards(
    task: str = typer.Option("sort", help="sort or sums: the pair and its held-out pairs."),
    out: Path | None = typer.Option(
        None, help="Folder for guards.{json,md}; default docs/guards/<task>."
    ),
    backend: str = typer.Option("transformers", help="Engine for the in-process scorer."),
) -> None:
    """Each reward guard on the held-out ranking eval (base, sft-half and its guards)."""
    configure_logging("text", "warning")
    from harness.demo.tasks import TASKS
    from harness.evaluation.run import guard_ablation
    from harness.paths import ROOT

    require_one_of("task", task, TASKS)
    demo = ROOT / TASKS[task].folder
    folder = out or ROOT / "docs" / "guards" / task
    typer.echo(guard_ablation(demo / "heldout_pairs.jsonl", demo, folder, backend))


@app.command("train-dpr")
def train_dpr(
    url: str = typer.Option(
        "http://127.0.0.1:8000", help="The reward server (the SFT engine too)."
    ),
    api_key: str | None = typer.Option(None, envvar="DRS_REWARD_API_KEY", help="Bearer key."),
    policy: Path = typer.Option(Path(".models/demo/sft"), help="Start policy: the SFT model."),
    heldout: Path = typer.Option(
        Path(".models/demo/heldout_pairs.jsonl"), help="Held-out prompts (never trained on)."
    ),
    task: str = typer.Option("sort", help="sort or sums: the prompts, checker, answer length."),
    reward: str = typer.Option(
        "{}",
        help='Reward fields sent with every request, as JSON: {"baselines": ["sft-half"], '
        '"ref_logprob_floor": -5, "aggregate": "soft_min", ...}; default: the server\'s.',
    ),
    credit: str = typer.Option("dense", help="dense, sparse (total at the end) or verifier."),
    steps: int = typer.Option(DPRConfig.steps, min=0),
    prompts_per_step: int = typer.Option(DPRConfig.prompts_per_step, min=1),
    samples: int = typer.Option(DPRConfig.samples_per_prompt, min=2, help="K per prompt."),
    lr: float | None = typer.Option(None, min=0.0, help="Default: the task's (TASK_LR)."),
    kl_coef: float = typer.Option(DPRConfig.kl_coef, min=0.0),
    seed: int = typer.Option(0),
    eval_prompts: int = typer.Option(300, min=1, help="Held-out prompts in the final eval."),
    eval_samples: int = typer.Option(4, min=0, help="T=1 answers per held-out prompt."),
    out: Path = typer.Option(Path("results/dpr.json"), help="The run's record (JSON)."),
    log: Path | None = typer.Option(None, help="Per-step log (JSONL); default: beside --out."),
    save: Path | None = typer.Option(None, help="Save the trained policy here."),
) -> None:
    """Dense-Path REINFORCE on a demo task against a running reward server."""
    configure_logging("text", "warning")
    from dense_reward_client import RewardClient

    from harness.demo.tasks import TASKS
    from harness.rl.trainer import DPRTrainer, heldout_prompts, run

    require_one_of("credit", credit, CREDITS)
    require_one_of("task", task, TASKS)
    fields = reward_fields(reward, "python -m harness train-dpr")
    config = DPRConfig(
        task=task,
        reward=fields,
        max_new_tokens=TASKS[task].max_answer_tokens,
        credit=credit,  # type: ignore[arg-type]
        steps=steps,
        prompts_per_step=prompts_per_step,
        samples_per_prompt=samples,
        lr=task_lr(task, lr),
        kl_coef=kl_coef,
        seed=seed,
    )
    log_path = log or out.with_suffix(".log.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with RewardClient(url, api_key) as client, log_path.open("w") as log_file:
        trainer = DPRTrainer(policy, client, config)
        record = run(
            trainer,
            heldout_prompts(heldout),
            eval_prompts,
            eval_samples,
            log=lambda row: print(json.dumps(row), file=log_file, flush=True),
        )
    out.write_text(json.dumps(record, indent=1) + "\n")
    if save is not None:
        trainer.save(save)
    final = record["eval"]
    sampled, kl = (
        "n/a (--eval-samples 0)" if final[k] is None else f"{final[k]:.3f}"
        for k in ("sampled_accuracy", "kl")
    )
    typer.echo(
        f"held-out greedy accuracy {final['greedy_accuracy']:.3f}, sampled {sampled}, "
        f"KL to SFT {kl} after {steps} steps ({record['train_s']:.0f} s) -> {out}, {log_path}"
    )
