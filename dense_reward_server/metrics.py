"""Every Prometheus metric of the service, defined once (SPEC section 6).

Base units, `_total` only on counters (prometheus-client appends it), bounded labels only:
route templates, status codes, model roles, rejection reasons. A dedicated registry keeps
the exposition to what the service owns (plus process metrics); vLLM's loggers are off.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# From ~5 ms (a small dashboard item) to minutes (a large RL batch on a busy CPU).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TOKEN_REWARD_BUCKETS = (-10, -5, -2, -1, -0.5, -0.25, -0.1, 0, 0.1, 0.25, 0.5, 1, 2, 5, 10)
SEQUENCE_REWARD_BUCKETS = (-200, -100, -50, -20, -10, -5, -2, 0, 2, 5, 10, 20, 50, 100, 200)
LENGTH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
LOGPROB_BUCKETS = (-20, -10, -8, -6, -5, -4, -3, -2, -1.5, -1, -0.5, -0.25, -0.1, -0.01, 0)
SHARE_BUCKETS = (0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1)

REQUESTS = Counter(
    "drs_requests",
    "HTTP requests answered, by route template and status code.",
    ["route", "status"],
    registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "drs_request_duration_seconds",
    "Time from request received to response sent.",
    ["route"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
ITEMS = Counter("drs_items", "Items scored (one item = one completion).", registry=REGISTRY)
TOKENS_SCORED = Counter(
    "drs_tokens_scored",
    "Tokens (prompt + completion) run through each model.",
    ["model"],
    registry=REGISTRY,
)
PREFIX_CACHED_TOKENS = Counter(
    "drs_prefix_cached_tokens",
    "Prompt tokens read from an engine's prefix cache instead of being computed again.",
    ["model"],
    registry=REGISTRY,
)
PREFIX_GUARD_FALLBACKS = Counter(
    "drs_prefix_guard_fallbacks",
    "Sequences rescored without the prefix cache because a hit reached a scored row.",
    ["model"],
    registry=REGISTRY,
)
for _model in ("sft", "base"):  # both series exist from the start, at 0
    PREFIX_CACHED_TOKENS.labels(model=_model)
    PREFIX_GUARD_FALLBACKS.labels(model=_model)
BATCH_REQUESTS = Histogram(
    "drs_batch_requests",
    "Requests scored together in one engine batch (core.coalescer): 1 at low load, more when "
    "one-sample requests arrive while the engines are busy.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    registry=REGISTRY,
)
INFLIGHT_REQUESTS = Gauge(
    "drs_inflight_requests", "Admitted requests not yet answered.", registry=REGISTRY
)
INFLIGHT_TOKENS = Gauge(
    "drs_inflight_tokens",
    "Tokens of admitted requests being scored or queued in the engines.",
    registry=REGISTRY,
)
# Every reason a request is refused for before it is scored (the 413 codes and the 429 code).
REJECTION_REASONS = (
    "inflight_tokens_limit",
    "body_too_large",
    "too_many_items",
    "too_many_tokens",
    "group_too_large",
)
REJECTIONS = Counter(
    "drs_rejections",
    "Requests refused by admission control, by reason.",
    ["reason"],
    registry=REGISTRY,
)
for _reason in REJECTION_REASONS:  # every series exists from the start, at 0
    REJECTIONS.labels(reason=_reason)


def count_rejection(reason: str) -> None:
    """One refused request; only the declared reasons (bounded labels, checked by the alerts)."""
    if reason not in REJECTION_REASONS:
        raise ValueError(f"undeclared rejection reason {reason!r}")
    REJECTIONS.labels(reason=reason).inc()


ENGINE_ERRORS = Counter(
    "drs_engine_errors",
    "Scoring calls that failed inside an engine.",
    ["model"],
    registry=REGISTRY,
)
MODEL_LOAD_SECONDS = Gauge(
    "drs_model_load_seconds",
    "Seconds it took to load each engine at start-up.",
    ["model"],
    registry=REGISTRY,
)
READY = Gauge(
    "drs_ready", "1 when both engines are loaded and answering, else 0.", registry=REGISTRY
)


class BulkHistogram(Collector):
    """A histogram fed whole numpy arrays at once.

    A 64 x 1024-token request has 65k per-token rewards; observing them one by one in Python
    would cost more than scoring them. numpy bins them in one call.
    """

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self.counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # last = above every bound
        self.total = 0.0
        self.lock = threading.Lock()

    def observe_many(self, values: np.ndarray) -> None:
        values = values[np.isfinite(values)]
        # side="left": a value equal to a bound falls in that bound's bucket (le semantics).
        slots = np.searchsorted(self.bounds, values, side="left")
        counts = np.bincount(slots, minlength=len(self.counts))
        with self.lock:
            self.counts += counts
            self.total += float(np.sum(values, dtype=np.float64))

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self.lock:
            cumulative = np.cumsum(self.counts)
            total = self.total
        buckets = [
            (repr(float(b)), float(c)) for b, c in zip(self.bounds, cumulative, strict=False)
        ]
        buckets.append(("+Inf", float(cumulative[-1])))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], buckets, total)
        # prometheus-client drops _count and _sum when a bucket is negative (an OpenMetrics
        # rule); the drift alert needs the mean, so the text format gets them anyway.
        if not any(sample.name.endswith("_sum") for sample in family.samples):
            family.samples.append(Sample(f"{self.name}_count", {}, float(cumulative[-1])))
            family.samples.append(Sample(f"{self.name}_sum", {}, total))
        yield family


TOKEN_REWARD = BulkHistogram(
    "drs_token_reward", "Per-token rewards handed out (watch for drift).", TOKEN_REWARD_BUCKETS
)
SEQUENCE_REWARD = BulkHistogram(
    "drs_sequence_reward",
    "Per-sequence total rewards handed out (watch for drift).",
    SEQUENCE_REWARD_BUCKETS,
)
# Reward-hacking signals, one observation per scored completion (rewards/signals.py).
COMPLETION_TOKENS = BulkHistogram(
    "drs_completion_tokens", "Scored tokens per completion (length).", LENGTH_BUCKETS
)
COMPLETION_SFT_LOGPROB = BulkHistogram(
    "drs_completion_sft_logprob",
    "Mean log pi_sft per scored token of each completion (falls as a policy leaves the "
    "SFT model's support).",
    LOGPROB_BUCKETS,
)
COMPLETION_REPEATED_NGRAMS = BulkHistogram(
    "drs_completion_repeated_ngrams",
    "Share of each completion's 4-token n-grams that repeat an earlier one.",
    SHARE_BUCKETS,
)
COMPLETION_IMPLAUSIBLE_REWARD = BulkHistogram(
    "drs_completion_implausible_reward",
    "Share of each completion's scored tokens that earn a positive reward although log pi_sft "
    "is below DRS_IMPLAUSIBLE_LOGPROB: the signature of a gamed log-ratio.",
    SHARE_BUCKETS,
)
for _histogram in (
    TOKEN_REWARD,
    SEQUENCE_REWARD,
    COMPLETION_TOKENS,
    COMPLETION_SFT_LOGPROB,
    COMPLETION_REPEATED_NGRAMS,
    COMPLETION_IMPLAUSIBLE_REWARD,
):
    REGISTRY.register(_histogram)
