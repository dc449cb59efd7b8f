"""Refinement on the scripted backend: critique and revision rounds until the critic accepts
(Self-Refine), the whole exchange shown with `history` (RISE), and code repaired from its
public tests only (LeTI)."""

from __future__ import annotations

import math
import random

from helpers import no_sleep
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.search.refine import public_tests
from ponder.types import GenRequest, Problem

MATH = Problem(question="What is 6 * 7?", kind="number")


def tutor(req: GenRequest, i: int, rng: random.Random) -> str:
    """Answers 41 first; once told it is wrong, 42. Critiques: No for 41, Yes for 42."""
    msgs = req.messages or []
    last = msgs[-1].content if msgs else ""
    if last.startswith("Check the solution"):
        return "No, 6 * 7 is not 41." if "{41}" in msgs[-2].content else "Yes."
    if last.startswith("Here is feedback"):
        return "Right, 6 * 7 = \\boxed{42}."
    return "6 * 7 = \\boxed{41}."


def judge_logprobs(req: GenRequest, i: int, rng: random.Random) -> dict[str, float]:
    msgs = req.messages or []
    wrong = len(msgs) >= 2 and "{41}" in msgs[-2].content
    p = 0.1 if wrong else 0.9
    return {"Yes": math.log(p), "No": math.log(1 - p)}


def engine(reply: object, **kw: object) -> tuple[Engine, ScriptedLM]:
    lm = ScriptedLM(reply, capabilities=Capabilities(slots=4, n_with_stop=True), **kw)  # type: ignore[arg-type]
    return Engine(lm, scheduler=Scheduler(sleep=no_sleep)), lm


async def test_revises_until_the_critic_accepts() -> None:
    eng, lm = engine(tutor, logprobs=judge_logprobs)
    r = await eng.solve(MATH, "refine", rounds=3)
    assert r.answer == "42" and [c.answer for c in r.candidates] == ["41", "42"]
    assert [v["accepted"] for v in r.info["revisions"]] == [False, True]
    assert "not 41" in r.info["revisions"][0]["feedback"]
    assert r.usage["verifier"].calls == 2 and r.usage["policy"].calls == 2
    assert lm.calls[2].messages is not None  # the revision saw the critique
    assert "not 41" in lm.calls[2].messages[-1].content


async def test_history_shows_every_earlier_attempt() -> None:
    def stubborn(req: GenRequest, i: int, rng: random.Random) -> str:
        msgs = req.messages or []
        if msgs[-1].content.startswith("Check the solution"):
            return "No."
        return f"try \\boxed{{{len(msgs)}}}"

    eng, lm = engine(stubborn, logprobs=lambda req, i, rng: {"No": -0.01, "Yes": -5.0})
    r = await eng.solve(MATH, "refine", rounds=2, history=True)
    writes = [c for c in lm.calls if c.role == "policy"]
    assert [len(c.messages or []) for c in writes] == [2, 4, 6]  # RISE: the exchange grows
    plain, lm2 = engine(stubborn, logprobs=lambda req, i, rng: {"No": -0.01, "Yes": -5.0})
    await plain.solve(MATH, "refine", rounds=2)
    assert [len(c.messages or []) for c in lm2.calls if c.role == "policy"] == [2, 4, 4]
    assert len(r.candidates) == 3


CODE = Problem(
    question="Write a function double(x) that doubles x.\nYour code should pass these tests:\n"
    "assert double(2) == 4\nassert double(5) == 10",
    kind="code",
    meta={"tests": ["assert double(2) == 4", "assert double(5) == 10"]},
)


async def test_code_is_repaired_from_its_failing_public_tests() -> None:
    def coder(req: GenRequest, i: int, rng: random.Random) -> str:
        last = (req.messages or [])[-1].content
        if last.startswith("Your code was run"):
            return "```python\ndef double(x):\n    return 2 * x\n```"
        return "```python\ndef double(x):\n    return x + 2\n```"

    eng, lm = engine(coder)
    r = await eng.solve(CODE, "refine", rounds=3)
    assert len(r.candidates) == 2 and "2 * x" in (r.answer or "")
    feedback = r.info["revisions"][0]["feedback"]
    assert "assert double(5) == 10  ->  AssertionError" in feedback
    assert "double(2)" not in feedback  # it passed: only failures are reported
    assert r.info["revisions"][1]["accepted"] is True
    assert all(c.role == "policy" for c in lm.calls)  # the tests judged, not the model


async def test_a_revision_that_repeats_its_attempt_stops_or_is_drawn_again() -> None:
    # greedy, a model told its code fails often writes the same code back (measured on the
    # 1.5B: every repair of 11 MBPP problems); each later round would repeat it again
    def stubborn(req: GenRequest, i: int, rng: random.Random) -> str:
        if req.temperature > 0:  # a sample away from the greedy path finds the fix
            return "```python\ndef double(x):\n    return 2 * x\n```"
        return "```python\ndef double(x):\n    return x + 2\n```"

    eng, lm = engine(stubborn)
    r = await eng.solve(CODE, "refine", rounds=3)  # on_repeat=stop
    assert len(r.candidates) == 2 and len(lm.calls) == 2
    assert "repeats the attempt, no more revisions" in (r.candidates[1].note or "")
    eng, lm = engine(stubborn)
    r = await eng.solve(CODE, "refine", rounds=3, on_repeat="keep")
    assert len(r.candidates) == 4 and "x + 2" in (r.answer or "")
    eng, lm = engine(stubborn)
    r = await eng.solve(CODE, "refine", rounds=3, on_repeat="redraw", redraw_temperature=0.5)
    assert [c.temperature for c in lm.calls] == [0.0, 0.0, 0.5]
    assert len(r.candidates) == 3 and "2 * x" in (r.answer or "")  # charged: all three
    assert r.usage["policy"].calls == 3 and r.info["revisions"][-1]["accepted"] is True


def test_humaneval_public_tests_come_from_the_docstring_never_the_hidden_check() -> None:
    prompt = (
        'def add(a, b):\n    """Add.\n    >>> add(1, 2)\n    3\n'
        '    >>> add(-1, 1)\n    0\n    """\n'
    )
    problem = Problem(
        question="Complete this",
        kind="code",
        meta={
            "prompt": prompt,
            "tests": ["def check(f):\n    assert f(40, 2) == 42"],
            "entry_point": "add",
        },
    )
    assert public_tests(problem) == ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
    hidden = Problem(question="no tests shown", kind="code", meta={"tests": ["assert f(1) == 2"]})
    assert public_tests(hidden) == []
