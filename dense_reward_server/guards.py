"""The reward guards' value types, declared once: the settings (the server's defaults) and the
request fields (`api/schemas.py`) take the same bounds, so a value one accepts the other does.

A bottom module (pydantic only), below the settings, the maths and the API that use it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

Aggregate = Literal["sum", "mean", "min", "soft_min"]  # the sequence score (README, guards)
RefLogprobFloor = Annotated[float, Field(le=0, allow_inf_nan=False)]  # a log-prob: <= 0
RewardBound = Annotated[float, Field(allow_inf_nan=False)]  # reward_clip_min / max
SoftMinTemperature = Annotated[float, Field(gt=0, allow_inf_nan=False)]
