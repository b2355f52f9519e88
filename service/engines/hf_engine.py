"""transformers engine: a plain batched forward pass. The reference the vLLM engine is tested
against, and the fallback where vLLM is absent."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

from service.engines.base import EngineInfo
from service.sequence import ScoreInput

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
    ) -> None:
        self._device = resolve_device(device)
        self._dtype = resolve_dtype(dtype, self._device)
        model: Any = AutoModelForCausalLM.from_pretrained(
            model_path, revision=revision, dtype=TORCH_DTYPES[self._dtype]
        )
        self._model: Any = model.to(self._device).eval()
        config = self._model.config
        context = int(getattr(config, "max_position_embeddings", max_model_len or 2048))
        self._max_batch_tokens = max_batch_tokens
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
        lengths = [item.num_tokens for item in batch]
        for indices in plan_microbatches(lengths, self._max_batch_tokens):
            if cancel.is_set():
                raise Cancelled()
            outputs = self._forward([batch[i] for i in indices])
            for index, logprobs in zip(indices, outputs, strict=True):
                results[index] = logprobs
        return results

    @torch.inference_mode()
    def _forward(self, rows: Sequence[ScoreInput]) -> list[np.ndarray]:
        width = max(row.num_tokens for row in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            sequence = [*row.prompt_ids, *row.completion_ids]
            ids[r, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
            mask[r, : len(sequence)] = 1
        # Right padding: real tokens keep positions 0..n-1, padding is masked out.
        logits = self._model(
            input_ids=ids.to(self._device), attention_mask=mask.to(self._device)
        ).logits
        out = []
        for r, row in enumerate(rows):
            start, count = len(row.prompt_ids) - 1, len(row.completion_ids)
            # Row t predicts token t+1; fp32 log-softmax of the raw logits.
            rows_logits = logits[r, start : start + count].float()
            logprobs = torch.log_softmax(rows_logits, dim=-1)
            targets = torch.tensor(list(row.completion_ids), device=logprobs.device)
            picked = logprobs.gather(1, targets[:, None])[:, 0]
            out.append(picked.cpu().numpy().astype(np.float32, copy=False))
        return out

    async def check_health(self) -> None:
        return None

    async def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
