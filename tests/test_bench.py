from __future__ import annotations

import random

from helpers import scripted_engine
from ponder.bench.runner import run_strategy
from ponder.search import make_strategy
from ponder.tasks import gsm8k
from ponder.types import GenRequest, Problem, Result


async def test_row_counts_accuracy_ceiling_and_every_token() -> None:
    problems = gsm8k.load(limit=6)
    golds = {p.question: p.gold for p in problems}

    def reply(req: GenRequest, index: int, rng: random.Random) -> str:
        # sample 0 is always wrong; sample 1 is right on even-length questions
        question = req.messages[-1].content if req.messages else ""
        right = index == 1 and len(question) % 2 == 0
        return f"steps \\boxed{{{golds[question] if right else '-1'}}}"

    engine, lm = scripted_engine(reply)
    seen: list[tuple[Problem, Result, bool]] = []
    strategy = make_strategy("vote", n=3)
    row, results = await run_strategy(
        engine, problems, strategy, seed=5, on_result=lambda p, r, ok: seen.append((p, r, ok))
    )
    even = sum(len(p.question) % 2 == 0 for p in problems)
    assert 0 < even < 6  # the data gives both kinds
    assert row.strategy == "vote@3" and row.problems == 6
    assert row.correct == 0  # "-1" wins every vote 2:1
    assert row.any_correct == even
    assert row.completion_tokens == sum(c.completion_tokens for r in results for c in r.candidates)
    assert row.calls == len(lm.calls) == 6
    assert [r.seed for r in results] == [5, 6, 7, 8, 9, 10]
    assert {p.question for p, _, _ in seen} == set(golds)
    assert not any(ok for _, _, ok in seen)


async def test_a_scored_strategy_reports_its_verifiers_quality() -> None:
    import math

    problems = gsm8k.load(limit=4)
    golds = {p.question: p.gold for p in problems}

    def reply(req: GenRequest, index: int, rng: random.Random) -> str:
        if req.role == "verifier":
            return "Yes"
        question = req.messages[1].content if req.messages else ""
        right = (req.seed or 0) % 2 == 0
        return f"so \\boxed{{{golds[question] if right else '-1'}}}"

    def judge(req: GenRequest, index: int, rng: random.Random) -> dict[str, float]:
        # a perfect judge: sure of right answers, doubtful of wrong ones
        p = 0.1 if "boxed{-1}" in (req.messages or [])[-2].content else 0.9
        return {"Yes": math.log(p), "No": math.log(1 - p)}

    engine, _ = scripted_engine(reply, logprobs=judge)
    row, _ = await run_strategy(engine, problems, make_strategy("best_of_n", n=4), seed=0)
    assert row.correct == 4 and row.verifier_auroc == 1.0 and row.verifier_fpr == 0.0
    plain, _ = await run_strategy(engine, problems, make_strategy("vote", n=4), seed=0)
    assert plain.verifier_auroc is None
