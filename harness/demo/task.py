"""The demonstration task: sort a list of numbers ascending. An expert answer is checkable, so
the reward can be shown to mean something: expert completions must out-score corrupted ones.

Pure text and `random.Random`: no tokenizer, no torch, so the task is easy to test alone.
"""

from __future__ import annotations

import pydoc_data.topics
import random
from collections.abc import Iterator

INSTRUCTION = "Sort ascending:"
MIN_LEN, MAX_LEN, MAX_NUMBER = 3, 8, 100  # lists of 3..8 numbers in 0..99
CORRUPTIONS: tuple[str, ...] = (
    "swap",  # two adjacent numbers exchanged
    "replace",  # one number replaced by one that is not in the list
    "drop",  # one number left out
    "duplicate",  # one number written twice
    "unsorted",  # the input copied as given
    "descending",  # sorted the wrong way
)
# Chat tasks that are not sorting: base learns the chat format and the number tokens from them.
OTHER_TASKS = ("Repeat:", "Reverse:", "Count:", "First:", "Last:", "Max:", "Min:")

Chat = tuple[str, str]  # (user prompt, assistant answer)


def join(numbers: list[int]) -> str:
    return " ".join(str(n) for n in numbers)


def random_numbers(rng: random.Random) -> list[int]:
    return [rng.randrange(MAX_NUMBER) for _ in range(rng.randint(MIN_LEN, MAX_LEN))]


def make_example(rng: random.Random) -> Chat:
    """A prompt ("Sort ascending: 42 7 19") and its expert completion ("7 19 42")."""
    numbers = random_numbers(rng)
    return f"{INSTRUCTION} {join(numbers)}", join(sorted(numbers))


def numbers_of(text: str) -> list[int]:
    """The numbers of a prompt or a completion; ValueError on anything else."""
    return [int(word) for word in text.removeprefix(INSTRUCTION).split()]


def is_correct(prompt: str, completion: str) -> bool:
    try:
        return numbers_of(completion.strip()) == sorted(numbers_of(prompt))
    except ValueError:
        return False


def corrupt(completion: str, prompt: str, kind: str, rng: random.Random) -> str:
    """A plausible wrong answer of the given kind; never equal to the expert answer."""
    given, answer = numbers_of(prompt), numbers_of(completion)
    wrong = list(answer)
    if kind == "swap":
        spots = [i for i in range(len(wrong) - 1) if wrong[i] != wrong[i + 1]]
        if spots:
            i = rng.choice(spots)
            wrong[i], wrong[i + 1] = wrong[i + 1], wrong[i]
    elif kind == "replace":
        absent = [n for n in range(MAX_NUMBER) if n not in given]
        wrong[rng.randrange(len(wrong))] = rng.choice(absent)
        wrong.sort()  # only the value is wrong, not the order
    elif kind == "drop":
        del wrong[rng.randrange(len(wrong))]
    elif kind == "duplicate":
        i = rng.randrange(len(wrong))
        wrong.insert(i, wrong[i])
    elif kind == "unsorted":
        wrong = list(given)
    elif kind == "descending":
        wrong = sorted(given, reverse=True)
    else:
        raise ValueError(f"unknown corruption {kind!r}; known: {', '.join(CORRUPTIONS)}")
    if wrong == answer:
        # All numbers equal, or the input was already sorted: a replacement always differs.
        return corrupt(completion, prompt, "replace", rng)
    return join(wrong)


def other_task(rng: random.Random) -> Chat:
    """A chat about numbers that is not sorting (copy, reverse, count, pick one)."""
    numbers = random_numbers(rng)
    kind = rng.choice(OTHER_TASKS)
    answers = {
        "Repeat:": join(numbers),
        "Reverse:": join(numbers[::-1]),
        "Count:": str(len(numbers)),
        "First:": str(numbers[0]),
        "Last:": str(numbers[-1]),
        "Max:": str(max(numbers)),
        "Min:": str(min(numbers)),
    }
    return f"{kind} {join(numbers)}", answers[kind]


def english_paragraphs() -> list[str]:
    """English prose shipped with CPython (the pydoc topics, ~440 KB): generic text for base."""
    topics = pydoc_data.topics.topics
    text = "\n\n".join(topics[key] for key in sorted(topics))
    return [p.strip() for p in text.split("\n\n") if len(p.strip()) > 40]


def number_line(rng: random.Random) -> str:
    """Numbers in random (unsorted) order, in a few plain-text shapes."""
    numbers = [rng.randrange(MAX_NUMBER) for _ in range(rng.randint(2, 10))]
    shape = rng.randrange(3)
    if shape == 0:
        return f"Numbers: {join(numbers)}"
    if shape == 1:
        return join(numbers)
    return f"We counted {numbers[0]} items and {numbers[-1]} boxes."


def generic_corpus(rng: random.Random, paragraphs: list[str]) -> Iterator[str | Chat]:
    """Base's endless training mix: prose (half), number lines, chats of other tasks.

    Chats come as (prompt, answer) so the caller renders them exactly as they are scored.
    """
    while True:
        choice = rng.random()
        if choice < 0.5:
            yield rng.choice(paragraphs)
        elif choice < 0.7:
            yield number_line(rng)
        else:
            yield other_task(rng)
