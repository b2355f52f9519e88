"""The long-answer demonstration task: running sums, written out one addition at a time.

"Running sums: 3 5 2 7" -> "3+5=8, 8+2=10, 10+7=17". Each step copies the previous sum, adds
the next number of the prompt and writes the new sum, so every token is checkable and a slip
early in the answer carries into every later step: the case a dense, per-token reward is for.
Inputs are 1..9 and lists at most 11 long, so every sum stays below 100 and is one token of the
demo tokenizer: an answer is 6 tokens a step, 18..60 with its EOS.

Pure text and `random.Random`, like `task`.
"""

from __future__ import annotations

import random

from harness.demo.task import Chat, join

INSTRUCTION = "Running sums:"
MIN_LEN, MAX_LEN, MIN_NUMBER, MAX_NUMBER = 4, 11, 1, 9  # lists of 4..11 numbers in 1..9
MAX_ANSWER_TOKENS = 72  # the longest answer (60 tokens with EOS) and a margin
CORRUPTIONS: tuple[str, ...] = (
    "propagated",  # one sum wrong, the later steps built on it (locally right, globally wrong)
    "isolated",  # one sum wrong, the later sums right (the next step's addition is wrong)
    "drop",  # one number of the prompt skipped
    "duplicate",  # one number of the prompt added twice
    "copy",  # the prompt's numbers copied as given
    "truncate",  # stopped one or more steps early
)
SLIPS = (-10, -2, -1, 1, 2, 10)  # how a written sum goes wrong: off by one or two, a lost carry
# The careless writer of base's pretraining transcripts: forgets half of the carries and slips
# by one or two on 1 sum in 20; the layout is always right.
CARRY_LOSS, SLIP_RATE, SMALL_SLIPS = 0.5, 0.05, (-2, -1, 1, 2)


def make_example(rng: random.Random) -> Chat:
    """A prompt ("Running sums: 3 5 2") and its expert completion ("3+5=8, 8+2=10")."""
    numbers = [rng.randint(MIN_NUMBER, MAX_NUMBER) for _ in range(rng.randint(MIN_LEN, MAX_LEN))]
    return f"{INSTRUCTION} {join(numbers)}", answer_for(numbers)


def sloppy_example(rng: random.Random) -> Chat:
    """A prompt and a careless writer's answer, for base's pretraining corpus: base learns the
    layout (how many steps, where the answer ends) and arithmetic with a human's common error,
    so that `log pi_sft - log pi_base` measures what the expert demonstrations taught (to
    carry, not to slip) rather than the layout, which a base that never saw the task would pay
    for per token (a longer answer then earns more). Each step builds on the sum as written.
    """
    prompt, _ = make_example(rng)
    numbers = numbers_of(prompt)
    written = [numbers[0]]
    for n in numbers[1:]:
        total = written[-1] + n
        if written[-1] % 10 + n >= 10 and rng.random() < CARRY_LOSS:
            total -= 10
        elif rng.random() < SLIP_RATE:
            total = min(99, max(0, total + rng.choice(SMALL_SLIPS)))  # one token of the demo
        written.append(total)
    return prompt, render(numbers, written)


def running(numbers: list[int]) -> list[int]:
    sums, total = [], 0
    for n in numbers:
        total += n
        sums.append(total)
    return sums


def render(numbers: list[int], sums: list[int]) -> str:
    """Step k adds numbers[k] to the sum written before it, whatever that sum was."""
    return ", ".join(f"{sums[k - 1]}+{numbers[k]}={sums[k]}" for k in range(1, len(numbers)))


def answer_for(numbers: list[int]) -> str:
    return render(numbers, running(numbers))


def numbers_of(prompt: str) -> list[int]:
    """The numbers of a prompt; ValueError on anything else."""
    return [int(word) for word in prompt.removeprefix(INSTRUCTION).split()]


def is_correct(prompt: str, completion: str) -> bool:
    """The expert's exact steps (surrounding whitespace aside): the layout is part of the task."""
    try:
        return completion.strip() == answer_for(numbers_of(prompt))
    except ValueError:
        return False


def corrupt(completion: str, prompt: str, kind: str, rng: random.Random) -> str:
    """A plausible wrong answer of the given kind; never equal to the expert answer.

    `completion` is the expert answer to `prompt`; the corruption is rebuilt from the prompt.
    """
    given = numbers_of(prompt)
    sums = running(given)
    # A step with a step after it (prompts have 4+ numbers): the slip's aftermath is visible.
    step = rng.randrange(1, len(given) - 1)
    if kind in ("propagated", "isolated"):
        slip = rng.choice([d for d in SLIPS if sums[step] + d >= 0])
        last = len(sums) if kind == "propagated" else step + 1
        wrong = sums[:step] + [s + slip for s in sums[step:last]] + sums[last:]
        return render(given, wrong)
    if kind == "drop":
        return answer_for(given[:step] + given[step + 1 :])
    if kind == "duplicate":
        return answer_for(given[: step + 1] + given[step:])
    if kind == "copy":
        return join(given)
    if kind == "truncate":
        return answer_for(given[: step + 1])
    raise ValueError(f"unknown corruption {kind!r}; known: {', '.join(CORRUPTIONS)}")
