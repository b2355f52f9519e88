"""Request and response models of the HTTP API (SPEC section 2)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

INCLUDE_OPTIONS = ("tokens", "offsets", "logprobs", "returns")
DEFAULT_INCLUDE = ["logprobs"]


class ChatMessage(BaseModel):
    """One chat message; extra keys (name, tool_calls, ...) go to the chat template as given."""

    model_config = ConfigDict(extra="allow")
    role: StrictStr
    content: StrictStr | None = None


StepSpan = tuple[StrictInt, StrictInt]


class GroupCompletion(BaseModel):
    """One member of a group, when it needs more than its text or ids (mask, id, spans)."""

    model_config = ConfigDict(extra="forbid")
    completion: StrictStr | None = None
    completion_token_ids: list[StrictInt] | None = None
    mask: list[Literal[0, 1]] | None = None
    step_spans: list[StepSpan] | None = None
    id: StrictStr | None = Field(None, max_length=256)


class RewardItem(BaseModel):
    """Exactly one of prompt / messages / prompt_token_ids, and exactly one of completion /
    completion_token_ids / completions (a group: one prompt, several completions)."""

    model_config = ConfigDict(extra="forbid")
    prompt: StrictStr | None = Field(None, description="Prompt text, tokenized with BOS etc.")
    messages: list[ChatMessage] | None = Field(
        None, min_length=1, description="Chat messages, rendered with the SFT chat template."
    )
    prompt_token_ids: list[StrictInt] | None = Field(None, description="Prompt token ids.")
    completion: StrictStr | None = Field(None, description="Completion text (no special tokens).")
    completion_token_ids: list[StrictInt] | None = Field(None, description="Completion ids.")
    completions: list[StrictStr | list[StrictInt] | GroupCompletion] | None = Field(
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
    id: StrictStr | None = Field(None, max_length=256, description="Echoed in the result.")


class StepOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delimiter: StrictStr = Field(..., min_length=1, description='Step separator, e.g. "\n\n".')


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
    include: list[StrictStr] = Field(
        default_factory=lambda: list(DEFAULT_INCLUDE),
        description=f"Optional per-token arrays: any of {', '.join(INCLUDE_OPTIONS)}.",
    )
    tokenizer_fingerprint: StrictStr | None = Field(
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


class TokenRewardResult(BaseModel):
    index: int
    id: str | None
    num_tokens: int
    eos_appended: bool
    token_ids: list[int]
    rewards: list[float | None]
    total_reward: float
    mean_reward: float | None
    scored_tokens: int
    tokens: list[str] | None = None
    offsets: list[tuple[int, int]] | None = None
    sft_logprobs: list[float] | None = None
    base_logprobs: list[float] | None = None
    returns: list[float | None] | None = None


class ModelRef(BaseModel):
    sft: str
    base: str
    beta: float
    tokenizer_fingerprint: str


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TokenRewardsResponse(BaseModel):
    object: Literal["token_rewards"] = "token_rewards"
    model: ModelRef
    results: list[TokenRewardResult]
    usage: Usage


class ErrorDetail(BaseModel):
    code: str
    message: str
    index: int | None = None
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
