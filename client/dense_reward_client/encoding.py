"""Compact arrays: base64 of little-endian float32 (token ids and offsets as int32).

Decode with numpy:

    values = np.frombuffer(base64.b64decode(text), dtype="<f4")   # rewards, log-probs, returns
    ids = np.frombuffer(base64.b64decode(text), dtype="<i4")      # token_ids
    offsets = np.frombuffer(base64.b64decode(text), dtype="<i4").reshape(-1, 2)

The JSON form prints float32 values exactly (shortest round-trip form), so decoding either
form to float32 gives the same bits. A JSON `null` (masked token) is NaN here.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np


def encode_floats(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f4").tobytes()).decode("ascii")


def encode_ints(values: Sequence[int] | Sequence[Sequence[int]] | np.ndarray) -> str:
    array = np.ascontiguousarray(np.asarray(values, dtype=np.int64).astype("<i4"))
    return base64.b64encode(array.tobytes()).decode("ascii")


def decode_floats(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


def decode_ints(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<i4")
