"""Program-aided answering, the CoT × PoT cross-check, and code-test verification, with
scripted policies whose programs really run in the sandbox."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import scripted_engine
from ponder.answers import extract
from ponder.bench.harness import Harness, plan
from ponder.bench.store import Store
from ponder.consensus import CrossCheck, Observation, replay
from ponder.errors import UsageError
from ponder.lm.scripted import ReplyFn, count_tokens
from ponder.runtime.strategy import make_strategy
from ponder.search.cross_vote import cross_tally
from ponder.search.vote import tally
from ponder.serve.protocol import chosen_text
from ponder.tasks.registry import get_task
from ponder.types import Candidate, GenRequest, Problem

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


# -- cross_vote: chains of thought and executed programs -------------------------------------
def cross_reply(chains: Sequence[str], programs: Sequence[str]) -> ReplyFn:
    """Chain-of-thought requests get `chains` in turn, program requests `programs` in turn."""
    seen = {"chain": 0, "program": 0}

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        assert req.messages is not None
        kind = "program" if "Python program" in req.messages[0].content else "chain"
        replies = programs if kind == "program" else chains
        out = replies[seen[kind] % len(replies)]
        seen[kind] += 1
        return out

    return reply


async def test_cross_vote_prefers_the_answer_a_program_and_a_chain_agree_on() -> None:
    chains = ["\\boxed{390}", "\\boxed{400}", "\\boxed{390}", "\\boxed{390}", "\\boxed{400}"]
    engine, lm = scripted_engine(cross_reply(chains, [program("print(17 * 23 + 9)")]))
    r = await engine.solve(PROBLEM, "cross_vote", n=5, seed=0, stop_early=False)
    assert r.answer == "400"  # 2 chains and the program; 390 has 3 chains but no program
    assert r.info["backed"] == ["400"] and r.info["votes"] == {"400": 3, "390": 3}
    assert r.info["programs"] == 1 and r.candidates[0].program_answer == "400"
    # the program was greedy, the chains sampled one by one; every token of both is charged
    assert sorted((c.temperature, c.n) for c in lm.calls) == [(0.0, 1)] + [(0.7, 1)] * 5
    assert r.usage["policy"].completion_tokens == sum(c.completion_tokens for c in r.candidates)
    vote, _ = scripted_engine(cross_reply(chains, []))
    assert (await vote.solve(PROBLEM, "vote", n=5, seed=0)).answer == "390"


async def test_cross_vote_stops_at_the_first_chain_that_reaches_the_program() -> None:
    chains = ["\\boxed{390}", "\\boxed{400}", "\\boxed{390}", "\\boxed{390}", "\\boxed{400}"]
    engine, lm = scripted_engine(cross_reply(chains, [program("print(17 * 23 + 9)")]))
    r = await engine.solve(PROBLEM, "cross_vote", n=5, seed=0, wave=1)
    # one chain at a time: the second reaches 400, and no chain is drawn after it
    assert r.answer == "400" and r.info["chains"] == 2 and len(lm.calls) == 3
    assert r.info["reason"] == "a chain of thought reached a program's answer"
    assert r.usage["policy"].completion_tokens == sum(c.completion_tokens for c in r.candidates)
    # the same chains replayed offline: the same chains drawn, the same tokens
    pool = [Observation(0 if "390" in c else 1, count_tokens(c)) for c in chains]
    out = replay(CrossCheck(programs=(1,)), pool, len(pool), 1)
    assert out.samples == 2 and out.answer == 1
    assert out.tokens == r.usage["policy"].completion_tokens - r.candidates[0].completion_tokens


async def test_cross_vote_without_agreement_is_the_majority_of_all() -> None:
    chains = ["\\boxed{390}", "\\boxed{390}", "\\boxed{401}"]
    programs = [program("raise ValueError('oops')"), program("print(12)"), program("print(12)")]
    engine, _ = scripted_engine(cross_reply(chains, programs))
    r = await engine.solve(PROBLEM, "cross_vote", n=3, seed=0, programs=3)
    # no answer is backed by both kinds, so every chain is drawn: 390 (2 chains) ties 12 (2
    # programs); programs come first in the pool, so the tie goes to 12
    assert r.info["backed"] == [] and r.answer == "12" and r.info["chains"] == 3
    assert r.candidates[0].answer is None and "ValueError" in (r.candidates[0].note or "")
    none, _ = scripted_engine(cross_reply(chains, programs))
    r = await none.solve(PROBLEM, "cross_vote", n=3, seed=0, programs=0)
    assert r.answer == "390" and r.info["programs"] == 0 and len(r.candidates) == 3


async def test_the_text_returned_for_an_answer_states_it() -> None:
    """An OpenAI client reads the message's text: a backed answer is carried by the chain that
    reached it in words, not by the program (whose last number is 9, not 400); an answer only
    a program gave is followed by what it printed."""
    chains = ["\\boxed{390}", "So the answer is \\boxed{400}"]
    engine, _ = scripted_engine(cross_reply(chains, [program("print(17 * 23 + 9)")]))
    r = await engine.solve(PROBLEM, "cross_vote", n=2, seed=0, wave=2)
    assert r.answer == "400" and r.candidates[0].program_answer == "400"
    carrier = r.carrier()
    assert carrier is not None and carrier.program_answer is None
    assert chosen_text(r)[0] == "So the answer is \\boxed{400}"
    engine, _ = scripted_engine([program("print(17 * 23 + 9)")])
    r = await engine.solve(PROBLEM, "greedy", answer_with="program")
    text = chosen_text(r)[0]
    assert text.startswith("Let me compute it.") and text.endswith("The program prints: 400")
    assert extract(text, "number") == "400"
    assert r.model_copy(update={"answer": None}).carrier() is None


CODE = Problem(question="Write add(a, b).", kind="code", id="add", meta={"tests": ["assert 1"]})


@pytest.mark.parametrize(
    ("strategy", "options", "says"),
    [
        ("greedy", {"answer_with": "program"}, "answer_with program: a program's printed output"),
        ("vote", {"n": 2, "answer_with": "both"}, "answer_with both: a program's printed output"),
        ("cross_vote", {"n": 2}, "cross_vote: a code problem (add) has no single answer"),
    ],
)
async def test_a_code_problem_is_refused_by_answers_a_program_cannot_give(
    strategy: str, options: dict[str, object], says: str
) -> None:
    engine, lm = scripted_engine(["```python\ndef add(a, b):\n    return a + b\n```"])
    with pytest.raises(UsageError, match=re.escape(says)):
        await engine.solve(CODE, strategy, **options)
    assert lm.calls == []  # refused before anything was generated
    # the same strategies answer it with reasoning or tir, and the same options answer math
    await engine.solve(CODE, "greedy", answer_with="tir")
    await engine.solve(PROBLEM, strategy, seed=0, **options)


async def test_a_bench_refuses_a_strategy_that_cannot_answer_the_sets_kind(
    tmp_path: Path,
) -> None:
    engine, lm = scripted_engine(["```python\ndef add(a, b):\n    return a + b\n```"])
    store = Store(tmp_path / "s.sqlite")
    (p,) = plan([make_strategy("cross_vote", n=2)])
    with pytest.raises(UsageError, match="cross_vote: a code problem"):
        await Harness(engine, store).execute("t", [PROBLEM, CODE], p, seed=0)
    assert lm.calls == []  # not even the math problem ran: the run is refused whole
    assert store.db.execute("SELECT COUNT(*) FROM units").fetchone() == (0,)
    store.close()


answers = st.lists(st.one_of(st.none(), st.integers(0, 4).map(str)), max_size=8)


@given(answers, answers)
def test_cross_tally_invariants(programs: list[str | None], chains: list[str | None]) -> None:
    as_cands = [Candidate(text="", answer=a) for a in [*programs, *chains]]
    answer, votes, backed = cross_tally(
        as_cands[: len(programs)], as_cands[len(programs) :], "number"
    )
    assert backed == [a for a in dict.fromkeys(programs) if a is not None and a in chains]
    if not votes:
        assert answer is None
        return
    assert sum(votes.values()) == sum(a is not None for a in [*programs, *chains])
    pool = backed or list(votes)
    assert answer in pool and votes[answer] == max(votes[a] for a in pool)
    if not programs:  # chains alone: a plain vote
        assert answer == tally(as_cands, [1.0] * len(as_cands), "number")[0]
