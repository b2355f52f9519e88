"""vLLM's scheduler with a scoring request's prefix-cache hit capped at its first scored row.

A prompt-logprob request that reads the prefix cache gets no log-probs for the positions inside
the hit (VLLM_NOTES.md: garbage there). vLLM caps a hit only at `len - 1`; SGLang caps it where
scoring starts (`logprob_start_len`). This does the same for vLLM: a request whose
`SamplingParams.extra_args` names its first scored row reads at most the whole blocks before
that row, so a GRPO group's shared prompt is reused and every completion row is computed, also
when the prompt ends on a block boundary, completions share their first tokens, or the same pair
comes twice. vLLM imports this class by name inside its engine core (`scheduler_cls`); the
engine still checks `num_cached_tokens` on every result (a second line of defence).
"""

from __future__ import annotations

from typing import Any

from vllm.v1.core.kv_cache_manager import KVCacheBlocks
from vllm.v1.core.sched.scheduler import Scheduler

# The `extra_args` key carrying a request's first scored row (position of the last prompt token).
SCORE_START = "drs_score_start"
QUALNAME = f"{__name__}.ScoringScheduler"


def score_start(request: Any) -> int | None:
    params = getattr(request, "sampling_params", None)
    extra = getattr(params, "extra_args", None) or {}
    start = extra.get(SCORE_START)
    return int(start) if start is not None else None


def capped_hit(hit: int, start: int, block_size: int) -> int:
    """The longest whole-block prefix of `hit` tokens that stops at or before row `start`."""
    return min(hit, (start // block_size) * block_size)


def supported() -> bool:
    """This vLLM has the hook we override (a private method: checked, never assumed)."""
    return callable(getattr(Scheduler, "_get_local_prefix_cache_hit", None))


class ScoringScheduler(Scheduler):
    """vLLM's scheduler; only the local prefix-cache lookup of scoring requests differs."""

    def _get_local_prefix_cache_hit(self, request: Any) -> tuple[KVCacheBlocks, int, int, bool]:
        blocks, hit, boundary, diverged = super()._get_local_prefix_cache_hit(request)
        start = score_start(request)
        # One KV-cache group (plain attention models): its blocks are `self.block_size` tokens.
        # Hybrid models keep vLLM's own hit; the engine's guard rescores them when needed.
        if start is None or hit <= start or len(blocks.blocks) != 1:
            return blocks, hit, boundary, diverged
        kept = capped_hit(hit, start, self.block_size)
        trimmed = KVCacheBlocks((list(blocks.blocks[0][: kept // self.block_size]),))
        return trimmed, kept, 0, diverged
