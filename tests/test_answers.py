from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ponder.answers import extract_answer, gsm8k_gold, normalize_number
from ponder.answers.extract import last_boxed


def test_last_boxed_wins_over_earlier_boxes_and_numbers() -> None:
    assert extract_answer("first \\boxed{3}, then 7, finally \\boxed{12}. Done 99") == "12"


def test_boxed_with_nested_braces() -> None:
    assert last_boxed("x = \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_answer("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"


def test_unclosed_box_falls_back_to_none_from_box() -> None:
    assert last_boxed("cut off \\boxed{12") is None


def test_last_number_when_no_box() -> None:
    assert extract_answer("She has 5 apples, buys 3, so 8 in all.") == "8"
    assert extract_answer("no digits here") is None


def test_numbers_normalise_to_one_key() -> None:
    assert extract_answer("\\boxed{1,000}") == "1000"
    assert extract_answer("The answer is $18.00.") == "18"
    assert extract_answer("\\boxed{\\$32}") == "32"
    assert extract_answer("\\boxed{12\\text{ dollars}}") == "12"
    assert extract_answer("total: -0.50") == "-0.5"
    assert extract_answer("\\boxed{}") is None


def test_gsm8k_gold_takes_last_hashes_and_drops_commas() -> None:
    assert gsm8k_gold("a <<1+1=2>> b\n#### 2,125") == "2125"
    assert gsm8k_gold("#### -3") == "-3"


@given(st.integers(min_value=-(10**9), max_value=10**9))
def test_formatted_integers_normalise_to_plain(n: int) -> None:
    assert normalize_number(f"{n:,}") == str(n)
    assert normalize_number(f"{n}.00") == str(n)
    assert extract_answer(f"so the result is \\boxed{{{n:,}}}") == str(n)
