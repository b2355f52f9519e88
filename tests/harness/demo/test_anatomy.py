"""The sums reward's anatomy: roles read off the answer's layout (a run on a tiny pair is in
test_sums.py, beside the tiny build)."""

from __future__ import annotations

from harness.demo import anatomy


def test_each_token_gets_its_role_from_the_one_before() -> None:
    # "7+4=11, 11+7=18</s>" token by token
    previous = [None, "7", "+", "4", "=", "11", ",", " 11", "+", "7", "=", "18"]
    roles = [anatomy.role(p, eos=False) for p in previous] + [anatomy.role("18", eos=True)]
    assert roles == [
        "first", "punctuation", "addend", "punctuation", "sum", "punctuation", "copy",
        "punctuation", "addend", "punctuation", "sum", "punctuation", "eos",
    ]  # fmt: skip
