"""Property tests (hypothesis) of the compact arrays (base64) the client decodes and the server
encodes: one definition (dense_reward_client.encoding) for both sides."""

from __future__ import annotations

import base64
import json

import numpy as np
import orjson
from dense_reward_client import encoding
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

# ---------------------------------------------------------------------------------------------
# Compact arrays


@given(arrays(np.float32, st.integers(0, 64), elements=st.floats(width=32)))
def test_base64_floats_round_trip_bit_for_bit(values: np.ndarray) -> None:
    text = encoding.encode_floats(values)
    assert text.isascii()
    decoded = encoding.decode_floats(text)
    assert decoded.dtype == np.dtype("<f4")
    assert decoded.view("<u4").tolist() == values.astype("<f4").view("<u4").tolist()
    # README's recipe gives the same thing.
    assert np.frombuffer(base64.b64decode(text), dtype="<f4").tobytes() == decoded.tobytes()


@given(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=64))
def test_base64_ints_round_trip(values: list[int]) -> None:
    assert encoding.decode_ints(encoding.encode_ints(values)).tolist() == values


@given(st.lists(st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)), max_size=32))
def test_base64_offsets_flatten_as_start_end_pairs(pairs: list[tuple[int, int]]) -> None:
    decoded = encoding.decode_ints(encoding.encode_ints(pairs)).reshape(-1, 2)
    assert [tuple(p) for p in decoded.tolist()] == pairs


@given(arrays(np.float32, st.integers(0, 64), elements=st.floats(width=32, allow_nan=False)))
def test_json_and_base64_forms_decode_to_the_same_bits(values: np.ndarray) -> None:
    # The JSON form (orjson, as the service serializes) prints float32 in shortest exact form.
    finite = values[np.isfinite(values)]
    from_json = np.asarray(json.loads(orjson.dumps(finite, option=orjson.OPT_SERIALIZE_NUMPY)))
    from_b64 = encoding.decode_floats(encoding.encode_floats(finite))
    assert from_json.astype("<f4").tobytes() == from_b64.tobytes()
