"""Tokenization boundary cases on the demo tokenizer: the split an RL trainer makes."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from dense_reward_client.fingerprint import tokenizer_fingerprint
from transformers import AutoTokenizer

from dense_reward_server.rewards.tokenization import RewardTokenizer


def test_prompt_gets_bos_once_and_completion_gets_no_special_tokens(tok: RewardTokenizer) -> None:
    bos = tok.hf.bos_token_id
    prompt = tok.encode_prompt("Sort ascending: 5 3 9")
    assert prompt[0] == bos and prompt.count(bos) == 1
    completion, _ = tok.encode_completion("3 5 9")
    assert bos not in completion and tok.eos_token_id not in completion


def test_prompt_and_completion_are_tokenized_separately(tok: RewardTokenizer) -> None:
    # A trailing space on the prompt stays in the prompt; the completion starts fresh.
    prompt, completion = "The answer is ", "42 apples"
    prompt_ids = tok.encode_prompt(prompt)
    completion_ids, offsets = tok.encode_completion(completion)
    assert tok.hf.decode(prompt_ids) == tok.hf.bos_token + prompt  # trailing space included
    assert tok.hf.decode(completion_ids) == completion  # nothing borrowed from the prompt
    assert offsets[0][0] == 0 and tok.token_strings(completion_ids)[0].startswith("4")
    # The joined string moves the boundary (" " + "4" merge): the reason for the split. Its
    # first len(prompt_ids) tokens are no longer the prompt, and the sequences differ.
    joined = tok.encode_prompt(prompt + completion)
    split = prompt_ids + completion_ids
    assert joined[: len(prompt_ids)] != prompt_ids
    assert joined != split and tok.hf.decode(joined) == tok.hf.decode(split)


@pytest.mark.parametrize(
    "text",
    [
        " 4.",
        "12345 678",
        "héllo wörld",
        "emoji 😀 and 中文",
        "  leading spaces",
        "trailing  ",
        "a\n\nb",
    ],
)
def test_offsets_tile_the_completion_text(tok: RewardTokenizer, text: str) -> None:
    ids, offsets = tok.encode_completion(text)
    assert len(ids) == len(offsets)
    assert offsets[0][0] == 0 and offsets[-1][1] == len(text)
    for (_, end), (start, _) in itertools.pairwise(offsets):
        assert end == start
    assert tok.hf.decode(ids) == text


def test_leading_space_belongs_to_the_token(tok: RewardTokenizer) -> None:
    ids, offsets = tok.encode_completion(" 4.")
    pieces = tok.token_strings(ids)
    assert "".join(pieces) == " 4."
    assert [" 4."[a:b] for a, b in offsets] == pieces


def test_chat_template_renders_one_bos_and_the_generation_prompt(tok: RewardTokenizer) -> None:
    messages = [{"role": "user", "content": "Sort ascending: 5 3 9"}]
    ids = tok.encode_messages(messages)
    assert ids.count(tok.hf.bos_token_id) == 1 and ids[0] == tok.hf.bos_token_id
    reference = tok.hf.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    if isinstance(reference, dict) or hasattr(reference, "keys"):
        reference = reference["input_ids"]
    assert ids == list(reference)
    without = tok.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert len(ids) > len(tok.hf(without, add_special_tokens=False)["input_ids"])


def test_fingerprint_is_stable_and_sees_the_chat_template(demo_dir: Path) -> None:
    first = AutoTokenizer.from_pretrained(str(demo_dir / "sft"))
    second = AutoTokenizer.from_pretrained(str(demo_dir / "base"))
    assert tokenizer_fingerprint(first) == tokenizer_fingerprint(second)
    assert tokenizer_fingerprint(first).startswith("sha256:")
    second.chat_template = "{{ messages }}"
    assert tokenizer_fingerprint(first) != tokenizer_fingerprint(second)
