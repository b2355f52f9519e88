"""Build the demo pairs: tokenizer, `base`, `sft` and `sft-half`, seeded and reproducible.

`base` learns generic text (English prose, number lists, chat transcripts of other tasks);
`sft` is `base` fine-tuned, in one pass, on expert demonstrations of a task; `sft-half` is the
checkpoint after half of those demonstrations (the paper's reviewers' best baseline). The
sorting pair (`build_demo`) trains the tokenizer and `base`; every other task's pair
(`build_task`) starts from that `base` (so all pairs share one tokenizer), trains it further on
the task's pretraining transcripts where the task has them, then fine-tunes it. The build
then measures on held-out prompts how often the reward ranks the expert completion above a
corrupted one, and writes `demo_report.json` and `heldout_pairs.jsonl` beside the models.
The same seed gives byte-identical weights (the report records their sha256).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Iterator
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
from harness.demo.tasks import SORT, TASKS, DemoTask
from harness.demo.tokenizer import build_tokenizer, training_texts
from harness.demo.train import TASK_CONFIGS, DemoConfig, new_model, train_base, train_sft

logger = logging.getLogger(__name__)

MODEL_NAMES = ("base", "sft", "sft-half")
MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors"}
THREADS = 2  # the reference machine; also fixes the order of float reductions
Timings = dict[str, float]


def build_demo(
    out_dir: Path, seed: int = 0, progress: bool = True, config: DemoConfig | None = None
) -> dict[str, Any]:
    """Build the sorting pair, tokenizer and `base` included, under `out_dir` (replacing it);
    return and write the report.

    `config` overrides the defaults (its seed is replaced by `seed`), e.g. a tiny build in tests.
    """
    config = replace(config or TASK_CONFIGS[SORT.name], seed=seed)
    started = time.perf_counter()
    timings: Timings = {}
    with partial_folder(Path(out_dir)) as work, deterministic_torch(seed):
        # Independent streams per phase: changing one phase's draws leaves the others alone.
        paragraphs = task.english_paragraphs()
        texts = training_texts(stream(seed, "tokenizer"), paragraphs)
        tokenizer = build_tokenizer(texts, config.vocab_size, config.context)
        timings["tokenizer"] = time.perf_counter() - started

        model = new_model(config, tokenizer)
        with progress_bar(config.base_steps + config.sft_steps, "demo pair", progress) as bar:
            mark = time.perf_counter()
            corpus = task.generic_corpus(stream(seed, "base"), paragraphs)
            train_base(model, tokenizer, corpus, config, bar)
            save(model, tokenizer, work / "base")
            timings["base"] = time.perf_counter() - mark

            trained_on = fine_tune(
                SORT,
                model,
                tokenizer,
                config,
                bar,
                timings,
                lambda name: save(model, tokenizer, work / name),
            )
        report = finish(SORT, work, tokenizer, config, trained_on, timings, started)
    log_built(SORT, Path(out_dir), report)
    return report


def build_task(
    name: str,
    out_dir: Path,
    sort_dir: Path,
    seed: int = 0,
    progress: bool = True,
    config: DemoConfig | None = None,
) -> dict[str, Any]:
    """Build task `name`'s pair under `out_dir` (replacing it) from the sorting pair's `base`
    and tokenizer in `sort_dir`, copied so that the folder is a pair of its own.

    Of `config` (the task's defaults when None), only the SFT and evaluation fields apply:
    the architecture is base's.
    """
    demo_task = TASKS[name]
    config = replace(config or TASK_CONFIGS[name], seed=seed)
    started = time.perf_counter()
    timings: Timings = {}
    base_steps = config.task_base_steps if demo_task.pretrain_example else 0
    with partial_folder(Path(out_dir)) as work, deterministic_torch(seed):
        base = work / "base"
        shutil.copytree(Path(sort_dir) / "base", base)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(base)
        model = LlamaForCausalLM.from_pretrained(base, dtype=torch.float32)
        with progress_bar(base_steps + config.sft_steps, f"{name} pair", progress) as bar:
            if base_steps:
                pretrain(demo_task, model, tokenizer, config, bar, base_steps)
                save_with_tokenizer_of(model, Path(sort_dir) / "base", base)
            timings["base"] = time.perf_counter() - started
            trained_on = fine_tune(
                demo_task,
                model,
                tokenizer,
                config,
                bar,
                timings,
                lambda folder: save_with_tokenizer_of(model, base, work / folder),
            )
        report = finish(demo_task, work, tokenizer, config, trained_on, timings, started)
    log_built(demo_task, Path(out_dir), report)
    return report


def pretrain(
    demo_task: DemoTask,
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    config: DemoConfig,
    bar: tqdm,
    steps: int,
) -> None:
    """Base's training continued on its generic corpus mixed with the task's pretraining
    transcripts (`config.task_share` of the samples): base then knows the task's layout."""
    assert demo_task.pretrain_example is not None
    make = demo_task.pretrain_example
    rng = stream(config.seed, phase(demo_task, "base"))
    generic = task.generic_corpus(rng, task.english_paragraphs())

    def corpus() -> Iterator[str | task.Chat]:
        while True:
            yield make(rng) if rng.random() < config.task_share else next(generic)

    train_base(model, tokenizer, corpus(), config, bar, steps)


def fine_tune(
    demo_task: DemoTask,
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    config: DemoConfig,
    bar: tqdm,
    timings: Timings,
    save_as: Callable[[str], None],
) -> set[str]:
    """SFT of `model` on the task's demonstrations, saved as `sft-half` and `sft`; returns the
    prompts trained on."""
    mark = time.perf_counter()
    trained_on = train_sft(
        model,
        tokenizer,
        demo_task.make_example,
        stream(config.seed, phase(demo_task, "sft")),
        config,
        bar,
        at_half=lambda: save_as("sft-half"),
    )
    save_as("sft")
    timings["sft"] = time.perf_counter() - mark
    return trained_on


def finish(
    demo_task: DemoTask,
    work: Path,
    tokenizer: PreTrainedTokenizerFast,
    config: DemoConfig,
    trained_on: set[str],
    timings: Timings,
    started: float,
) -> dict[str, Any]:
    """Held-out pairs, the evaluation and the report, written into `work`."""
    seed = config.seed
    mark = time.perf_counter()
    pairs = heldout_pairs(
        demo_task, stream(seed, phase(demo_task, "heldout")), trained_on, config.eval_pairs
    )
    write_jsonl(work / "heldout_pairs.jsonl", pairs)
    other_rng = stream(seed, "other-tasks")
    other = [task.other_task(other_rng) for _ in range(config.greedy_prompts)]
    report = evaluate(demo_task, work, tokenizer, pairs, config.greedy_prompts, other)
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
    return report


def log_built(demo_task: DemoTask, out_dir: Path, report: dict[str, Any]) -> None:
    logger.info(
        "%s pair built in %s in %.0f s: pairwise accuracy %s, greedy correct %s",
        demo_task.name,
        out_dir,
        report["timings_s"]["total"],
        report["accuracy"],
        report["greedy_correct"],
    )


def phase(demo_task: DemoTask, name: str) -> str:
    """A task's stream name; the sorting pair's keep their first names (the same weights)."""
    return name if demo_task is SORT else f"{demo_task.name}-{name}"


@contextmanager
def partial_folder(out_dir: Path) -> Iterator[Path]:
    """A work folder beside `out_dir`, renamed to it only when the build completes: a
    half-built folder never looks finished."""
    work = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    yield work
    shutil.rmtree(out_dir, ignore_errors=True)
    work.rename(out_dir)


def progress_bar(total: int, desc: str, progress: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="step", disable=not progress)


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
    make_readable(path)


def save_with_tokenizer_of(model: LlamaForCausalLM, base: Path, path: Path) -> None:
    """`save`, the tokenizer files copied from `base` byte for byte: a loaded tokenizer saves
    extra fields, and the service refuses a pair whose tokenizer files differ."""
    model.save_pretrained(path)
    for file in base.iterdir():
        if file.name not in MODEL_FILES:
            shutil.copyfile(file, path / file.name)
    make_readable(path)


def make_readable(path: Path) -> None:
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


def main(
    out_dir: str | None = None,
    seed: int = 0,
    task_name: str = SORT.name,
    sort_dir: str | None = None,
) -> None:
    """CLI entry: build task `task_name`'s pair into `out_dir` (default: the task's folder),
    logging progress and the headline figures. Another task than sorting starts from the
    sorting pair in `sort_dir` (default: its folder), built there first if it is missing."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = Path(out_dir) if out_dir is not None else TASKS[task_name].folder
    if task_name == SORT.name:
        build_demo(out, seed=seed)
        return
    sort_pair = Path(sort_dir) if sort_dir is not None else SORT.folder
    if not (sort_pair / "base" / "model.safetensors").exists():
        build_demo(sort_pair, seed=seed)
    build_task(task_name, out, sort_pair, seed=seed)
