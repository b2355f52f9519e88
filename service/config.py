"""Service settings: one pydantic-settings class, env prefix DRS_, overridable by CLI flags."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Backend = Literal["vllm", "transformers"]
DType = Literal["auto", "float32", "bfloat16", "float16"]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class Settings(BaseSettings):
    """Everything the server reads at start-up. Every field is also `DRS_<NAME>` and `--<name>`."""

    model_config = SettingsConfigDict(
        env_prefix="DRS_",
        extra="forbid",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        validate_default=True,
    )

    # Models and engine.
    sft_model: str = Field(".models/demo/sft", description="SFT model: local folder or model id.")
    base_model: str = Field(
        ".models/demo/base",
        description="Baseline policy (the model the SFT started from, or another checkpoint).",
    )
    baseline: Literal["model", "none"] = Field(
        "model",
        description="model: r = beta*(log pi_sft - log pi_base); none: r = beta*log pi_sft "
        "(no base engine is loaded; an ablation, it carries a length penalty).",
    )
    sft_revision: str | None = Field(None, description="Revision of the SFT model, if a hub id.")
    base_revision: str | None = Field(None, description="Revision of the base model, if a hub id.")
    backend: Backend = Field("vllm", description="Scoring engine: vllm or transformers.")
    dtype: DType = Field(
        "auto", description="Weights and activations dtype; auto = float32 on CPU, bfloat16 on GPU."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Device of the transformers backend (vLLM picks its own)."
    )
    beta: float = Field(
        1.0,
        gt=0,
        le=1e4,
        allow_inf_nan=False,
        description="Default reward scale: r = beta*(log pi_sft - log pi_base).",
    )
    max_model_len: int | None = Field(
        None, ge=2, description="Longest prompt+completion in tokens; default: the models' context."
    )
    gpu_memory_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Fraction of device memory for EACH engine (on CPU: of RAM); "
        "default 0.4 on GPU, 0.1 on CPU.",
    )
    tensor_parallel_size: int = Field(
        1, ge=1, description="GPUs per engine (vLLM tensor parallelism)."
    )
    max_num_batched_tokens: int = Field(
        8192, ge=16, description="vLLM scheduler: tokens per engine step (bounds logits memory)."
    )
    max_num_seqs: int = Field(256, ge=1, description="vLLM scheduler: sequences per engine step.")
    cpu_kvcache_space_gib: int = Field(
        1, ge=1, description="vLLM-CPU only: KV cache GiB per engine (VLLM_CPU_KVCACHE_SPACE)."
    )
    cpu_threads_bind: list[str] | None = Field(
        None,
        description="vLLM-CPU only: VLLM_CPU_OMP_THREADS_BIND for [sft, base]; "
        "default splits the cores in two halves.",
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra vLLM AsyncEngineArgs passed through unchanged (JSON object).",
    )
    hf_max_batch_tokens: int = Field(
        8192, ge=16, description="transformers backend: padded tokens per forward pass."
    )

    # Requests and admission.
    max_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Request body size (413 above, before parsing)."
    )
    max_items_per_request: int = Field(512, ge=1, description="Items in one request (413 above).")
    max_group_size: int = Field(64, ge=1, description="Completions in one group item.")
    max_tokens_per_request: int = Field(
        1_048_576, ge=1, description="Prompt+completion tokens in one request (413 above)."
    )
    max_inflight_tokens: int = Field(
        4_194_304, ge=1, description="Tokens of all admitted requests; beyond it 429 + Retry-After."
    )
    request_timeout_s: float = Field(
        300.0, gt=0, description="Default deadline of a request; expired work is aborted (504)."
    )
    max_request_timeout_s: float = Field(
        3600.0, gt=0, description="Upper bound on a request's own timeout_s."
    )

    # Health, canary, drain.
    health_interval_s: float = Field(
        1.0, gt=0, description="How often the engines are asked whether they are alive."
    )
    canary_interval_s: float = Field(
        5.0, gt=0, description="How often the canary item is re-scored and compared."
    )
    canary_timeout_s: float = Field(
        10.0, gt=0, description="A canary unanswered this long makes /ready 503."
    )
    canary_tolerance: float = Field(
        0.02, gt=0, description="Largest change of a canary log-prob since start-up."
    )
    exit_on_engine_failure: bool = Field(
        True, description="Exit non-zero when an engine dies, so the orchestrator restarts us."
    )
    drain_timeout_s: float = Field(
        30.0, ge=0, description="On SIGTERM, how long admitted requests may take to finish."
    )

    # HTTP, security, logs.
    host: str = Field("127.0.0.1", description="Bind address (loopback unless you mean it).")
    port: int = Field(8000, ge=0, le=65535, description="Bind port.")
    api_keys: list[str] = Field(
        default_factory=list, description="Accepted API keys (Bearer); empty = no authentication."
    )
    api_keys_file: Path | None = Field(None, description="File with one API key per line.")
    log_format: Literal["json", "text"] = Field("json", description="Log line format.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )

    @field_validator("engine_args", mode="before")
    @classmethod
    def _parse_engine_args(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.cpu_threads_bind is not None and len(self.cpu_threads_bind) != 2:
            raise ValueError("cpu_threads_bind needs exactly two entries: [sft, base]")
        if self.request_timeout_s > self.max_request_timeout_s:
            raise ValueError("request_timeout_s exceeds max_request_timeout_s")
        return self

    def all_api_keys(self) -> list[str]:
        """Keys from the setting and the keys file together."""
        keys = list(self.api_keys)
        if self.api_keys_file is not None:
            text = self.api_keys_file.read_text(encoding="utf-8")
            keys += [line.strip() for line in text.splitlines() if line.strip()]
        return keys

    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")

    def summary(self) -> dict[str, Any]:
        """What the start-up log says about this configuration (no secrets)."""
        data = self.model_dump(exclude={"api_keys", "api_keys_file"})
        data["auth"] = bool(self.all_api_keys())
        data["pid"] = os.getpid()
        return data
