"""Build the demo pair: tokenizer, `base`, `sft` and `sft-half`, seeded and reproducible.

`base` learns generic text (English prose, number lists, chat transcripts of other tasks);
`sft` is `base` fine-tuned, in one pass, on expert demonstrations of sorting; `sft-half` is the
checkpoint after half of those demonstrations (the paper's reviewers' best baseline). The
build then measures on held-out prompts how often the reward ranks the expert completion above
a corrupted one, and writes `demo_report.json` and `heldout_pairs.jsonl` beside the models.
The same seed gives byte-identical weights (the report records their sha256).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from harness.demo import task
from harness.demo.evaluate import evaluate, heldout_pairs
from harness.demo.tokenizer import build_tokenizer, training_texts
from harness.demo.train import DemoConfig, new_model, train_base, train_sft

logger = logging.getLogger(__name__)

MODEL_NAMES = ("base", "sft", "sft-half")
MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors"}
THREADS = 2  # the reference machine; also fixes the order of float reductions


def build_demo(
    out_dir: Path, seed: int = 0, progress: bool = True, config: DemoConfig | None = None
) -> dict[str, Any]:
    """Build everything under `out_dir` (replacing it); return and write the report.

    `config` overrides the defaults (its seed is replaced by `seed`), e.g. a tiny build in tests.
    """
    config = replace(config or DemoConfig(), seed=seed)
    out_dir = Path(out_dir)
    # Built beside the target and renamed at the end: a half-built folder never looks finished.
    work = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with deterministic_torch(seed):
        # Independent streams per phase: changing one phase's draws leaves the others alone.
        paragraphs = task.english_paragraphs()
        texts = training_texts(stream(seed, "tokenizer"), paragraphs)
        tokenizer = build_tokenizer(texts, config.vocab_size, config.context)
        timings["tokenizer"] = time.perf_counter() - started

        model = new_model(config, tokenizer)
        bar = tqdm(
            total=config.base_steps + config.sft_steps,
            desc="demo pair",
            unit="step",
            disable=not progress,
        )
        with bar:
            mark = time.perf_counter()
            corpus = task.generic_corpus(stream(seed, "base"), paragraphs)
            train_base(model, tokenizer, corpus, config, bar)
            save(model, tokenizer, work / "base")
            timings["base"] = time.perf_counter() - mark

            mark = time.perf_counter()
            trained_on = train_sft(
                model,
                tokenizer,
                stream(seed, "sft"),
                config,
                bar,
                at_half=lambda: save(model, tokenizer, work / "sft-half"),
            )
            save(model, tokenizer, work / "sft")
            timings["sft"] = time.perf_counter() - mark

        mark = time.perf_counter()
        pairs = heldout_pairs(stream(seed, "heldout"), trained_on, config.eval_pairs)
        write_jsonl(work / "heldout_pairs.jsonl", pairs)
        other_rng = stream(seed, "other-tasks")
        other = [task.other_task(other_rng) for _ in range(config.greedy_prompts)]
        report = evaluate(work, tokenizer, pairs, config.greedy_prompts, other)
        timings["eval"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    report.update(
        seed=seed,
        config=asdict(config),
        sft_demonstrations=len(trained_on),
        special_token_ids={
            t: tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens
        },
        timings_s={name: round(seconds, 1) for name, seconds in timings.items()},
        sha256={
            **{name: file_sha256(work / name / "model.safetensors") for name in MODEL_NAMES},
            "tokenizer.json": file_sha256(work / "sft" / "tokenizer.json"),
        },
        versions={"torch": torch.__version__, "transformers": transformers_version()},
    )
    (work / "demo_report.json").write_text(json.dumps(report, indent=2) + "\n")
    check_same_tokenizer([work / name for name in MODEL_NAMES])
    shutil.rmtree(out_dir, ignore_errors=True)
    work.rename(out_dir)
    logger.info(
        "demo pair built in %s in %.0f s: pairwise accuracy %s, sft greedy correct %.3f",
        out_dir,
        timings["total"],
        report["accuracy"],
        report["greedy_correct"]["sft"],
    )
    return report


def stream(seed: int, phase: str) -> random.Random:
    # String seeds are hashed with SHA-512, so they do not depend on PYTHONHASHSEED.
    return random.Random(f"demo-{seed}-{phase}")


@contextmanager
def deterministic_torch(seed: int) -> Iterator[None]:
    """Seeded, deterministic, 2-thread torch for the build; the caller's settings restored."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    bars = hf_logging.is_progress_bar_enabled()
    torch.manual_seed(seed)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    hf_logging.disable_progress_bar()  # ours is the one bar; saving and loading are instant
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        if bars:
            hf_logging.enable_progress_bar()


def save(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    """A standard model folder: config, safetensors weights, generation config, tokenizer."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    for file in path.iterdir():
        # safetensors writes 0600; a non-root server reading a read-only mount needs 0644.
        file.chmod(0o644)


def check_same_tokenizer(folders: list[Path]) -> None:
    """The service refuses pairs whose tokenizers differ: prove ours are byte-identical."""
    names = sorted(f.name for f in folders[0].iterdir() if f.name not in MODEL_FILES)
    for folder in folders[1:]:
        for name in names:
            if (folder / name).read_bytes() != (folders[0] / name).read_bytes():
                raise RuntimeError(f"{folder / name} differs from {folders[0] / name}")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def transformers_version() -> str:
    import transformers

    return str(transformers.__version__)


def main(out_dir: str = ".models/demo", seed: int = 0) -> None:
    """CLI entry: build the pair into `out_dir`, logging progress and the headline figures."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    build_demo(Path(out_dir), seed=seed)
