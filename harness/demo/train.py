"""Training a demo pair: `base` on generic text, then `sft` from `base` on a task's demos."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from tqdm import tqdm
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from harness.demo import task
from harness.demo.tasks import ExampleMaker
from harness.demo.tokenizer import chat_prompt_ids, completion_ids


@dataclass(frozen=True)
class DemoConfig:
    """Every knob of the build; recorded in the report. Sized for ~3 minutes on 2 CPU cores."""

    seed: int = 0
    vocab_size: int = 1024
    hidden_size: int = 128
    num_layers: int = 3
    num_heads: int = 2  # head_dim 64: vLLM's CPU attention kernels reject smaller heads
    intermediate_size: int = 512
    context: int = 2048  # positions in the config; training sequences are far shorter
    base_steps: int = 200
    base_batch: int = 16
    base_seq_len: int = 128
    base_lr: float = 2e-3
    # A task with pretraining transcripts: steps of base's training continued on a mix where
    # `task_share` of the samples are the task's (the rest base's generic corpus).
    task_base_steps: int = 0
    task_share: float = 0.5
    sft_steps: int = 1000  # one pass: sft_steps * sft_batch distinct demonstrations
    sft_batch: int = 48
    sft_lr: float = 2.5e-3
    sft_decay: float = 0.2  # the last fifth anneals the rate; the midpoint is before that
    eval_pairs: int = 1200
    greedy_prompts: int = 200


# Each task's build. Running sums: base reads 300 steps of a mix half made of a careless
# writer's transcripts (`sums.sloppy_example`), then 300 SFT steps leave about two thirds of the
# held-out prompts wrong under greedy decoding; the whole build takes about 2.5 minutes. Base
# then knows where answers end and what a step looks like, not which prompt number comes next
# (`python -m harness anatomy`: 2.2 nats of entropy there, against SFT's 0.6).
TASK_CONFIGS = {"sort": DemoConfig(), "sums": DemoConfig(task_base_steps=300, sft_steps=300)}


def new_model(config: DemoConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        head_dim=config.hidden_size // config.num_heads,
        max_position_embeddings=config.context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        dtype="float32",
    )
    model = LlamaForCausalLM(model_config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def token_stream(
    tokenizer: PreTrainedTokenizerFast, corpus: Iterator[str | task.Chat]
) -> Iterator[int]:
    """The corpus as one endless stream of ids: BOS text EOS, or a chat laid out as scored."""
    for sample in corpus:
        if isinstance(sample, tuple):
            prompt, answer = sample
            yield from chat_prompt_ids(tokenizer, prompt) + completion_ids(tokenizer, answer)
        else:
            yield from tokenizer(sample, add_special_tokens=True)["input_ids"]
            yield tokenizer.eos_token_id


def train_base(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    corpus: Iterator[str | task.Chat],
    config: DemoConfig,
    bar: tqdm,
    steps: int | None = None,
) -> None:
    """Next-token loss on packed windows of the stream, cosine learning rate, for `steps`
    (default `config.base_steps`)."""
    steps = config.base_steps if steps is None else steps
    stream = token_stream(tokenizer, corpus)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.base_lr, weight_decay=0.01)
    size = config.base_batch * config.base_seq_len
    model.train()
    for step in range(steps):
        batch = torch.tensor([next(stream) for _ in range(size)]).view(config.base_batch, -1)
        set_lr(optimizer, config.base_lr * cosine(step, steps))
        loss = model(input_ids=batch, labels=batch).loss
        step_on(optimizer, model, loss)
        bar.update(1)
        bar.set_postfix(phase="base", loss=f"{loss.item():.3f}", refresh=False)


def train_sft(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    make_example: ExampleMaker,
    rng: random.Random,
    config: DemoConfig,
    bar: tqdm,
    at_half: Callable[[], None],
) -> set[str]:
    """One pass over distinct demonstrations of `make_example`'s task; loss on the answer and
    its EOS only.

    Warm-up, a constant rate, then a linear decay over the last `sft_decay` of the steps: the
    midpoint checkpoint (`at_half`) is a model trained on half the data, taken as a run on
    that half would stop before its own decay. Returns the prompts used, which the held-out
    evaluation must avoid.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.sft_lr, weight_decay=0.0)
    seen: set[str] = set()
    model.train()
    for step in range(config.sft_steps):
        examples = fresh_examples(make_example, rng, seen, config.sft_batch)
        ids, labels = sft_batch(tokenizer, examples)
        set_lr(optimizer, config.sft_lr * warmup_stable_decay(step, config))
        loss = model(input_ids=ids, labels=labels).loss
        step_on(optimizer, model, loss)
        bar.update(1)
        bar.set_postfix(phase="sft", loss=f"{loss.item():.3f}", refresh=False)
        if step + 1 == config.sft_steps // 2:
            at_half()
    return seen


def fresh_examples(
    make_example: ExampleMaker, rng: random.Random, seen: set[str], count: int
) -> list[task.Chat]:
    """`count` demonstrations whose prompts were never used before (a single pass)."""
    examples: list[task.Chat] = []
    while len(examples) < count:
        prompt, answer = make_example(rng)
        if prompt not in seen:
            seen.add(prompt)
            examples.append((prompt, answer))
    return examples


def sft_batch(
    tokenizer: PreTrainedTokenizerFast, examples: list[task.Chat]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and labels; -100 hides the prompt and the padding from the loss."""
    rows = []
    for prompt, answer in examples:
        prompt_ids = chat_prompt_ids(tokenizer, prompt)
        answer_ids = completion_ids(tokenizer, answer)
        rows.append((prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([row + [pad] * (width - len(row)) for row, _ in rows])
    labels = torch.tensor([row + [-100] * (width - len(row)) for _, row in rows])
    return ids, labels


def cosine(step: int, total: int) -> float:
    """Linear warm-up over 5% of the steps, then cosine decay to 10% of the peak."""
    warmup = max(1, total // 20)
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def warmup_stable_decay(step: int, config: DemoConfig) -> float:
    decay_steps = max(1, int(config.sft_steps * config.sft_decay))
    left = config.sft_steps - step
    return min(1.0, (step + 1) / 20, 0.1 + 0.9 * left / decay_steps)


def step_on(optimizer: torch.optim.Optimizer, model: LlamaForCausalLM, loss: torch.Tensor) -> None:
    optimizer.zero_grad()
    loss.backward()
    # Clipping keeps the high learning rates a short run needs from blowing up.
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
