"""A demo model's sampling, greedy decoding and per-token log-probabilities: the one decoder and
the one forward pass of the harness (the demo's evaluation and the DPR trainer's policy).

Prompts are batched by token length (no padding on the prompt side, and no padding bugs); the
prompt runs once, then each new token on the KV cache. Samples come from a `torch.Generator` of
their own, so a run's draws depend only on its seed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from transformers import LlamaForCausalLM


@torch.inference_mode()
def sample(
    model: LlamaForCausalLM,
    prompts: Sequence[Sequence[int]],
    samples: int,
    max_new_tokens: int,
    eos_id: int,
    generator: torch.Generator | None,
) -> list[list[list[int]]]:
    """`samples` answers per prompt at temperature 1 (greedy when `generator` is None).

    Each answer holds the tokens drawn up to and including EOS, or `max_new_tokens` tokens when
    no EOS came (truncated). Result: answers[prompt][k].
    """
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, prompt in enumerate(prompts):
        by_length[len(prompt)].append(index)
    answers: list[list[list[int]]] = [[] for _ in prompts]
    for length, indices in by_length.items():
        rows = [list(prompts[i]) for i in indices for _ in range(samples)]
        drawn = _draw(model, torch.tensor(rows), max_new_tokens, eos_id, generator)
        for row, tokens in enumerate(drawn[:, length:].tolist()):
            end = tokens.index(eos_id) + 1 if eos_id in tokens else len(tokens)
            answers[indices[row // samples]].append(tokens[:end])
    return answers


def _draw(
    model: LlamaForCausalLM,
    batch: torch.Tensor,
    max_new_tokens: int,
    eos_id: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    done = torch.zeros(len(batch), dtype=torch.bool)
    # The prompt once, then one token a step on the KV cache (answers of the sums task run to
    # 60 tokens: recomputing every prefix would cost ~30x more there).
    out = model(input_ids=batch, use_cache=True)
    for _ in range(max_new_tokens):
        logits = out.logits[:, -1].float()
        if generator is None:
            next_ids = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits, dim=-1)
            next_ids = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        next_ids = torch.where(done, eos_id, next_ids)  # ended rows keep emitting EOS (cut later)
        batch = torch.cat([batch, next_ids[:, None]], dim=1)
        done |= next_ids == eos_id
        if bool(done.all()):
            break
        out = model(
            input_ids=next_ids[:, None], past_key_values=out.past_key_values, use_cache=True
        )
    return batch


def token_logprobs(
    model: LlamaForCausalLM, rows: Sequence[tuple[Sequence[int], Sequence[int]]]
) -> list[torch.Tensor]:
    """log pi(y_t | x, y_<t) for each answer token of each (prompt, answer) row, with gradients.

    One right-padded forward: a causal model's logits at real positions never see the padding.
    """
    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (prompt, answer) in enumerate(rows):
        ids[i, : len(prompt) + len(answer)] = torch.tensor([*prompt, *answer])
    logprobs = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)
    picked = []
    for i, (prompt, answer) in enumerate(rows):
        positions = torch.arange(len(prompt) - 1, len(prompt) + len(answer) - 1)  # t predicts t+1
        picked.append(logprobs[i, positions, torch.tensor(list(answer))])
    return picked
