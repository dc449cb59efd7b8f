"""Graders that cannot be gamed (issue 24, item 4): code candidates are graded with the tests in
a process the candidate's code cannot reach (`ponder.sandbox.grading`).

Every hostile candidate of `hostile_code.py` (the ten kinds the issue names) is graded against
a real HumanEval problem and a real MBPP problem whose reference solution the same grader
passes; none passes a single test. The reference solutions of the first 20 HumanEval and the
first 20 MBPP test problems pass. The rest pins down the grader's semantics: what runs where,
what counts as plain data, time limits, and the weaker in-process fallback.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostile_code import HOSTILE, KINDS, hostile
from ponder.sandbox import Limits, Sandbox
from ponder.sandbox.grading import TestReport, plan_test, run_unit_tests
from ponder.sandbox.worker import NotPlain, decode, dumps, encode, loads, well_formed
from ponder.tasks.registry import get_task, grade, reference_answer
from ponder.types import Problem
from ponder.verify.checks import run_tests

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sandbox needs Linux")

# generous: an honest candidate must load and pass even on a loaded 2-core machine
LIMITS = Limits(timeout_s=8, memory_mb=512, max_output_bytes=256 * 1024)
SLACK_S = 8  # process start and teardown on a loaded 2-core machine


def problems() -> dict[str, Problem]:
    """A real HumanEval problem and a real MBPP test-split problem (ids 11-510)."""
    he = get_task("humaneval").load(limit=1)[0]
    mbpp = next(p for p in get_task("mbpp").load(limit=11) if p.id == "mbpp/11")
    return {"humaneval": he, "mbpp": mbpp}


@pytest.fixture(scope="module")
def graded() -> dict[tuple[str, str], TestReport]:
    """Every hostile candidate and the reference solution, graded on both problems (two at a
    time, as the bench harness would)."""
    box = Sandbox(LIMITS, parallel=2)
    jobs: dict[tuple[str, str], tuple[Problem, str]] = {}
    for key, p in problems().items():
        jobs[(key, "honest")] = (p, str(reference_answer(p)))
        for name in HOSTILE:
            jobs[(key, name)] = (p, hostile(name, str(p.meta["entry_point"])))

    async def main() -> list[TestReport]:
        return list(await asyncio.gather(*(run_tests(p, c, box) for p, c in jobs.values())))

    return dict(zip(jobs, asyncio.run(main()), strict=True))


# -- the must-show --------------------------------------------------------------------------------
def test_every_kind_of_attack_the_issue_names_has_candidates() -> None:
    assert len(KINDS) == 10
    assert sorted(n for names in KINDS.values() for n in names) == sorted(HOSTILE)


@pytest.mark.parametrize("problem", ["humaneval", "mbpp"])
def test_the_honest_solution_is_graded_correct(
    problem: str, graded: dict[tuple[str, str], TestReport]
) -> None:
    report = graded[(problem, "honest")]
    assert report.all_passed, report
    assert {o.how for o in report.outcomes} == {"calls"}
    assert report.isolation == "full" or os.geteuid() != 0


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("problem", ["humaneval", "mbpp"])
def test_a_hostile_candidate_is_never_graded_correct(
    problem: str, name: str, graded: dict[tuple[str, str], TestReport]
) -> None:
    assert graded[(problem, "honest")].all_passed  # the grader works on this problem
    report = graded[(problem, name)]
    assert report.passed == 0 and not report.all_passed, report
    assert all(o.reason for o in report.outcomes)  # each failure says why
    assert report.seconds < LIMITS.timeout_s + SLACK_S  # the whole grading is bounded


def test_grade_and_the_verifier_use_the_isolated_grader() -> None:
    p = problems()["mbpp"]
    box = Sandbox(LIMITS)
    cheat = hostile("override __eq__ and __ne__", "remove_Occ")
    assert asyncio.run(grade(p, reference_answer(p), box))
    assert not asyncio.run(grade(p, cheat, box))
    report = asyncio.run(run_tests(p, cheat, box))
    assert report.reason is not None and "compared" in report.reason


def test_reference_solutions_of_the_first_20_humaneval_and_mbpp_test_problems_pass() -> None:
    """~5 s on a quiet 2-core machine: not marked slow."""
    mbpp_test = [p for p in get_task("mbpp").load(limit=40) if int(p.id.split("/")[1]) >= 11]
    chosen = get_task("humaneval").load(limit=20) + mbpp_test[:20]
    assert len(chosen) == 40 and chosen[20].id == "mbpp/11" and chosen[-1].id == "mbpp/30"
    box = Sandbox(parallel=2)

    async def main() -> list[TestReport]:
        return list(await asyncio.gather(*(run_tests(p, str(p.gold), box) for p in chosen)))

    reports = asyncio.run(main())
    failing = {p.id: r.reason for p, r in zip(chosen, reports, strict=True) if not r.all_passed}
    assert failing == {}
    assert all(o.how == "calls" for r in reports for o in r.outcomes)


# -- what runs where ------------------------------------------------------------------------------
def go(code: str, tests: list[str], limits: Limits = LIMITS, **kwargs: Any) -> TestReport:
    return asyncio.run(run_unit_tests(Sandbox(limits), code, tests, **kwargs))


def test_the_tests_see_the_problems_helpers_and_real_builtins_not_the_candidates() -> None:
    # HumanEval/32's test calls `poly` from the prompt: the prompt's, not the candidate's
    p = next(p for p in get_task("humaneval").load(limit=40) if p.id == "HumanEval/32")
    plan = plan_test(p.meta["tests"][0], prelude=p.meta["prompt"], entry_points=["find_zero"])
    assert plan["names"] == ["find_zero"] and "poly" not in plan["names"]
    cheat = "def poly(xs, x):\n    return 0\n\ndef find_zero(xs):\n    return 0.0\n"
    assert not asyncio.run(grade(p, cheat, Sandbox(LIMITS)))
    assert asyncio.run(grade(p, str(p.gold), Sandbox(LIMITS)))
    # a module global named like a builtin is not the test's builtin
    r = go("abs = lambda x: 0\ndef half(x):\n    return 7\n", ["assert abs(half(4) - 2) < 1e-9"])
    assert r.passed == 0


def test_an_entry_point_named_like_a_builtin_is_the_candidates() -> None:
    p = next(p for p in get_task("mbpp").load(limit=130) if p.id == "mbpp/126")
    assert p.meta["entry_point"] == "sum"
    assert asyncio.run(grade(p, str(p.gold), Sandbox(LIMITS)))
    assert not asyncio.run(grade(p, "def sum(a, b):\n    return a + b\n", Sandbox(LIMITS)))


def test_the_candidates_classes_and_objects_are_used_through_references() -> None:
    # MBPP 601 builds Pair objects, 367 builds a tree of Node objects in its setup
    wanted = {"mbpp/601", "mbpp/367", "mbpp/596", "mbpp/533"}
    chosen = [p for p in get_task("mbpp").load(limit=610) if p.id in wanted]
    box = Sandbox(LIMITS)
    for p in chosen:
        report = asyncio.run(run_tests(p, str(p.gold), box))
        assert report.all_passed, (p.id, report)
        assert {o.how for o in report.outcomes} == {"calls"}
    tests = [
        "c = Counter()\nc.add(2)\nc.add(3)\nassert c.total == 5 and c.total_of([1, 2]) == 3",
        "assert isinstance(Counter(), Counter) and len(Counter()) == 0",
        "assert str(Counter()) == 'Counter(0)' and not Counter()",  # its len() is 0
    ]
    code = (
        "class Counter:\n    def __init__(self):\n        self.total = 0\n"
        "    def add(self, n):\n        self.total += n\n"
        "    def total_of(self, xs):\n        return sum(xs)\n"
        "    def __len__(self):\n        return 0\n"
        "    def __str__(self):\n        return f'Counter({self.total})'\n"
    )
    assert go(code, tests).all_passed


@pytest.mark.parametrize(
    ("test", "why"),
    [
        ("assert make() == make()", "compared"),
        ("assert make() != 5", "compared"),
        ("assert 3 in make()", "compared"),
        ("assert make() + 1 == 2", "compared"),
        ("assert {make(): 1}", "compared"),
    ],
)
def test_the_candidates_objects_cannot_be_compared_or_computed_with(test: str, why: str) -> None:
    code = (
        "class Yes:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return True\n"
        "    def __contains__(self, o): return True\n    def __add__(self, o): return 2\n"
        "    def __hash__(self): return 0\n"
        "def make():\n    return Yes()\n"
    )
    r = go(code, [test, f"try:\n    {test}\nexcept BaseException:\n    pass"])
    assert r.passed == 0  # not even when the test catches the failure
    assert all(why in (o.reason or "") for o in r.outcomes), r


def test_exceptions_come_back_as_builtin_ones_but_never_steer_the_tests_loops() -> None:
    code = (
        "def parse(s):\n    if not s.isdigit():\n        raise ValueError(s)\n    return int(s)\n"
    )
    tests = [
        "try:\n    parse('x')\n    assert False\nexcept ValueError as e:\n    assert str(e) == 'x'",
        "assert parse('12') == 12",
    ]
    assert go(code, tests).all_passed
    # a StopIteration would end map() early and make all() true: it comes as CandidateError
    cheat = "def f(x):\n    raise StopIteration\n"
    r = go(cheat, ["assert all(map(lambda x: f(x) == x * 2, [1, 2, 3]))"])
    assert r.passed == 0 and "CandidateError" in str(r.reason)


def test_values_travel_as_plain_data_as_python_would_compare_them() -> None:
    code = (
        "import collections, enum\n"
        "class Colour(enum.IntEnum):\n    RED = 1\n"
        "Point = collections.namedtuple('Point', 'x y')\n"
        "def counts(s):\n    return collections.Counter(s)\n"
        "def point():\n    return Point(1, 2)\n"
        "def red():\n    return Colour.RED\n"
        "def squares(n):\n    return (i * i for i in range(n))\n"
        "def odd():\n    return [float('nan'), float('inf'), 1j, b'\\x00', 10**5000, {1: {2}}]\n"
        "def keys():\n    return {'a': 1}.keys()\n"
    )
    tests = [
        "assert counts('aab') == {'a': 2, 'b': 1}",
        "assert point() == (1, 2)",
        "assert red() == 1",
        "assert list(squares(3)) == [0, 1, 4]",
        "assert squares(3) != [0, 1, 4]",  # a generator is not a list, as in Python
        "import math\nv = odd()\nassert math.isnan(v[0])\n"
        "assert v[1:] == [float('inf'), 1j, b'\\x00', 10**5000, {1: {2}}]",
        "assert keys() == {'a'}",
    ]
    r = go(code, tests)
    assert r.all_passed, r.outcomes


def test_a_function_that_only_hangs_on_one_input_fails_only_that_test() -> None:
    code = (
        "import os\n"
        "def f(x):\n"
        "    if x == 2:\n        while True:\n            pass\n"
        "    if x == 3:\n        os._exit(0)\n"
        "    return x * 10\n"
    )
    tests = [f"assert f({x}) == {x * 10}" for x in (1, 2, 3, 4)]
    r = go(code, tests, per_test_s=1, budget_s=6)
    assert [o.passed for o in r.outcomes] == [True, False, False, True], r
    assert r.outcomes[1].reason == "time limit (1 s per test)"
    assert "ended" in str(r.outcomes[2].reason)


def test_the_budget_bounds_the_whole_grading() -> None:
    code = "def f(x):\n    while True:\n        pass\n"
    started = time.monotonic()
    r = go(code, [f"assert f({x}) == 1" for x in range(6)], per_test_s=1, budget_s=2)
    assert r.passed == 0 and time.monotonic() - started < 2 + SLACK_S
    assert "budget" in str(r.outcomes[-1].reason)


def test_printing_neither_passes_nor_fails_a_test() -> None:
    code = "print('hello')\ndef f(x):\n    print('{\"value\": 1}', x)\n    return x + 1\n"
    assert go(code, ["assert f(1) == 2", "assert f(2) == 3"]).all_passed
    assert go(code, ["assert f(1) == 5"]).passed == 0


def test_code_that_does_not_load_fails_every_test_with_the_reason() -> None:
    r = go("def f(x):\n    return x\nraise ValueError('broken')\n", ["assert f(1) == 1"] * 2)
    assert r.passed == 0 and "ValueError: broken" in str(r.reason)
    r = go("def f(x) return x", ["assert f(1) == 1"])
    assert r.passed == 0 and "SyntaxError" in str(r.reason)


def test_an_answer_over_the_size_cap_fails_the_test_and_nothing_else() -> None:
    code = "def f(x):\n    return 'x' * x\n"
    r = go(code, ["assert len(f(10)) == 10", "assert len(f(10**7)) == 10**7", "assert f(1) == 'x'"])
    assert [o.passed for o in r.outcomes] == [True, False, True], r


# -- the fallback (tests that pass the candidate something that is not plain data) ----------------
FALLBACK_TESTS = [
    "assert apply_twice(lambda x: x + 3, 1) == 7",
    "assert apply_twice(str.swapcase, 'aB') == 'aB'",
]
APPLY_TWICE = "def apply_twice(f, x):\n    return f(f(x))\n"


def test_a_test_that_passes_a_function_runs_in_a_fresh_candidate_process() -> None:
    r = go(APPLY_TWICE, FALLBACK_TESTS)
    assert r.all_passed and {o.how for o in r.outcomes} == {"process"}, r
    wrong = go("def apply_twice(f, x):\n    return f(x)\n", FALLBACK_TESTS)
    assert wrong.passed == 0 and {o.how for o in wrong.outcomes} == {"process"}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_the_hostile_candidates_fail_in_the_fallback_too(name: str) -> None:
    r = go(hostile(name, "apply_twice"), FALLBACK_TESTS)
    assert r.passed == 0, r
    assert r.seconds < LIMITS.timeout_s + SLACK_S


# Reads the fallback's nonce out of its caller's frame and writes it on the private channel.
TARGETED = """
import os, sys
def apply_twice(f, x):
    frame = sys._getframe()
    while frame is not None:
        if 'nonce' in frame.f_locals and 'out_fd' in frame.f_locals:
            os.write(frame.f_locals['out_fd'], frame.f_locals['nonce'])
            os._exit(0)
        frame = frame.f_back
    return 'nope'
"""


def test_the_fallback_is_weaker_an_attack_aimed_at_it_wins_where_calls_do_not() -> None:
    """Documents the limit (see `ponder.sandbox.grading`): in the candidate's own process, code
    that knows the fallback can read its nonce. The same code gets nowhere in the harness."""
    assert go(TARGETED, FALLBACK_TESTS).all_passed
    assert go(TARGETED, ["assert apply_twice(1, 2) == 'yes'"]).passed == 0


# -- the plain-data codec -------------------------------------------------------------------------
plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
    | st.binary(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.frozensets(st.integers() | st.text(max_size=3), max_size=3)
        | st.dictionaries(st.integers() | st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=20,
)


@given(plain)
def test_plain_data_round_trips_exactly(value: Any) -> None:
    data = loads(dumps(encode(value)))
    well_formed(data)
    back = decode(data)
    assert back == value and type(back) is type(value)


@pytest.mark.parametrize(
    "data",
    [
        {"$": "eval", "v": "__import__('os')"},
        {"$": "tuple", "v": [1], "extra": 1},
        {"$": "ref", "v": 1},  # no references where none are expected
        {"$": "set", "v": [[1, 2]]},  # unhashable
        {"$": "float", "v": "1e400"},
        {"$": "type", "v": "function"},
        {"$": "range", "v": [0, 1, 0]},
        {"not": "tagged"},
        "deep",
    ],
)
def test_malformed_data_is_refused(data: Any) -> None:
    if data == "deep":
        for _ in range(300):
            data = [data]
    with pytest.raises(NotPlain):
        decode(data)
    if data not in ({"$": "ref", "v": 1}, {"$": "set", "v": [[1, 2]]}):
        with pytest.raises(NotPlain):
            well_formed(data)  # the parent's check, which builds (and hashes) nothing


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        (type("Sub", (int,), {"__eq__": lambda s, o: True})(3), 3),
        (type("Sub", (list,), {"__eq__": lambda s, o: True})([1]), [1]),
        (type("Sub", (str,), {"__str__": lambda s: "lie"})("truth"), "truth"),
    ],
)
def test_subclasses_travel_as_their_stored_value(value: Any, plain: Any) -> None:
    back = decode(encode(value, lenient=True))
    assert back == plain and type(back) is type(plain)
    with pytest.raises(NotPlain):
        encode(value)  # only the candidate's side converts


def test_what_is_not_plain_becomes_a_reference_or_is_refused() -> None:
    refs: list[object] = []

    def refer(v: object) -> int:
        refs.append(v)
        return len(refs) - 1

    obj: Callable[[], None] = lambda: None  # noqa: E731
    assert encode([obj], refer) == [{"$": "ref", "v": 0}] and refs == [obj]
    with pytest.raises(NotPlain):
        encode(obj)
    with pytest.raises(NotPlain):
        encode(int.__add__)
