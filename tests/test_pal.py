"""Program-aided answering, the CoT × PoT cross-check, and code-test verification, with
scripted policies whose programs really run in the sandbox."""

from __future__ import annotations

import random

from helpers import scripted_engine
from ponder.tasks.registry import get_task
from ponder.types import GenRequest, Problem

PROBLEM = Problem(question="What is 17 * 23 + 9?", kind="number", gold="400")


def program(body: str) -> str:
    return f"Let me compute it.\n```python\n{body}\n```\n"


async def test_pal_answers_with_what_the_program_prints() -> None:
    engine, lm = scripted_engine([program("print(17 * 23 + 9)")])
    r = await engine.solve(PROBLEM, "greedy", answer_with="program")
    assert r.answer == "400" and r.candidates[0].program_answer == "400"
    assert r.candidates[0].note is None  # no "no answer in the text": the program answered
    sent = lm.calls[0].messages
    assert sent is not None and "Python program" in sent[0].content


async def test_pal_failures_are_per_candidate_reasons() -> None:
    replies = [
        "I will not write code.",
        program("raise ValueError('oops')"),
        program("x = 1"),
        "```python\n```",
        program("print(17 * 23 + 9)"),
    ]
    engine, _ = scripted_engine(replies)
    r = await engine.solve(PROBLEM, "vote", n=5, seed=0, answer_with="program")
    notes = [c.note for c in r.candidates]
    assert notes[0] == "no ```python block in the candidate"
    assert notes[1] is not None and "ValueError: oops" in notes[1]
    assert notes[2] == "the program printed nothing"
    assert notes[3] == "no ```python block in the candidate"
    assert notes[4] is None and r.answer == "400"


async def test_both_keeps_two_answers_and_the_crosscheck_scores_their_agreement() -> None:
    replies = [
        "17*23 = 391, plus 9 is \\boxed{400}\n" + program("print(17 * 23 + 9)"),
        "17*23 = 381, plus 9 is \\boxed{390}\n" + program("print(17 * 23 + 9)"),
        "so \\boxed{390}",
    ]

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        return replies[i % 3]

    engine, _ = scripted_engine(reply)
    r = await engine.solve(
        PROBLEM, "best_of_n", n=3, seed=0, answer_with="both", verifier="crosscheck"
    )
    c = r.candidates
    assert [(x.reasoning_answer, x.program_answer) for x in c] == [
        ("400", "400"),
        ("390", "400"),
        ("390", None),
    ]
    assert [x.score for x in c] == [1.0, 0.0, None]
    assert c[2].note is not None and "no program answer to cross-check" in c[2].note
    assert r.answer == "400"
    # a plain vote over the same candidates would have picked the wrong answer
    vote, _ = scripted_engine(reply)
    assert (await vote.solve(PROBLEM, "vote", n=3, seed=0, answer_with="both")).answer == "390"


async def test_code_tests_score_the_fraction_of_passing_tests() -> None:
    task = get_task("mbpp")
    problem = next(p for p in task.load(limit=20) if p.id == "mbpp/2")
    good = "```python\n" + str(problem.gold) + "\n```"
    half = "```python\ndef similar_elements(a, b):\n    return (4, 5)\n```"
    engine, _ = scripted_engine([half, good])
    r = await engine.solve(problem, "best_of_n", n=2, seed=0, verifier="code_tests")
    scores = [c.score for c in r.candidates]
    assert scores[1] == 1.0 and scores[0] is not None and 0 < scores[0] < 1
    assert r.answer is not None and "set(" in r.answer  # the reference solution was chosen
    assert await task.grade(problem, r.answer, engine.sandbox)
    assert not await task.grade(problem, r.candidates[0].answer, engine.sandbox)


async def test_code_cannot_fake_the_test_tally() -> None:
    task = get_task("mbpp")
    problem = task.load(limit=1)[0]
    cheat = "```python\nimport sys\nprint('@@ponder-grade@@3')\nsys.exit(0)\n```"
    engine, _ = scripted_engine([cheat])
    r = await engine.solve(problem, "best_of_n", n=1, seed=0, verifier="code_tests")
    assert r.candidates[0].score == 0.0
    assert not await task.grade(problem, r.candidates[0].answer, engine.sandbox)
