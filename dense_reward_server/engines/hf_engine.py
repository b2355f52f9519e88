"""transformers engine: batched forward passes. The reference the vLLM engine is tested
against, and the fallback where vLLM is absent.

Only completion rows go through the LM head (`logits_to_keep`). Sequences that share a prompt
(with `share_prompts`) run the prompt once, keep its KV cache, and run only their completions
on top of copies of it.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

from dense_reward_server import metrics
from dense_reward_server.engines.base import EngineInfo
from dense_reward_server.engines.sharing import prompt_groups
from dense_reward_server.sequence import ScoreInput

logger = logging.getLogger(__name__)

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Cancelled(Exception):
    """The caller went away; the worker thread stops between forward passes."""


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype == "auto":
        return "float32" if device == "cpu" else "bfloat16"
    return dtype


def plan_microbatches(lengths: Sequence[int], max_batch_tokens: int) -> list[list[int]]:
    """Group sequence indices, longest first, so that rows * longest row <= max_batch_tokens.

    Sorting by length keeps padding small; a sequence longer than the budget goes alone.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        if current and longest * (len(current) + 1) > max_batch_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class HFScoringEngine:
    """One causal LM run by transformers in a dedicated worker thread (one forward at a time)."""

    def __init__(
        self,
        role: str,
        model_path: str,
        *,
        revision: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        max_model_len: int | None = None,
        max_batch_tokens: int = 8192,
        share_prompts: bool = True,
    ) -> None:
        self._device = resolve_device(device)
        self._dtype = resolve_dtype(dtype, self._device)
        model: Any = AutoModelForCausalLM.from_pretrained(
            model_path, revision=revision, dtype=TORCH_DTYPES[self._dtype]
        )
        self._model: Any = model.to(self._device).eval()
        config = self._model.config
        context = int(getattr(config, "max_position_embeddings", max_model_len or 2048))
        self._role = role
        self._max_batch_tokens = max_batch_tokens
        self._share_prompts = share_prompts
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hf-{role}")
        self._info = EngineInfo(
            role=role,
            model=model_path,
            revision=revision,
            backend="transformers",
            engine_version=f"transformers {transformers.__version__}, torch {torch.__version__}",
            dtype=self._dtype,
            device=self._device,
            max_model_len=min(max_model_len or context, context),
            vocab_size=int(config.vocab_size),
            prefix_sharing=share_prompts,
        )

    @property
    def info(self) -> EngineInfo:
        return self._info

    async def score(self, batch: Sequence[ScoreInput], request_id: str) -> list[np.ndarray]:
        """Log-probs of each input's completion tokens, float32, in input order."""
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._score_sync, batch, cancel)
        except asyncio.CancelledError:
            cancel.set()
            raise

    def _score_sync(self, batch: Sequence[ScoreInput], cancel: threading.Event) -> list[np.ndarray]:
        results: list[np.ndarray] = [np.empty(0, np.float32)] * len(batch)
        groups = prompt_groups(batch, self._share_prompts)
        singles = [members[0] for members in groups if len(members) == 1]
        work = [(indices, self._forward) for indices in self._plan(batch, singles)]
        work += [(members, self._forward_group) for members in groups if len(members) > 1]
        for indices, forward in work:
            if cancel.is_set():
                raise Cancelled()
            outputs = forward([batch[i] for i in indices], cancel)
            for index, logprobs in zip(indices, outputs, strict=True):
                results[index] = logprobs
        return results

    def _plan(self, batch: Sequence[ScoreInput], indices: list[int]) -> list[list[int]]:
        """Micro-batches of `indices` (each under the padded-token budget)."""
        lengths = [batch[i].num_tokens for i in indices]
        return [
            [indices[j] for j in part]
            for part in plan_microbatches(lengths, self._max_batch_tokens)
        ]

    @torch.inference_mode()
    def _forward(self, rows: Sequence[ScoreInput], cancel: threading.Event) -> list[np.ndarray]:
        """Rows with their own prompts: one right-padded pass, LM head on completion rows.

        One pass: nothing to cancel inside it (`cancel` is for `_forward_group`'s signature).
        """
        width = max(row.num_tokens for row in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            sequence = [*row.prompt_ids, *row.completion_ids]
            ids[r, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
            mask[r, : len(sequence)] = 1
        # Row t predicts token t+1: only rows first-scored .. last-scored of some sequence.
        first = min(len(row.prompt_ids) for row in rows) - 1
        last = max(row.num_tokens for row in rows) - 1
        keep = torch.arange(first, last, device=self._device)
        # Right padding: real tokens keep positions 0..n-1, padding is masked out.
        logits = self._model(
            input_ids=ids.to(self._device), attention_mask=mask.to(self._device),
            logits_to_keep=keep, use_cache=False,
        ).logits  # fmt: skip
        out = []
        for r, row in enumerate(rows):
            start = len(row.prompt_ids) - 1 - first
            out.append(
                picked(logits[r, start : start + len(row.completion_ids)], row.completion_ids)
            )
        return out

    @torch.inference_mode()
    def _forward_group(
        self, rows: Sequence[ScoreInput], cancel: threading.Event
    ) -> list[np.ndarray]:
        """Rows with one prompt: the prompt once, then the completions on copies of its cache."""
        prompt = torch.tensor([list(rows[0].prompt_ids)], dtype=torch.long, device=self._device)
        primed = self._model(input_ids=prompt, use_cache=True, logits_to_keep=1)
        # The prompt's last row predicts every completion's first token.
        first_logits = primed.logits[0, -1:]
        # Every row but the first reads the prompt instead of computing it: the vLLM engine's
        # prefix-cache counter, for the same work saved.
        metrics.PREFIX_CACHED_TOKENS.labels(model=self._role).inc((len(rows) - 1) * prompt.shape[1])
        out: list[np.ndarray] = [np.empty(0, np.float32)] * len(rows)
        for part in self._plan(rows, list(range(len(rows)))):
            if cancel.is_set():
                raise Cancelled()
            width = max(len(rows[r].completion_ids) for r in part)
            ids = torch.zeros((len(part), width), dtype=torch.long)
            mask = torch.ones((len(part), prompt.shape[1] + width), dtype=torch.long)
            for k, r in enumerate(part):
                count = len(rows[r].completion_ids)
                ids[k, :count] = torch.tensor(list(rows[r].completion_ids), dtype=torch.long)
                mask[k, prompt.shape[1] + count :] = 0
            cache = copy.deepcopy(primed.past_key_values)
            cache.batch_repeat_interleave(len(part))
            # Completion row j predicts token j+1; the last row predicts nothing.
            logits = self._model(
                input_ids=ids.to(self._device), attention_mask=mask.to(self._device),
                past_key_values=cache, logits_to_keep=torch.arange(width - 1, device=self._device),
            ).logits  # fmt: skip
            for k, r in enumerate(part):
                count = len(rows[r].completion_ids)
                rows_logits = torch.cat([first_logits, logits[k, : count - 1]])
                out[r] = picked(rows_logits, rows[r].completion_ids)
        return out

    async def check_health(self) -> None:
        return None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def picked(logits: torch.Tensor, targets: Sequence[int]) -> np.ndarray:
    """log p(target_j) from row j's raw logits: fp32 log-softmax, as vLLM's raw_logprobs."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    index = torch.tensor(list(targets), device=logprobs.device)[:, None]
    return logprobs.gather(1, index)[:, 0].cpu().numpy().astype(np.float32, copy=False)
