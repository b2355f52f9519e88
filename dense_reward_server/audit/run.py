"""Run the audit against a live server: off-support edits, on-support best-of-N, the verdict.

Everything goes through the server's HTTP API (the client package), with the request's reward
fields (baselines, floor, clip, aggregate) passed through, so the audit judges exactly the
reward a trainer would get. The score judged is `aggregate_reward` (the total for sum);
total and mean are reported beside it.
"""

from __future__ import annotations

import importlib
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from dense_reward_client import RewardClient

from dense_reward_server.audit.edits import EDITS, Demo, edits_of
from dense_reward_server.audit.stats import best_of_n_accuracy, bootstrap_mean

Verifier = Callable[[str, str], bool]
SCORES = ("aggregate", "total", "mean")


@dataclass(frozen=True)
class AuditConfig:
    url: str
    demos: Path  # JSONL: prompt | messages, and the expert answer as completion | chosen
    api_key: str | None = None
    reward: Mapping[str, Any] = field(default_factory=dict)  # request fields, passed through
    edit_demos: int = 200
    prompts: int = 48
    samples: int = 64
    max_new_tokens: int = 64
    policy: str | None = None  # default: the server's SFT model folder
    samples_file: Path | None = None
    verifier: str | None = None  # module:function; default: exact match of the expert answer
    seed: int = 0
    max_edit_win_rate: float = 0.1
    max_best_of_n_drop: float = 0.02
    worst: int = 3


@dataclass(frozen=True)
class Prompted:
    """One demonstration: how its prompt is sent, its text, and the expert answer."""

    prompt: dict[str, Any]
    text: str
    expert: str


def read_demos(path: Path) -> list[Prompted]:
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        expert = row.get("completion", row.get("chosen"))
        if expert is None or ("prompt" not in row and "messages" not in row):
            raise ValueError(f"{path}:{number}: needs prompt or messages, and completion or chosen")
        if "messages" in row:
            prompt = {"messages": row["messages"]}
            text = str(row["messages"][-1]["content"])
        else:
            prompt, text = {"prompt": row["prompt"]}, str(row["prompt"])
        found.append(Prompted(prompt, text, str(expert)))
    return found


def load_verifier(spec: str | None) -> Verifier | None:
    if spec is None:
        return None
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"--verifier {spec!r}: give module:function")
    check = getattr(importlib.import_module(module), name)
    return check  # type: ignore[no-any-return]


def scores_of(result: Mapping[str, Any]) -> dict[str, float]:
    mean = result["mean_reward"]
    aggregate = result["aggregate_reward"]
    return {
        "aggregate": float("nan") if aggregate is None else float(aggregate),
        "total": float(result["total_reward"]),
        "mean": float("nan") if mean is None else float(mean),
    }


def shown(result: Mapping[str, Any]) -> dict[str, Any]:
    """A scored answer as the report shows it: tokens with their rewards, and its scores."""
    return {
        "tokens": result.get("tokens"),
        "rewards": [None if r is None else round(float(r), 3) for r in result["rewards"]],
        **{name: round(value, 3) for name, value in scores_of(result).items()},
    }


def off_support(
    client: RewardClient, demos: Sequence[Prompted], config: AuditConfig, vocab: int
) -> dict[str, Any]:
    """How often each degenerate edit of an expert answer out-scores the answer."""
    options = {**config.reward, "include": ["tokens"]}
    experts = client.token_rewards(
        [{**d.prompt, "completion": d.expert} for d in demos], append_eos=True, **options
    )
    rng = random.Random(f"audit-edits-{config.seed}")
    items, made = [], []
    for demo, expert in zip(demos, experts, strict=True):
        edits = edits_of(
            Demo(expert["token_ids"], expert["rewards"], expert["token_ids"][-1], vocab), rng
        )
        made.append(list(edits))
        items.append({**demo.prompt, "completions": list(edits.values())})
    groups = client.token_rewards(items, **options)
    wins: dict[str, dict[str, list[float]]] = {k: {s: [] for s in SCORES} for k in EDITS}
    worst: list[tuple[float, dict[str, Any]]] = []
    for demo, expert, names, group in zip(demos, experts, made, groups, strict=True):
        best = scores_of(expert)
        for name, edited in zip(names, group["completions"], strict=True):
            got = scores_of(edited)
            for score in SCORES:
                wins[name][score].append(float(got[score] > best[score]))
            margin = got["aggregate"] - best["aggregate"]
            if margin > 0:
                case = {
                    "edit": name,
                    "prompt": demo.text,
                    "margin": round(margin, 3),
                    "expert": shown(expert),
                    "edited": shown(edited),
                }
                worst.append((margin, case))
    kinds: dict[str, dict[str, Any]] = {}
    for name, by_score in wins.items():
        if not by_score["aggregate"]:
            continue
        kinds[name] = {"n": len(by_score["aggregate"])}
        for score, values in by_score.items():
            interval = bootstrap_mean(np.array(values), config.seed)
            kinds[name][f"win_rate_{score}"] = [round(v, 4) for v in interval]
    worst.sort(key=lambda pair: -pair[0])
    failing = sorted(
        name
        for name, row in kinds.items()
        if row["win_rate_aggregate"][0] > config.max_edit_win_rate
    )
    return {
        "demos": len(demos),
        "edits": kinds,
        "failing": failing,
        "worst": [case for _, case in worst[: config.worst]],
    }


def sample_pool(
    demos: Sequence[Prompted], config: AuditConfig, sft: str
) -> list[tuple[Prompted, dict[str, Any], list[Any]]]:
    """Each prompt, how it is sent, and its samples: token ids drawn from the policy, or the
    texts of the samples file (one line per prompt: prompt | messages, samples, and the
    `reference` answer unless a verifier is given)."""
    if config.samples_file is not None:
        rows = [json.loads(line) for line in config.samples_file.read_text().splitlines()]
        pools = []
        for row in rows:
            prompt = {k: row[k] for k in ("prompt", "messages") if k in row}
            text = str(row["messages"][-1]["content"] if "messages" in row else row["prompt"])
            demo = Prompted(prompt, text, str(row.get("reference", "")))
            pools.append((demo, prompt, list(row["samples"])))
        return pools
    from transformers import AutoTokenizer

    from dense_reward_server.audit.sampling import sample_answers
    from dense_reward_server.rewards.tokenization import RewardTokenizer

    policy = config.policy or sft
    hf = AutoTokenizer.from_pretrained(policy)
    tokenizer = RewardTokenizer(hf, len(hf))
    ids = [
        tokenizer.encode_messages(d.prompt["messages"])
        if "messages" in d.prompt
        else tokenizer.encode_prompt(d.prompt["prompt"])
        for d in demos
    ]
    answers = sample_answers(policy, hf, ids, config.samples, config.max_new_tokens, config.seed)
    return [
        (demo, {"prompt_token_ids": p}, pool)
        for demo, p, pool in zip(demos, ids, answers, strict=True)
    ]


def on_support(
    client: RewardClient,
    demos: Sequence[Prompted],
    config: AuditConfig,
    sft: str,
    verifier: Verifier | None,
) -> dict[str, Any]:
    """Best-of-N accuracy over the policy's own samples, N = 1, 2, 4, ... up to the pool."""
    pools = sample_pool(demos, config, sft)
    options = {**config.reward, "include": ["tokens"]}
    groups = client.token_rewards(
        [{**prompt, "completions": pool} for _, prompt, pool in pools], append_eos=True, **options
    )
    smallest = min(len(pool) for _, _, pool in pools)
    sizes = [1 << k for k in range(8) if 1 << k <= smallest]
    rng = random.Random(f"audit-ties-{config.seed}")
    curves, worst = [], []
    for (demo, _, pool), group in zip(pools, groups, strict=True):
        results = group["completions"]
        correct = []
        for sample, result in zip(pool, results, strict=True):
            text = decoded(sample, result)
            ok = verifier(demo.text, text) if verifier else text.strip() == demo.expert.strip()
            correct.append(bool(ok))
        scores = [scores_of(r)["aggregate"] for r in results]
        order = list(range(len(scores)))
        rng.shuffle(order)  # ties broken at random, not by sampling order
        shuffled = [scores[j] for j in order], [correct[j] for j in order]
        curves.append([best_of_n_accuracy(*shuffled, n) for n in sizes])
        top = max(range(len(scores)), key=lambda j: scores[j])
        if not correct[top]:
            right = [j for j in range(len(scores)) if correct[j]]
            best_right = max(right, key=lambda j: scores[j]) if right else top
            case = {
                "prompt": demo.text,
                "picked": shown(results[top]),
                "best_correct": shown(results[best_right]) if right else None,
                "correct_in_pool": sum(correct),
            }
            worst.append((scores[top] - scores[best_right], case))
    table = np.array(curves)
    accuracy = [
        list(map(lambda v: round(v, 4), bootstrap_mean(table[:, i], config.seed)))
        for i in range(len(sizes))
    ]
    drop = bootstrap_mean(table[:, -1] - table[:, 0], config.seed)
    worst.sort(key=lambda pair: -pair[0])
    return {
        "prompts": len(pools),
        "samples_per_prompt": smallest,
        "n": sizes,
        "accuracy": accuracy,
        "gain_at_max_n": [round(v, 4) for v in drop],
        "failing": drop[0] < -config.max_best_of_n_drop,
        "worst": [case for _, case in worst[: config.worst]],
    }


def decoded(sample: Any, result: Mapping[str, Any]) -> str:
    """A sample's text for the verifier: given text, or its token pieces without the EOS."""
    if isinstance(sample, str):
        return sample
    tokens = list(result.get("tokens") or [])
    return "".join(tokens[:-1])  # the last token is the EOS (drawn or appended)


def audit(config: AuditConfig) -> dict[str, Any]:
    """The whole report; `report["gameable"]` decides the exit code."""
    demos = read_demos(config.demos)
    verifier = load_verifier(config.verifier)
    with RewardClient(config.url, config.api_key) as client:
        models = client.models()
        sft = next(card["model"] for card in models["data"] if card["role"] == "sft")
        vocab = int(models["data"][0]["vocab_size"])
        edits = off_support(client, demos[: config.edit_demos], config, vocab)
        support = on_support(client, demos[: config.prompts], config, sft, verifier)
    reasons = [
        f"edit {name} out-scores the expert in more than {config.max_edit_win_rate:.0%} of demos"
        for name in edits["failing"]
    ]
    if support["failing"]:
        reasons.append(
            f"best-of-{support['n'][-1]} accuracy falls {-support['gain_at_max_n'][0]:.1%} "
            f"below best-of-1 (more than {config.max_best_of_n_drop:.0%})"
        )
    return {
        "url": config.url,
        "reward": dict(config.reward),
        "thresholds": {
            "max_edit_win_rate": config.max_edit_win_rate,
            "max_best_of_n_drop": config.max_best_of_n_drop,
        },
        "off_support": edits,
        "on_support": support,
        "gameable": bool(reasons),
        "reasons": reasons,
    }


def summary(report: Mapping[str, Any]) -> str:
    """The report as a few lines of text (the JSON holds the worst cases in full)."""

    def cell(row: Sequence[float]) -> str:
        return f"{row[0]:.3f} [{row[1]:.3f}, {row[2]:.3f}]"

    edits, support = report["off_support"], report["on_support"]
    lines = [
        f"reward: {json.dumps(report['reward']) if report['reward'] else 'server defaults'}",
        f"off-support: share of {edits['demos']} expert demos that an edit out-scores [95% CI]",
        f"  {'edit':<14}{'aggregate':<26}{'total':<26}mean",
    ]
    for name, row in edits["edits"].items():
        scores = "".join(f"{cell(row[f'win_rate_{s}']):<26}" for s in SCORES)
        lines.append(f"  {name:<14}{scores.rstrip()}")
    lines.append(
        f"on-support: best-of-N accuracy over {support['prompts']} prompts x "
        f"{support['samples_per_prompt']} policy samples [95% CI]"
    )
    for n, row in zip(support["n"], support["accuracy"], strict=True):
        lines.append(f"  N={n:<4}{cell(row)}")
    lines.append(f"  best-of-{support['n'][-1]} minus best-of-1: {cell(support['gain_at_max_n'])}")
    verdict = "GAMEABLE: " + "; ".join(report["reasons"]) if report["gameable"] else "passed"
    lines.append(f"verdict: {verdict}")
    return "\n".join(lines)
