"""Service settings: one pydantic-settings class, env prefix DRS_, overridable by CLI flags."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from dense_reward_server.guards import Aggregate, RefLogprobFloor, RewardBound, SoftMinTemperature

Backend = Literal["vllm", "transformers"]
DType = Literal["auto", "float32", "bfloat16", "float16"]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
PROG = "dense-reward-server"
BASELINE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
RESERVED_NAMES = ("sft", "base")
# Settings whose values never appear in an error message.
SECRET_SETTINGS = frozenset({"api_keys"})


class SettingsConflict(ValueError):
    """A check across several settings; `fields` names them for the error line."""

    def __init__(self, fields: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.fields = fields


def read_keys_file(path: Path) -> list[str]:
    """One API key per line; a file that cannot be read is a bad setting (exit 2 at start)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        reason = error.strerror or str(error)
        raise SettingsConflict(
            ("api_keys_file",),
            f"must be a readable file, one key per line: {reason} (got {str(path)!r})",
        ) from None
    except UnicodeDecodeError:
        raise SettingsConflict(
            ("api_keys_file",), f"must be a UTF-8 text file, one key per line (got {str(path)!r})"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_audit_report(path: Path) -> dict[str, Any]:
    """An audit report (JSON object with a verdict); anything else is a bad setting."""
    problem = "must be a report written by `dense-reward-server audit --out`"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SettingsConflict(
            ("audit_report",), f"{problem}: {error.strerror or error} (got {str(path)!r})"
        ) from None
    except ValueError as error:
        raise SettingsConflict(
            ("audit_report",), f"{problem}: not JSON ({error}) (got {str(path)!r})"
        ) from None
    if not isinstance(report, dict) or "gameable" not in report:
        raise SettingsConflict(("audit_report",), f"{problem} (got {str(path)!r})")
    return report


def setting_names(field: str) -> str:
    """`DRS_PORT / --port`: how a setting is spelled in the environment and on the command line."""
    return f"DRS_{field.upper()} / --{field.replace('_', '-')}"


def json_or_value(value: Any, problem: str) -> Any:
    """A string is parsed as JSON (a one-line error saying `problem` if it is not)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"{problem} ({error})") from None


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
    extra_baselines: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Further baseline policies, each loaded as its own engine beside base: "
        'name -> local folder or model id, a JSON object ({"half": "ckpt/half"}) or '
        "name=path pairs separated by commas; a request's `baselines` picks the ones whose "
        "most likely log-prob per token is the reference (the pessimistic reward).",
    )
    reward_baselines: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="Default of a request's `baselines`: names among base and the extra "
        "baselines (JSON list or comma-separated); default: base alone.",
    )
    ref_logprob_floor: RefLogprobFloor | None = Field(
        None,
        description="Default floor on the reference log-prob (a request's `ref_logprob_floor`): "
        "a token's reward is then at most beta*(log pi_sft - floor); default none.",
    )
    reward_clip_min: RewardBound | None = Field(
        None, description="Default lower bound of each token's reward."
    )
    reward_clip_max: RewardBound | None = Field(
        None, description="Default upper bound of each token's reward."
    )
    aggregate: Aggregate = Field(
        "sum",
        description="Default sequence aggregate (`aggregate_reward`, group scores, returns): "
        "sum, mean, min, or soft_min (softmax(-r/T)-weighted sum, PURE's min-form).",
    )
    soft_min_temperature: SoftMinTemperature = Field(
        1.0, description="Default temperature T of soft_min."
    )
    implausible_logprob: float = Field(
        -5.0,
        lt=0,
        allow_inf_nan=False,
        description="A scored token with log pi_sft below this that still earns a positive "
        "reward counts in drs_completion_implausible_reward (the reward-hacking signal).",
    )
    audit_report: Path | None = Field(
        None,
        description="A report of `dense-reward-server audit --out` on this reward, served at "
        "GET /v1/audit and shown on /ui (read once at start-up).",
    )
    _audit: dict[str, Any] | None = PrivateAttr(default=None)  # its contents, read once
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
        description="Fraction of device memory for EACH engine (on CPU: of RAM); default on "
        "GPU 0.4 when the two engines share their GPUs, 0.9 when each has its own; 0.1 on CPU.",
    )
    tensor_parallel_size: int = Field(
        1, ge=1, description="GPUs per engine (vLLM tensor parallelism)."
    )
    data_parallel_size: int = Field(
        1,
        ge=1,
        description="Replicas of each engine (vLLM's own data parallelism), each on its own "
        "tensor_parallel_size GPUs.",
    )
    sft_devices: str | None = Field(
        None,
        description="GPU ids for the SFT engine's processes (CUDA_VISIBLE_DEVICES there), e.g. "
        "0 or 0,1; default: the first half of the visible GPUs when there are enough for both "
        "engines, else all of them, shared with the base engine.",
    )
    base_devices: str | None = Field(
        None,
        description="GPU ids for the base engine's processes; default: the second half of the "
        "visible GPUs when there are enough for both engines, else shared with the SFT engine.",
    )
    max_num_batched_tokens: int = Field(
        8192, ge=16, description="vLLM scheduler: tokens per engine step (bounds logits memory)."
    )
    max_num_seqs: int = Field(256, ge=1, description="vLLM scheduler: sequences per engine step.")
    prefix_sharing: bool = Field(
        True,
        description="Sequences with the same prompt (a group, a batch of K samples per prompt, a "
        "second round) reuse the prompt's KV cache instead of computing it again; every result "
        "is still exact (off: each sequence is computed whole, as before).",
    )
    block_size: int | None = Field(
        None,
        ge=1,
        description="vLLM KV-cache block size in tokens, the unit of prefix sharing; default 32 "
        "on CPU (a multiple of 32 there; shares more of short prompts than vLLM's 128), vLLM's "
        "own on GPU.",
    )
    cpu_kvcache_space_gib: int = Field(
        1, ge=1, description="vLLM-CPU only: KV cache GiB per engine (VLLM_CPU_KVCACHE_SPACE)."
    )
    cpu_threads_bind: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="vLLM-CPU only: VLLM_CPU_OMP_THREADS_BIND for [sft, base]: a JSON list of "
        'two strings (["0-1", "2-3"]), or "SFT;BASE" (0,1;2,3), or "SFT,BASE" when neither '
        "contains a comma (0-1,2-3); default splits the cores in two halves.",
    )
    vllm_busy_loop_s: float | None = Field(
        None,
        ge=0,
        description="vLLM: seconds its processes busy-wait for the next message after each one "
        "(vLLM's own: 1 s); default 0.01 on CPU, where 1 s of spinning workers starves the API "
        "process and /health under one-sample traffic (README, Performance), vLLM's own on GPU. "
        "Not 0: vLLM then loses wake-ups (5 s stalls).",
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra vLLM AsyncEngineArgs passed through unchanged (JSON object; "
        "the flag also takes key=value).",
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
    coalesce_window_ms: float = Field(
        20.0,
        ge=0,
        description="vLLM engine: while the engines are busy, requests arriving within this "
        "window are scored together as one batch (one-sample traffic shares prompts, engine "
        "steps stay full); a request at zero load goes at once; 0 scores each request on its "
        "own (faster for whole-group requests, README Performance). The transformers engine "
        "scores one batch at a time: what arrives meanwhile goes together when it ends.",
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
    keep_alive_timeout_s: int = Field(
        65,
        ge=1,
        description="Seconds an idle HTTP connection stays open. Longer than the pool expiry of "
        "common clients (httpx 5 s, aiohttp 15 s), so that a client never sends a request on a "
        "connection the server is closing at that moment (uvicorn's default is 5 s).",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Accepted API keys (Bearer): one key, comma-separated keys, or a JSON list "
        "of strings; empty = no authentication.",
    )
    api_keys_file: Path | None = Field(
        None, description="Readable file with one API key per line (checked at start-up)."
    )
    _file_keys: list[str] = PrivateAttr(default_factory=list)  # its keys, read once
    log_format: Literal["json", "text"] = Field("json", description="Log line format.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )

    @field_validator("engine_args", mode="before")
    @classmethod
    def _parse_engine_args(cls, value: Any) -> Any:
        return json_or_value(value, "must be a JSON object")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: Any) -> Any:
        """A JSON list, or one key, or keys separated by commas (or newlines)."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json_or_value(text, "starts with '[' but is not a JSON list of strings")
        return [key.strip() for key in re.split(r"[,\n]", text) if key.strip()]

    @field_validator("extra_baselines", mode="before")
    @classmethod
    def _parse_extra_baselines(cls, value: Any) -> Any:
        """A JSON object, or `name=path` pairs separated by commas."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("{"):
            return json_or_value(text, 'must be a JSON object, e.g. {"half": "ckpt/half"}')
        pairs = [pair.split("=", 1) for pair in text.split(",") if pair.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError("must be name=path pairs separated by commas, or a JSON object")
        return {name.strip(): path.strip() for name, path in pairs}

    @field_validator("extra_baselines")
    @classmethod
    def _baseline_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, model in value.items():
            if not BASELINE_NAME.fullmatch(name) or name in RESERVED_NAMES:
                raise ValueError(
                    f"baseline name {name!r} must be lowercase letters, digits, - or _ and not "
                    f"{' or '.join(RESERVED_NAMES)}"
                )
            if not model:
                raise ValueError(f"baseline {name!r} names no model")
        return value

    @field_validator("reward_baselines", mode="before")
    @classmethod
    def _parse_reward_baselines(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json_or_value(text, "must be a JSON list of baseline names")
        return [name.strip() for name in text.split(",") if name.strip()]

    @field_validator("sft_devices", "base_devices")
    @classmethod
    def _gpu_ids(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d+(,\d+)*", value.replace(" ", "")):
            raise ValueError("must be GPU ids separated by commas, e.g. 0 or 0,1")
        return value.replace(" ", "") if value is not None else None

    @field_validator("cpu_threads_bind", mode="before")
    @classmethod
    def _parse_cpu_threads_bind(cls, value: Any) -> Any:
        """A JSON list, or `SFT;BASE`, or `SFT,BASE`; an empty string means the default."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            return None
        if text.startswith("["):
            return json_or_value(text, 'must be a JSON list of two strings, e.g. ["0-1", "2-3"]')
        return [bind.strip() for bind in text.split(";" if ";" in text else ",")]

    @field_validator("cpu_threads_bind")
    @classmethod
    def _two_binds(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (len(value) != 2 or not all(bind.strip() for bind in value)):
            raise ValueError(
                "needs exactly two non-empty entries [sft, base]: a JSON list "
                '(["0-1", "2-3"]) or "SFT;BASE" (0,1;2,3)'
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.request_timeout_s > self.max_request_timeout_s:
            raise SettingsConflict(
                ("request_timeout_s", "max_request_timeout_s"),
                f"the default timeout ({self.request_timeout_s:g} s) must be <= the longest "
                f"allowed ({self.max_request_timeout_s:g} s)",
            )
        return self

    @model_validator(mode="after")
    def _check_baselines(self) -> Settings:
        if self.extra_baselines and self.baseline != "model":
            raise SettingsConflict(
                ("extra_baselines", "baseline"), "extra baselines need baseline=model"
            )
        known = self.baseline_names()
        for name in self.reward_baselines or []:
            if name not in known:
                raise SettingsConflict(
                    ("reward_baselines",),
                    f"{name!r} is not a loaded baseline (loaded: {', '.join(known) or 'none'})",
                )
        if self.reward_baselines == []:
            raise SettingsConflict(("reward_baselines",), "names no baseline")
        low, high = self.reward_clip_min, self.reward_clip_max
        if low is not None and high is not None and low > high:
            raise SettingsConflict(
                ("reward_clip_min", "reward_clip_max"), f"the bounds are reversed ({low} > {high})"
            )
        return self

    def baseline_names(self) -> list[str]:
        """The baselines the server loads: base (unless baseline=none), then the extras."""
        return (["base"] if self.baseline == "model" else []) + list(self.extra_baselines)

    @model_validator(mode="after")
    def _read_keys_file(self) -> Settings:
        """The keys file, read here once: the middleware and the start-up log use these keys."""
        if self.api_keys_file is not None:
            self._file_keys = read_keys_file(self.api_keys_file)
        return self

    @model_validator(mode="after")
    def _read_audit_report(self) -> Settings:
        if self.audit_report is not None:
            self._audit = read_audit_report(self.audit_report)
        return self

    def audit(self) -> dict[str, Any] | None:
        """The audit report given at start-up, if any."""
        return self._audit

    def all_api_keys(self) -> list[str]:
        """Keys from the setting and the keys file together."""
        return [*self.api_keys, *self._file_keys]

    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")

    def summary(self) -> dict[str, Any]:
        """What the start-up log says about this configuration (no secrets)."""
        data = self.model_dump(exclude={"api_keys", "api_keys_file"})
        data["auth"] = bool(self.all_api_keys())
        data["pid"] = os.getpid()
        return data


# What a setting accepts, for errors that arise before pydantic sees the value (JSON decoding).
_ACCEPTS = {"engine_args": """must be a JSON object, e.g. '{"enforce_eager": true}'"""}


def settings_error_lines(error: BaseException) -> list[str]:
    """One line per bad setting, naming its DRS_ variable and its flag, and what it accepts."""
    if isinstance(error, ValidationError):
        return _validation_lines(error)
    text = " ".join(str(error).split())
    if isinstance(error, SettingsError):
        cause = error.__cause__
        field = re.fullmatch(r'error parsing value for field "(\w+)" from source "\w+"', text)
        if field is not None:
            reason = " ".join(str(cause).split()) if cause is not None else "cannot parse it"
            return [_line(field[1], f"{_ACCEPTS.get(field[1], 'must be valid JSON')} ({reason})")]
        field = re.fullmatch(r"Parsing error encountered for (\w+): (.*)", text)
        if field is not None:
            return [_line(field[1], f"{_ACCEPTS.get(field[1], 'cannot parse it')} ({field[2]})")]
        cli = re.fullmatch(r"error parsing CLI: (.*)", text)
        if cli is not None:
            flag = re.fullmatch(r"argument --([\w-]+)(?:/--[\w-]+)?: (.*)", cli[1])
            if flag is not None and flag[1].replace("-", "_") in Settings.model_fields:
                return [_line(flag[1].replace("-", "_"), flag[2])]
            return [f"{PROG}: {cli[1]} (`{PROG} serve --help` lists the settings)"]
    return [f"{PROG}: invalid settings: {text}"]


def _line(field: str, message: str) -> str:
    names = setting_names(field) if field in Settings.model_fields else repr(field)
    return f"{PROG}: invalid setting {names}: {message}"


def _validation_lines(error: ValidationError) -> list[str]:
    lines: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, SettingsConflict) and len(cause.fields) == 1:
            lines.setdefault(_line(cause.fields[0], "").removesuffix(": "), []).append(str(cause))
            continue
        if isinstance(cause, SettingsConflict):
            names = " and ".join(setting_names(field) for field in cause.fields)
            lines.setdefault(f"{PROG}: invalid settings {names}", []).append(str(cause))
            continue
        loc = item["loc"]
        field = str(loc[0]) if loc else ""
        message = item["msg"].removeprefix("Value error, ")
        message = re.sub(r"^Input should be\b", "must be", message)
        if len(loc) > 1:
            message = f"entry {'.'.join(str(part) for part in loc[1:])}: {message}"
        value = item.get("input")
        if field and field not in SECRET_SETTINGS and not isinstance(value, dict):
            shown = repr(str(value) if isinstance(value, Path) else value)
            message += f" (got {shown if len(shown) <= 80 else shown[:77] + '...'})"
        head = _line(field, "").removesuffix(": ") if field else f"{PROG}: invalid settings"
        lines.setdefault(head, []).append(message)
    return [f"{head}: {'; '.join(messages)}" for head, messages in lines.items()]
