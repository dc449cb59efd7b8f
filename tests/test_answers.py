from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ponder.answers import extract_answer, gsm8k_gold, normalize_number
from ponder.answers.extract import last_boxed


def test_last_boxed_wins_over_earlier_boxes_and_numbers() -> None:
    assert extract_answer("first \\boxed{3}, then 7, finally \\boxed{12}. Done 99") == "12"


def test_boxed_with_nested_braces() -> None:
    assert last_boxed("x = \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_answer("\\boxed{\\frac{1}{2}}") == "0.5"  # one spelling per value


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


# -- the answer layer by kind -------------------------------------------------------------------
import json  # noqa: E402

import pytest  # noqa: E402

from ponder.answers import canonical, cluster, equivalent, extract  # noqa: E402
from ponder.tasks.data import data_file  # noqa: E402

# (a, b, kind, equivalent?) — each checked by hand.
PAIRS: list[tuple[str, str, str, bool]] = [
    # numbers as models write them
    ("1,000", "1000", "number", True),
    ("$18.00", "18", "number", True),
    ("\\$18", "18", "number", True),
    ("-0.50", "-0.5", "number", True),
    ("−3", "-3", "number", True),
    ("1.5e3", "1500", "number", True),
    ("1.5 \\times 10^{3}", "1500", "number", True),
    ("2.5E-2", "0.025", "number", True),
    ("25%", "25", "number", True),
    ("25\\%", "25", "number", True),
    ("12 dollars", "12", "number", True),
    ("12\\text{ cm}", "12", "number", True),
    ("5cm", "5", "number", True),
    ("7.0", "7", "number", True),
    ("007", "7", "number", True),
    ("2/6", "1/3", "number", True),
    ("\\frac{1}{4}", "0.25", "number", True),
    ("1,234,567", "1234567", "number", True),
    ("18", "18.5", "number", False),
    ("-18", "18", "number", False),
    ("1,000", "1", "number", False),
    ("0.333", "1/3", "number", False),
    ("1.5e3", "15", "number", False),
    # LaTeX expressions (math-verify)
    ("\\frac{1}{2}", "0.5", "math", True),
    ("\\dfrac{1}{2}", "\\frac12", "math", True),
    ("\\frac{\\sqrt{3}}{2}", "\\dfrac{\\sqrt3}{2}", "math", True),
    ("3\\sqrt{2}", "\\sqrt{18}", "math", True),
    ("2\\sqrt{2}", "\\sqrt{8}", "math", True),
    ("\\pi", "\\pi", "math", True),
    ("2\\pi", "\\pi", "math", False),
    ("(1,2)", "\\left( 1, 2 \\right)", "math", True),
    ("[0,1)", "[0, 1)", "math", True),
    ("[0,1)", "(0,1]", "math", False),
    ("(-\\infty, 3]", "(-\\infty,3]", "math", True),
    ("90^\\circ", "90", "math", True),
    ("\\text{(B)}", "B", "math", True),
    ("x^2+2x+1", "(x+1)^2", "math", True),
    ("x^2+1", "(x+1)^2", "math", False),
    ("\\frac{1}{3}", "0.333333", "math", True),
    ("\\frac{1}{3}", "0.3", "math", False),
    ("3x", "3", "math", False),
    ("\\{1, 2\\}", "\\{2, 1\\}", "math", True),
    ("10\\%", "0.1", "math", True),
    ("\\$5", "5", "math", True),
    ("4", "5", "math", False),
    ("\\sqrt{2}", "1.41421356", "math", True),
    ("\\sqrt{2}", "1.4", "math", False),
    ("-\\frac{3}{4}", "-0.75", "math", True),
    ("\\frac{3}{4}", "-0.75", "math", False),
    ("\\text{Monday}", "Monday", "math", True),
    ("\\text{Monday}", "Tuesday", "math", False),
    # multiple choice
    ("B", "b", "choice", True),
    ("(C)", "C", "choice", True),
    ("\\text{(D)}", "D", "choice", True),
    ("A, C", "CA", "choice", True),
    ("A", "B", "choice", False),
    ("AB", "A", "choice", False),
    # code: formatting and comments do not matter, behaviour-visible text does
    ("def f(x):\n    return x+1", "def f(x):  # add one\n    return x + 1", "code", True),
    ("def f(x):\n    return x+1", "def f(x):\n    return x+2", "code", False),
    ("print( 'a' )", "print('a')", "code", True),
    ("print('a')", "print('b')", "code", False),
    ("(1,2)", "(2,1)", "math", False),
    ("\\frac{2}{3}", "\\frac{3}{2}", "math", False),
    ("x+1", "x-1", "math", False),
    ("\\sqrt{3}", "3", "math", False),
    ("100", "1000", "number", False),
    ("C", "(D)", "choice", False),
]


@pytest.mark.parametrize(("a", "b", "kind", "same"), PAIRS)
def test_hand_checked_pairs(a: str, b: str, kind: str, same: bool) -> None:
    assert equivalent(a, b, kind) is same
    assert equivalent(b, a, kind) is same


def test_the_table_is_big_enough_and_balanced() -> None:
    assert len(PAIRS) >= 60
    assert sum(same for *_, same in PAIRS) >= 20 and sum(not same for *_, same in PAIRS) >= 20


@pytest.mark.parametrize(
    ("text", "kind", "answer"),
    [
        ("so she pays \\boxed{\\$1,234.50}.", "number", "1234.5"),
        ("The total is 1,234 apples.", "number", "1234"),
        ("It drops to -7 degrees.", "number", "-7"),
        ("about 2.5e-3 seconds", "number", "0.0025"),
        ("\\boxed{3 + 4 = 7}", "number", "7"),
        ("no digits here", "number", None),
        ("\\boxed{}", "number", None),
        ("Thus \\boxed{\\frac{\\sqrt{3}}{2}}.", "math", "\\frac{\\sqrt{3}}{2}"),
        ("\\boxed{\\left\\{ 1, 2 \\right\\}}", "math", "\\left\\{ 1, 2 \\right\\}"),
        ("The final answer is $x = 3$.", "math", "x = 3"),
        ("The answer is (C).", "choice", "C"),
        ("**B**", "choice", "B"),
        ("Answer: E", "choice", "E"),
        ("I pick option D because", "choice", "D"),
        ("\\boxed{\\text{(A)}}", "choice", "A"),
        ("\\boxed{A, C}", "choice", "AC"),
        ("B) 42\nbecause ...", "choice", "B"),
        ("no choice made", "choice", None),
        ("Here:\n```python\nprint(1)\n```\nthen\n```python\nprint(2)\n```", "code", "print(2)"),
        ("cut off\n```python\ndef f():\n    return 1\n", "code", "def f():\n    return 1"),
        ("```python\n```", "code", None),
        ("just words", "code", None),
    ],
)
def test_extract_by_kind(text: str, kind: str, answer: str | None) -> None:
    assert extract(text, kind) == answer


def test_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown answer kind 'words'"):
        extract("x", "words")


def test_no_answer_is_equivalent_to_nothing() -> None:
    assert not equivalent(None, None, "math")
    assert not equivalent(None, "3", "number")
    assert canonical(None, "number") is None


def test_cluster_groups_equivalent_spellings_in_first_seen_order() -> None:
    answers = ["0.5", "\\frac12", "3", None, "\\dfrac{1}{2}", "1/2", "\\frac{6}{2}"]
    assert cluster(answers, "math") == [0, 0, 1, None, 0, 0, 1]


# -- properties ---------------------------------------------------------------------------------
ANSWERS = st.one_of(
    st.integers(-(10**9), 10**9).map(str),
    st.fractions(max_denominator=50).map(lambda f: f"\\frac{{{f.numerator}}}{{{f.denominator}}}"),
    st.decimals(-1000, 1000, places=3, allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["\\sqrt{2}", "2\\sqrt{2}", "\\pi", "(1,2)", "[0,1)", "x^2", "\\text{B}"]),
)


@given(ANSWERS)
def test_equivalence_is_reflexive(a: str) -> None:
    assert equivalent(a, a, "math")


@given(ANSWERS, ANSWERS)
def test_equivalence_is_symmetric_and_keys_agree(a: str, b: str) -> None:
    assert equivalent(a, b, "math") == equivalent(b, a, "math")
    if canonical(a, "math") == canonical(b, "math"):
        assert equivalent(a, b, "math")


@given(st.fractions(max_denominator=40), st.fractions(max_denominator=40))
def test_keys_agree_with_equivalence_on_exact_numbers(x: object, y: object) -> None:
    from fractions import Fraction

    assert isinstance(x, Fraction) and isinstance(y, Fraction)
    a = f"\\frac{{{x.numerator}}}{{{x.denominator}}}"
    b = f"{y.numerator}/{y.denominator}"
    assert (canonical(a, "math") == canonical(b, "math")) == (x == y)
    assert equivalent(a, b, "math") == (x == y)


@given(st.integers(-(10**12), 10**12))
def test_integers_round_trip_through_spellings(n: int) -> None:
    spellings = [
        f"{n:,}",
        f"\\boxed{{{n:,}}}",
        f"${n}",
        f"{n}.0",
        f"\\boxed{{{n}.00}}",
        f"${n:,}.00",
    ]
    for s in spellings:
        assert extract(s, "number") == str(n), s
        assert equivalent(extract(s, "math"), str(n), "math"), s


# -- gold against gold ---------------------------------------------------------------------------
def test_math500_reference_solutions_agree_with_their_answers() -> None:
    rows = [json.loads(x) for x in data_file("math500/test.jsonl").read_text().splitlines()]
    misses = [
        (r["unique_id"], extract(r["solution"], "math"), r["answer"])
        for r in rows
        if not equivalent(extract(r["solution"], "math"), r["answer"], "math")
    ]
    print(f"MATH-500 gold-vs-gold misses ({len(misses)}):", *misses, sep="\n  ")
    assert len(rows) == 500
    assert len(misses) <= 2, misses  # >= 99.5%


def test_gsm8k_reference_solutions_all_agree() -> None:
    for split in ("test", "train"):
        rows = [json.loads(x) for x in data_file(f"gsm8k/{split}.jsonl").read_text().splitlines()]
        misses = [
            r["answer"][-40:]
            for r in rows
            if not equivalent(extract(r["answer"], "number"), gsm8k_gold(r["answer"]), "number")
        ]
        assert not misses, misses


# -- a sample's answer is the one it states ------------------------------------------------------
from ponder.answers import read_answer  # noqa: E402


@pytest.mark.parametrize(
    ("text", "kind", "stated", "unstated"),
    [
        ("So she pays \\boxed{18}.", "number", "18", None),
        ("The answer is 18 dollars. Then 3 more.", "number", "18", None),  # the stated, not last
        ("Answer: $1,000", "number", "1000", None),
        ("#### 72", "number", "72", None),
        ("Two plus three is 5.", "number", None, "5"),
        ("To solve the problem of adding 2", "number", None, "2"),  # cut off, restating
        ("no digits at all", "number", None, None),
        ("The final answer is $\\frac{1}{2}$", "math", "\\frac{1}{2}", None),
        ("so x = 7 in the end", "math", None, "7"),
        ("The answer is 18.", "math", "18", None),
        ("The answer is (B).", "choice", "B", None),
        ("I think (B) fits best", "choice", None, "B"),
        ("```python\nprint(1)\n```", "code", "print(1)", None),  # a code block states itself
        ("The answer is 18.", None, "18", None),
        ("it comes to 18", None, None, "18"),
    ],
)
def test_a_sample_states_its_answer_or_has_none(
    text: str, kind: str | None, stated: str | None, unstated: str | None
) -> None:
    assert read_answer(text, kind) == (stated, unstated)


async def test_a_vote_counts_stated_answers_only_and_says_why_one_has_none() -> None:
    """Three samples restate a number from the question; two state the answer: the stated
    answer wins (a loose reading voted 12 in three)."""
    from helpers import scripted_engine

    replies = [
        "We have 12 apples and",
        "12 apples are",
        "Start from 12",
        "\\boxed{7}",
        "The answer is 7.",
    ]
    engine, _ = scripted_engine(lambda req, i, rng: replies[i])
    r = await engine.solve("12 apples, 5 eaten: how many are left?", "vote", n=5, seed=0)
    assert r.answer == "7" and r.info["votes"] == {"7": 2}
    assert [c.answer for c in r.candidates] == [None, None, None, "7", "7"]
    assert "no answer stated" in (r.candidates[0].note or "") and "'12'" in (
        r.candidates[0].note or ""
    )


def test_a_programs_printed_output_is_read_as_it_stands() -> None:
    from ponder.runtime.context import program_answer
    from ponder.sandbox import ExecResult

    run = ExecResult(ok=True, stdout="400.0\n", exit_code=0)
    assert program_answer(run, "number") == "400" and program_answer(run, "math") == "400"
