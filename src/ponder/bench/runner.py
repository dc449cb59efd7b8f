"""Run strategies over a problem set and tabulate accuracy against compute."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pydantic import BaseModel

from ponder.engine import Engine
from ponder.search import Strategy
from ponder.tasks.registry import grade
from ponder.types import Problem, Result
from ponder.verify import selection_quality


class Row(BaseModel):
    """One strategy over one problem set. `any_correct` counts problems where some candidate
    was right (the ceiling a better selector could reach)."""

    strategy: str
    problems: int
    correct: int
    any_correct: int
    errors: int
    stopped: int
    prompt_tokens: int
    completion_tokens: int
    calls: int
    seconds: float
    # When candidates were scored by a verifier: how well its scores separate right from wrong.
    verifier_auroc: float | None = None
    verifier_fpr: float | None = None

    @property
    def accuracy(self) -> float:
        return self.correct / self.problems if self.problems else 0.0


def label(strategy: Strategy) -> str:
    n = getattr(strategy, "n", None)
    return f"{strategy.name}@{n}" if n else strategy.name


async def run_strategy(
    engine: Engine,
    problems: list[Problem],
    strategy: Strategy,
    *,
    seed: int = 0,
    on_result: Callable[[Problem, Result, bool], None] | None = None,
) -> tuple[Row, list[Result]]:
    """All problems in flight at once (the scheduler keeps the backend's slots full); problem
    i is solved with seed `seed + i`, so a run is repeatable problem by problem."""
    started = time.monotonic()

    async def one(i: int, p: Problem) -> tuple[Result, bool, list[bool]]:
        r = await engine.solve(p, strategy, seed=seed + i)
        # each distinct answer graded once (a code answer costs a sandbox run)
        by_answer = {
            a: await grade(p, a, engine.sandbox)
            for a in dict.fromkeys([r.answer, *(c.answer for c in r.candidates)])
        }
        right, each = by_answer[r.answer], [by_answer[c.answer] for c in r.candidates]
        if on_result:
            on_result(p, r, right)
        return r, right, each

    graded = await asyncio.gather(*(one(i, p) for i, p in enumerate(problems)))
    results = [r for r, _, _ in graded]
    pools = [
        [(c.score, ok) for c, ok in zip(r.candidates, each, strict=True)] for r, _, each in graded
    ]
    quality = selection_quality(pools) if any(s is not None for p in pools for s, _ in p) else None
    seconds = time.monotonic() - started
    row = Row(
        strategy=label(strategy),
        problems=len(problems),
        correct=sum(right for _, right, _ in graded),
        any_correct=sum(right or any(each) for _, right, each in graded),
        errors=sum(r.error is not None for r in results),
        stopped=sum(r.stopped is not None for r in results),
        prompt_tokens=sum(r.total.prompt_tokens for r in results),
        completion_tokens=sum(r.total.completion_tokens for r in results),
        calls=sum(r.total.calls for r in results),
        seconds=seconds,
        verifier_auroc=quality.auroc if quality else None,
        verifier_fpr=quality.false_positive_rate if quality else None,
    )
    return row, results
