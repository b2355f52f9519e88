"""Start-up check: SFT and base must share one vocabulary, or the log-ratio means nothing."""

from __future__ import annotations

from typing import Protocol

from dense_reward_server.errors import StartupError


class HasVocab(Protocol):
    def get_vocab(self) -> dict[str, int]: ...


def id_to_token(tokenizer: HasVocab) -> dict[int, str]:
    return {index: token for token, index in tokenizer.get_vocab().items()}


def check_same_vocabulary(
    sft: HasVocab, base: HasVocab, sft_model_vocab: int, base_model_vocab: int
) -> None:
    """Raise StartupError naming the first differing token id (or size) of the two models."""
    if sft_model_vocab != base_model_vocab:
        raise StartupError(
            f"SFT and base models have different vocabulary sizes: "
            f"sft has {sft_model_vocab} embedding rows, base has {base_model_vocab}"
        )
    sft_tokens, base_tokens = id_to_token(sft), id_to_token(base)
    for index in sorted(sft_tokens.keys() | base_tokens.keys()):
        left, right = sft_tokens.get(index), base_tokens.get(index)
        if left != right:
            raise StartupError(
                f"SFT and base tokenizers differ at token id {index}: "
                f"sft has {left!r}, base has {right!r}"
            )
