"""The policy's own samples for the on-support audit: N answers per prompt at temperature 1.

Sampled here with transformers (the server's own dependency) from a local policy folder, by
default the server's SFT model; a user whose policy needs another stack passes the samples in
a file instead (`--samples`). Seeded: the same seed gives the same samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

BATCH = 64  # sequences per generate call


def sample_answers(
    policy: str,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[list[int]],
    count: int,
    max_new_tokens: int,
    seed: int,
) -> list[list[list[int]]]:
    """`count` sampled answers (token ids, the EOS kept when drawn) for every prompt."""
    model = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32)
    model.eval()
    torch.manual_seed(seed)  # generate() draws from torch's global generator
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    pad = eos if pad is None else pad
    answers: list[list[list[int]]] = []
    for prompt in prompts:
        mine: list[list[int]] = []
        while len(mine) < count:
            rows = min(BATCH, count - len(mine))
            ids = torch.tensor([prompt] * rows)
            with torch.no_grad():
                out = model.generate(  # type: ignore[operator,misc]
                    ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad,
                    eos_token_id=eos,
                )
            mine += [cut_at_eos(row[len(prompt) :].tolist(), eos) for row in out]
        answers.append(mine)
    return answers


def cut_at_eos(ids: list[int], eos: int | None) -> list[int]:
    """The answer up to and including its first EOS (generate pads after it)."""
    if eos is not None and eos in ids:
        return ids[: ids.index(eos) + 1]
    return ids
