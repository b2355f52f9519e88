"""The running-sums task and its pair: checkable long answers, corruptions that are wrong, a
registry the build and the tools share, and a (tiny) build laid out like the sorting pair."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from transformers import PreTrainedTokenizerFast
from typer.testing import CliRunner

from harness.cli import app
from harness.demo import anatomy, sums, task
from harness.demo.build import (
    MODEL_FILES,
    MODEL_NAMES,
    build_demo,
    build_task,
    file_sha256,
    phase,
    stream,
)
from harness.demo.tasks import TASKS
from harness.demo.tokenizer import completion_ids
from harness.demo.train import DemoConfig, fresh_examples

# Seconds, not minutes: one layer, a handful of steps; the layout is what is under test.
TINY = DemoConfig(
    hidden_size=64,
    num_heads=1,
    num_layers=1,
    intermediate_size=128,
    base_steps=4,
    base_batch=4,
    base_seq_len=32,
    task_base_steps=3,
    sft_steps=4,
    sft_batch=4,
    eval_pairs=18,
    greedy_prompts=4,
)


def test_is_correct_checks_every_step() -> None:
    prompt = "Running sums: 3 5 2 7"
    assert sums.make_example(random.Random(0))[0].startswith(sums.INSTRUCTION)
    assert sums.answer_for([3, 5, 2, 7]) == "3+5=8, 8+2=10, 10+7=17"
    assert sums.is_correct(prompt, "3+5=8, 8+2=10, 10+7=17")
    assert sums.is_correct(prompt, " 3+5=8, 8+2=10, 10+7=17\n")
    assert not sums.is_correct(prompt, "3+5=8, 8+2=11, 11+7=18")  # a slip carried on
    assert not sums.is_correct(prompt, "3+5=8, 8+2=10")  # stopped early
    assert not sums.is_correct(prompt, "3 8 10 17")  # the sums without the steps
    assert not sums.is_correct("Sort ascending: x", "3")


def test_examples_are_their_own_answers() -> None:
    rng = random.Random(1)
    for _ in range(300):
        prompt, answer = sums.make_example(rng)
        numbers = sums.numbers_of(prompt)
        assert sums.MIN_LEN <= len(numbers) <= sums.MAX_LEN
        assert all(sums.MIN_NUMBER <= n <= sums.MAX_NUMBER for n in numbers)
        assert sums.is_correct(prompt, answer)
        assert answer.endswith(f"={sum(numbers)}")


@pytest.mark.parametrize("kind", sums.CORRUPTIONS)
def test_every_corruption_is_wrong(kind: str) -> None:
    rng = random.Random(kind)
    for _ in range(300):
        prompt, answer = sums.make_example(rng)
        wrong = sums.corrupt(answer, prompt, kind, rng)
        assert wrong != answer and not sums.is_correct(prompt, wrong)


def written_sums(answer: str) -> list[int]:
    return [int(step.split("=")[1]) for step in answer.split(", ")]


def test_the_careless_writer_keeps_the_layout_and_loses_carries() -> None:
    """Base's pretraining transcripts: every step's layout right, each step built on the sum
    as written, about half the carries lost, a few small slips, sums one token each."""
    rng = random.Random(4)
    carries = lost = steps = slips = 0
    for _ in range(2000):
        prompt, answer = sums.sloppy_example(rng)
        numbers = sums.numbers_of(prompt)
        written = [numbers[0], *written_sums(answer)]
        assert answer == sums.render(numbers, written)
        for before, n, after in zip(written[:-1], numbers[1:], written[1:], strict=True):
            steps += 1
            assert 0 <= after <= 99
            if before % 10 + n >= 10:
                carries += 1
                lost += after == before + n - 10
            slips += after - (before + n) in sums.SMALL_SLIPS
    assert abs(lost / carries - sums.CARRY_LOSS) < 0.05
    assert 0.01 < slips / steps < sums.SLIP_RATE


def test_a_propagated_slip_carries_and_an_isolated_one_does_not() -> None:
    rng = random.Random(2)
    for _ in range(100):
        prompt, answer = sums.make_example(rng)
        right = written_sums(answer)
        carried = written_sums(sums.corrupt(answer, prompt, "propagated", rng))
        offsets = [w - r for w, r in zip(carried, right, strict=True)]
        first = next(i for i, d in enumerate(offsets) if d)
        assert offsets[first] in sums.SLIPS and set(offsets[first:]) == {offsets[first]}
        isolated = written_sums(sums.corrupt(answer, prompt, "isolated", rng))
        assert sum(w != r for w, r in zip(isolated, right, strict=True)) == 1
        assert isolated[-1] == right[-1]


def test_answers_are_16_to_64_tokens(demo_dir: Path) -> None:
    """Under the demo tokenizer, EOS included; the shortest and longest answers as well."""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(demo_dir / "sft")
    rng = random.Random(3)
    answers = [sums.make_example(rng)[1] for _ in range(1000)]
    answers += [
        sums.answer_for([sums.MIN_NUMBER] * sums.MIN_LEN),
        sums.answer_for([sums.MAX_NUMBER] * sums.MAX_LEN),
    ]
    lengths = [len(completion_ids(tokenizer, answer)) for answer in answers]
    assert min(lengths) >= 16 and max(lengths) <= 64
    assert max(lengths) + 8 <= TASKS["sums"].max_answer_tokens


def test_the_registry_names_each_task_once() -> None:
    assert set(TASKS) == {"sort", "sums"}
    assert TASKS["sort"].make_example is task.make_example
    assert TASKS["sort"].max_answer_tokens == 16
    assert str(TASKS["sort"].folder) == ".models/demo"
    assert str(TASKS["sums"].folder) == ".models/demo-sums"
    for name, demo_task in TASKS.items():
        assert demo_task.name == name and demo_task.description
        prompt, answer = demo_task.make_example(random.Random(name))
        assert demo_task.is_correct(prompt, answer)
        for kind in demo_task.corruptions:
            wrong = demo_task.corrupt(answer, prompt, kind, random.Random(kind))
            assert not demo_task.is_correct(prompt, wrong)


def test_an_unknown_task_is_refused() -> None:
    result = CliRunner().invoke(app, ["demo", "--task", "nope"])
    assert result.exit_code == 2 and "sort, sums" in result.output


@pytest.fixture(scope="module")
def tiny_pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("demo")
    build_demo(root / "sort", seed=0, progress=False, config=TINY)
    report = build_task("sums", root / "sums", root / "sort", seed=0, progress=False, config=TINY)
    return root / "sort", root / "sums", report


def test_a_sums_pair_is_laid_out_like_the_sorting_pair(
    tiny_pairs: tuple[Path, Path, dict[str, Any]],
) -> None:
    sort_dir, sums_dir, report = tiny_pairs
    layout = sorted(p.name for p in sort_dir.iterdir())
    assert sorted(p.name for p in sums_dir.iterdir()) == layout
    assert not sums_dir.with_name("sums.partial").exists()
    for name in MODEL_NAMES:
        assert sorted(p.name for p in (sums_dir / name).iterdir()) == sorted(
            p.name for p in (sort_dir / name).iterdir()
        )
        assert file_sha256(sums_dir / name / "model.safetensors") == report["sha256"][name]
    # The same tokenizer, byte for byte (the service refuses a pair whose tokenizers differ);
    # base trained further on the task's pretraining transcripts.
    for file in (sort_dir / "base").iterdir():
        if file.name not in MODEL_FILES:
            assert (sums_dir / "base" / file.name).read_bytes() == file.read_bytes()
    assert report["sha256"]["base"] != file_sha256(sort_dir / "base" / "model.safetensors")
    assert report["sha256"]["sft"] != report["sha256"]["base"]
    assert report["task"] == TASKS["sums"].description
    assert report["sft_demonstrations"] == TINY.sft_steps * TINY.sft_batch
    assert 16 <= report["answer_tokens"]["min"] <= report["answer_tokens"]["max"] <= 64
    assert set(report["greedy_correct"]) == set(MODEL_NAMES)


def test_the_sums_heldout_pairs_are_never_trained_on(
    tiny_pairs: tuple[Path, Path, dict[str, Any]],
) -> None:
    _, sums_dir, _ = tiny_pairs
    pairs = [json.loads(line) for line in (sums_dir / "heldout_pairs.jsonl").open()]
    assert len(pairs) == TINY.eval_pairs
    assert {p["kind"] for p in pairs} == set(sums.CORRUPTIONS)
    # The build's own draws, replayed: the demonstrations SFT saw.
    trained = fresh_examples(
        sums.make_example,
        stream(0, phase(TASKS["sums"], "sft")),
        set(),
        TINY.sft_steps * TINY.sft_batch,
    )
    trained_prompts = {prompt for prompt, _ in trained}
    for pair in pairs:
        assert set(pair) == {"messages", "chosen", "rejected", "kind"}
        prompt = pair["messages"][0]["content"]
        assert prompt not in trained_prompts
        assert sums.is_correct(prompt, pair["chosen"])
        assert not sums.is_correct(prompt, pair["rejected"])


def test_the_sums_build_is_reproducible(
    tiny_pairs: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    sort_dir, sums_dir, report = tiny_pairs
    again = build_task("sums", tmp_path / "sums", sort_dir, seed=0, progress=False, config=TINY)
    assert again["sha256"] == report["sha256"]
    assert (tmp_path / "sums" / "heldout_pairs.jsonl").read_bytes() == (
        sums_dir / "heldout_pairs.jsonl"
    ).read_bytes()


def test_the_anatomy_covers_every_token_of_the_expert_answers(
    tiny_pairs: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    _, sums_dir, _ = tiny_pairs
    out = tmp_path / "anatomy.json"
    report = anatomy.main(["--demo", str(sums_dir), "--prompts", "3", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    roles = report["by_role"]
    assert roles["first"]["tokens"] == roles["eos"]["tokens"] == 3
    assert roles["addend"]["tokens"] == roles["sum"]["tokens"] == roles["copy"]["tokens"] + 3
    for row in roles.values():
        assert 0 <= row["plausible_deviation_earns_more"] <= 1
        assert row["sft_entropy"] >= 0 and row["base_entropy"] >= 0
    assert set(report["extension_gain"]) == {"1 more", "2 more", "4 more"}
