"""Tokenization as an RL trainer does it: prompt and completion tokenized separately.

`tokenize(prompt, special tokens as the model expects) + tokenize(completion, no special
tokens)`; tokenizing the joined string would move the boundary (" The" vs " " + "The").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dense_reward_client.fingerprint import tokenizer_fingerprint
from transformers import AutoTokenizer, PreTrainedTokenizerBase

Offsets = list[tuple[int, int]]


class ChatTemplateError(ValueError):
    """The chat template is missing or refused the messages."""


class RewardTokenizer:
    """The SFT model's tokenizer, with the operations the reward service needs."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> None:
        self._tok = tokenizer
        # Ids the models can score: the tokenizer and the embedding table must both know them.
        self.vocab_size = min(len(tokenizer), vocab_size)
        self.eos_token_id: int | None = tokenizer.eos_token_id
        self.fingerprint = tokenizer_fingerprint(tokenizer)
        self._pieces: dict[int, str] = {}

    @classmethod
    def from_pretrained(
        cls, path: str, vocab_size: int, revision: str | None = None
    ) -> RewardTokenizer:
        return cls(AutoTokenizer.from_pretrained(path, revision=revision), vocab_size)

    @property
    def hf(self) -> PreTrainedTokenizerBase:
        return self._tok

    @property
    def has_chat_template(self) -> bool:
        return bool(self._tok.chat_template)

    def encode_prompt(self, text: str, *, rendered: bool = False) -> list[int]:
        """Prompt text with the special tokens the model expects (e.g. BOS). A `rendered`
        prompt (a trainer's own chat rendering) that already starts with the BOS text gets
        none added, so BOS is not doubled."""
        bos = self._tok.bos_token
        special = not (rendered and bos and text.startswith(bos))
        return list(self._tok(text, add_special_tokens=special)["input_ids"])

    def encode_messages(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Chat messages through the chat template, with the generation prompt.

        The rendered text already holds BOS, so it is tokenized without special tokens.
        """
        if not self.has_chat_template:
            raise ChatTemplateError("the SFT tokenizer has no chat template")
        try:
            text = self._tok.apply_chat_template(
                [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
            )
        except Exception as error:  # jinja raises its own types for template refusals
            raise ChatTemplateError(f"the chat template refused the messages: {error}") from error
        return list(self._tok(str(text), add_special_tokens=False)["input_ids"])

    def encode_completion(self, text: str) -> tuple[list[int], Offsets]:
        """Completion token ids and character offsets that tile the text with no gaps.

        Some tokenizers trim the leading space from a token's offsets; the space is part of the
        token (" 4"), so each token starts where the previous one ended.
        """
        encoded = self._tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        offsets: Offsets = []
        previous_end = 0
        for _, end in encoded["offset_mapping"]:
            end = max(int(end), previous_end)
            offsets.append((previous_end, end))
            previous_end = end
        if offsets and previous_end < len(text):
            offsets[-1] = (offsets[-1][0], len(text))
        return ids, offsets

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """Each token decoded on its own (a partial UTF-8 character shows as U+FFFD)."""
        missing = sorted({i for i in ids if i not in self._pieces})
        if missing:
            decoded = self._tok.batch_decode([[i] for i in missing])
            self._pieces.update(zip(missing, decoded, strict=True))
        return [self._pieces[i] for i in ids]
