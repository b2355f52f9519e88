"""Request and response models of the HTTP API (SPEC section 2)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from dense_reward_client.types import Include
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from dense_reward_server.api.wire import View
from dense_reward_server.core.request import ScoreRequest
from dense_reward_server.guards import (
    Aggregate,
    RefLogprobFloor,
    RewardBound,
    SoftMinTemperature,
)

DEFAULT_INCLUDE: list[Include] = ["logprobs"]
REWARD_FIELDS = (
    "baselines",
    "ref_logprob_floor",
    "reward_clip_min",
    "reward_clip_max",
    "aggregate",
    "soft_min_temperature",
)


def _unicode_text(value: str) -> str:
    # JSON may carry a lone surrogate escape ("\ud800"): valid JSON, but not text that can be
    # tokenized or echoed back. Refuse it here, with the item's index, not deep inside.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"not valid Unicode text ({error.reason})") from None
    return value


Text = Annotated[StrictStr, AfterValidator(_unicode_text)]


def _unicode_everywhere(value: object) -> None:
    """Every string in a JSON value (keys too) is valid Unicode text."""
    if isinstance(value, str):
        _unicode_text(value)
    elif isinstance(value, list):
        for element in value:
            _unicode_everywhere(element)
    elif isinstance(value, dict):
        for key, element in value.items():
            _unicode_everywhere(key)
            _unicode_everywhere(element)


class ChatMessage(BaseModel):
    """One chat message; extra keys (name, tool_calls, ...) go to the chat template as given."""

    model_config = ConfigDict(extra="allow")
    role: Text
    content: Text | None = None

    @model_validator(mode="after")
    def _extra_text_is_unicode(self) -> ChatMessage:
        _unicode_everywhere(self.model_extra or {})
        return self


StepSpan = tuple[StrictInt, StrictInt]


class GroupCompletion(BaseModel):
    """One member of a group, when it needs more than its text or ids (mask, id, spans)."""

    model_config = ConfigDict(extra="forbid")
    completion: Text | None = None
    completion_token_ids: list[StrictInt] | None = None
    mask: list[Literal[0, 1]] | None = None
    step_spans: list[StepSpan] | None = None
    id: Text | None = Field(None, max_length=256)


class RewardItem(BaseModel):
    """Exactly one of prompt / messages / prompt_token_ids, and exactly one of completion /
    completion_token_ids / completions (a group: one prompt, several completions)."""

    model_config = ConfigDict(extra="forbid")
    prompt: Text | None = Field(None, description="Prompt text, tokenized with BOS etc.")
    messages: list[ChatMessage] | None = Field(
        None, min_length=1, description="Chat messages, rendered with the SFT chat template."
    )
    prompt_token_ids: list[StrictInt] | None = Field(None, description="Prompt token ids.")
    completion: Text | None = Field(None, description="Completion text (no special tokens).")
    completion_token_ids: list[StrictInt] | None = Field(None, description="Completion ids.")
    completions: list[Text | list[StrictInt] | GroupCompletion] | None = Field(
        None,
        description="A group: completions of this one prompt (text, token ids, or objects). "
        "The result holds one result per completion plus group statistics.",
    )
    mask: list[Literal[0, 1]] | None = Field(
        None,
        description="One 0/1 per completion token; 0 = not the policy's action (no reward).",
    )
    step_spans: list[StepSpan] | None = Field(
        None, description="Explicit steps: half-open token ranges [start, end), in order."
    )
    id: Text | None = Field(None, max_length=256, description="Echoed in the result.")


class StepOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delimiter: Text = Field(..., min_length=1, description='Step separator, e.g. "\n\n".')


class TokenRewardsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[RewardItem] = Field(..., min_length=1)
    beta: StrictFloat | None = Field(
        None,
        gt=0,
        le=1e4,
        allow_inf_nan=False,
        description="Reward scale; server default if unset.",
    )
    gamma: StrictFloat = Field(
        1.0, ge=0, le=1, allow_inf_nan=False, description="Discount of `returns`."
    )
    append_eos: bool = Field(False, description="Append (and score) EOS unless already last.")
    include: list[Include] = Field(
        default_factory=lambda: list(DEFAULT_INCLUDE),
        description="Optional per-token arrays besides the rewards.",
    )
    tokenizer_fingerprint: Text | None = Field(
        None, description="If set and different from the server's: 409."
    )
    timeout_s: StrictFloat | None = Field(
        None, gt=0, allow_inf_nan=False, description="Deadline (capped by the server)."
    )
    steps: StepOptions | None = Field(
        None, description="Add a `steps` list (reward per step) to every result."
    )
    group_baseline: Literal["mean", "leave_one_out"] | None = Field(
        None, description="Add group-relative sequence scores to every group result."
    )
    encoding: Literal["json", "base64"] = Field(
        "json", description="base64: per-token arrays as base64 little-endian float32/int32."
    )
    # Reward guards. Absent: the server's default (the setting of the same name, `baselines`:
    # reward_baselines); null: off.
    baselines: list[Text] | None = Field(
        None,
        min_length=1,
        description="Loaded baselines (GET /v1/models) whose most likely log-prob per token is "
        "the reference: r = beta*(log pi_sft - max_k log pi_k), the pessimistic reward.",
    )
    ref_logprob_floor: Annotated[RefLogprobFloor, Strict()] | None = Field(
        None,
        description="Floor on the reference log-prob: a token earns at most "
        "beta*(log pi_sft - floor).",
    )
    reward_clip_min: Annotated[RewardBound, Strict()] | None = Field(
        None, description="Lower bound of each token's reward."
    )
    reward_clip_max: Annotated[RewardBound, Strict()] | None = Field(
        None, description="Upper bound of each token's reward."
    )
    aggregate: Aggregate | None = Field(
        None,
        description="The sequence score in `aggregate_reward`, group scores and returns: sum, "
        "mean, min, or soft_min (softmax(-r/T)-weighted sum of the rewards).",
    )
    soft_min_temperature: Annotated[SoftMinTemperature, Strict()] | None = Field(
        None, description="Temperature T of soft_min."
    )

    def reward_fields(self) -> dict[str, Any]:
        """The reward fields this request set (null included), for the service to resolve."""
        return {
            name: getattr(self, name) for name in REWARD_FIELDS if name in self.model_fields_set
        }

    def to_score_request(self) -> ScoreRequest:
        """What the scoring service needs (it knows no HTTP schema and no display option)."""
        return ScoreRequest(
            items=self.items,
            beta=self.beta,
            returns_gamma=self.gamma if "returns" in self.include else None,
            append_eos=self.append_eos,
            tokenizer_fingerprint=self.tokenizer_fingerprint,
            timeout_s=self.timeout_s,
            reward=self.reward_fields(),
        )

    def view(self) -> View:
        """How the answer shows each result: the display options, read once, here."""
        return View(
            include=frozenset(self.include),
            delimiter=self.steps.delimiter if self.steps else None,
            group_baseline=self.group_baseline,
            base64=self.encoding == "base64",
        )


# With "encoding": "base64" a per-token array is one base64 string of little-endian float32
# (int32 for ids and offsets) instead of a JSON list; README "Compact arrays" has the decoder.
Base64Array = Annotated[str, Field(description="base64 little-endian float32 (ids: int32)")]


class StepResult(BaseModel):
    token_span: tuple[int, int]
    char_span: tuple[int, int] | None
    reward: float
    scored_tokens: int


class TokenRewardResult(BaseModel):
    """One completion's result: a single item's, or one member of a group."""

    index: int
    id: str | None
    num_tokens: int
    eos_appended: bool
    token_ids: list[int] | Base64Array
    rewards: list[float | None] | Base64Array
    total_reward: float
    mean_reward: float | None
    aggregate_reward: float | None = Field(
        ..., description="The request's aggregate of the rewards (the total for sum)."
    )
    scored_tokens: int
    tokens: list[str] | None = None
    offsets: list[tuple[int, int]] | Base64Array | None = None
    sft_logprobs: list[float] | Base64Array | None = None
    base_logprobs: list[float] | Base64Array | None = None
    ref_logprobs: list[float] | Base64Array | None = Field(
        None, description="include baselines: the reference the reward used (max, floored)."
    )
    baseline_logprobs: dict[str, list[float] | Base64Array] | None = Field(
        None, description="include baselines: every loaded baseline's log-probs, by name."
    )
    returns: list[float | None] | Base64Array | None = None
    steps: list[StepResult] | None = None


class GroupStats(BaseModel):
    """Over each completion's `aggregate_reward` (the total by default)."""

    size: int
    mean_total_reward: float
    std_total_reward: float
    baseline: Literal["mean", "leave_one_out"] | None = None
    scores: list[float | None] | None = None


class GroupResult(BaseModel):
    """A group item's result: its completions' results, in order, and group statistics."""

    index: int
    id: str | None
    completions: list[TokenRewardResult]
    group: GroupStats


class RewardRef(BaseModel):
    """The reward the results used: the request's fields resolved against the defaults."""

    baselines: list[str]
    ref_logprob_floor: float | None
    reward_clip_min: float | None
    reward_clip_max: float | None
    aggregate: Aggregate
    soft_min_temperature: float


class ModelRef(BaseModel):
    sft: str
    base: str | None = Field(..., description="null with DRS_BASELINE=none (no base model).")
    beta: float
    tokenizer_fingerprint: str
    reward: RewardRef


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TokenRewardsResponse(BaseModel):
    object: Literal["token_rewards"] = "token_rewards"
    model: ModelRef
    results: list[TokenRewardResult | GroupResult]
    usage: Usage


class StatusResponse(BaseModel):
    status: str


class ModelCard(BaseModel):
    """One engine: what it runs and how."""

    id: str
    object: Literal["model"] = "model"
    role: str = Field(..., description="sft, base, or an extra baseline's name.")
    model: str
    revision: str | None
    backend: str
    engine_version: str
    dtype: str
    device: str
    max_model_len: int
    vocab_size: int
    prefix_sharing: bool = Field(
        ...,
        description="Whether sequences sharing a prompt reuse its computation on this engine, "
        "as measured: vLLM, once a result was computed on a guarded prefix-cache hit; "
        "transformers, whenever prompt sharing is on (it shares by construction).",
    )
    block_size: int | None = Field(
        None, description="KV-cache block size, the unit of prefix sharing (vLLM); null otherwise."
    )
    load_seconds: float


class ServerLimits(BaseModel):
    max_items_per_request: int
    max_tokens_per_request: int
    max_group_size: int
    max_inflight_tokens: int
    request_timeout_s: float
    max_request_timeout_s: float


class ModelsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
    beta: float
    tokenizer_fingerprint: str
    max_model_len: int
    limits: ServerLimits


class ErrorDetail(BaseModel):
    code: str
    message: str
    index: int | None = None
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
