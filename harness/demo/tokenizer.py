"""The demo tokenizer: byte-level BPE trained with `tokenizers`, saved as a transformers folder.

BOS comes from a TemplateProcessing post-processor, so `add_special_tokens=True` prepends it
exactly once and `add_special_tokens=False` adds nothing. The chat template writes BOS itself
(rendered text is tokenized without special tokens) and ends each assistant turn with EOS, the
token SFT learns to emit after an answer.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from harness.demo import task

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, *ROLE_TOKENS)  # ids 0..6, in this order
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' + message['content'] + eos_token }}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def training_texts(rng: random.Random, paragraphs: list[str]) -> list[str]:
    """What BPE learns merges from: prose plus the number-heavy texts the models will see.

    Prompts and answers are separate texts, as they are tokenized: an answer starts with a
    number that has no leading space.
    """
    numbers = [task.number_line(rng) for _ in range(5_000)]
    chats = [text for _ in range(10_000) for text in task.other_task(rng)]
    sorts = [text for _ in range(20_000) for text in task.make_example(rng)]
    # A bare "82" only starts an answer (whose first number is the smallest): rare. Every
    # number, with and without its space, is made frequent enough to earn its own token.
    every_number = [f"{n} {n}" for n in range(task.MAX_NUMBER)] * 200
    return paragraphs + numbers + chats + sorts + every_number


def build_tokenizer(texts: Iterable[str], vocab_size: int, context: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE; offsets are not trimmed, so " 4" maps to the span [0, 2]."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, core.token_to_id(BOS))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        model_max_length=context,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    check_tokenizer(tokenizer)
    return tokenizer


def check_tokenizer(tokenizer: PreTrainedTokenizerFast) -> None:
    """Fail the build loudly if the properties the demo and the service rely on do not hold."""
    for n in range(task.MAX_NUMBER):
        for text in (str(n), f" {n}"):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise RuntimeError(f"{text!r} is {len(ids)} tokens: raise the vocabulary size")
    for position, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.convert_tokens_to_ids(token) != position:
            raise RuntimeError(f"special token {token} is not id {position}")
    with_bos = tokenizer("7 3", add_special_tokens=True)["input_ids"]
    without = tokenizer("7 3", add_special_tokens=False)["input_ids"]
    if with_bos != [tokenizer.bos_token_id, *without] or tokenizer.bos_token_id in without:
        raise RuntimeError("add_special_tokens must prepend BOS once and only then")
    chat = chat_prompt_ids(tokenizer, "Sort ascending: 7 3")
    if chat.count(tokenizer.bos_token_id) != 1 or chat[0] != tokenizer.bos_token_id:
        raise RuntimeError("the chat template must start with exactly one BOS")
    offsets = tokenizer(" 4", add_special_tokens=False, return_offsets_mapping=True)
    if [tuple(span) for span in offsets["offset_mapping"]] != [(0, 2)]:
        raise RuntimeError("offsets must keep the leading space: ' 4' -> [0, 2]")


def chat_prompt_ids(tokenizer: PreTrainedTokenizerFast, prompt: str) -> list[int]:
    """A user prompt as the service renders `messages`: template text, no added specials."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer(str(text), add_special_tokens=False)["input_ids"])


def completion_ids(tokenizer: PreTrainedTokenizerFast, completion: str) -> list[int]:
    """An answer tokenized on its own, then EOS: ending the answer is an action too."""
    ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    return [*ids, tokenizer.eos_token_id]
