"""Tests for GSM8K-style answer extraction."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastdllm.tasks import extract_gsm8k, extract_last_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 1,234.", "1234"),
        ("The answer is 303.", "303"),
        ("the answer is -5", "-5"),
        ("1+2=3. The answer is 3. Then 7", "3"),
        ("The answer is 4. Wait, the answer is 5.", "5"),
        ("168-67=101. 101*3=303.", "303"),
        ("12 then 34", "34"),
        ("The answer is unknown, maybe 9", "9"),
        ("The answer is 2.5.", "2.5"),
        ("no number here", None),
        ("", None),
    ],
)
def test_extract_gsm8k(text: str, expected: str | None) -> None:
    assert extract_gsm8k(text) == expected


def test_binary_minus_is_not_a_sign() -> None:
    assert extract_last_number("168-67") == "67"
    assert extract_last_number("x = -67") == "-67"


@given(st.integers(min_value=-10**9, max_value=10**9), st.text(alphabet="abc .=+", max_size=20))
def test_extract_round_trip(n: int, prefix: str) -> None:
    assert extract_gsm8k(f"{prefix} 7 The answer is {n:,}.") == str(n)
