"""The rewards the experiment trains on and the ranking eval compares: request fields on one
server that loads `base` and `sft-half` together (`DRS_EXTRA_BASELINES=sft-half=...`)."""

from __future__ import annotations

from typing import Any

BASE: dict[str, Any] = {"baselines": ["base"]}
HALF: dict[str, Any] = {"baselines": ["sft-half"]}
# Each guard's parameters are fixed in advance, not tuned on results: the floor at the
# implausible-token threshold of the hacking metric (DRS_IMPLAUSIBLE_LOGPROB, -5), a token's
# gain capped at 1 nat, the soft minimum at temperature 1.
FLOOR_CLIP: dict[str, Any] = {
    **HALF,
    "ref_logprob_floor": -5.0,
    "reward_clip_min": -5.0,
    "reward_clip_max": 1.0,
}
PESSIMISTIC: dict[str, Any] = {"baselines": ["base", "sft-half"]}
SOFT_MIN: dict[str, Any] = {**HALF, "aggregate": "soft_min", "soft_min_temperature": 1.0}

GUARDED = {
    "base": ("baseline base", BASE),
    "sft-half": ("baseline sft-half", HALF),
    "sft-half-floor-clip": ("sft-half, floor -5 and clip [-5, 1]", FLOOR_CLIP),
    "pessimistic": ("pessimistic: max of base and sft-half", PESSIMISTIC),
    "sft-half-soft-min": ("sft-half, soft minimum (T = 1)", SOFT_MIN),
}
