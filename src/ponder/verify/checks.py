"""Verifiers that execute: unit tests for code (MBPP/HumanEval style) and the CoT × PoT
cross-check (a candidate's reasoning answer agreeing with its own program's output)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ponder.answers import equivalent, extract
from ponder.types import Candidate, Problem
from ponder.verify.base import Verdict

if TYPE_CHECKING:
    from ponder.search.base import Context


def test_program(code: str, tests: Sequence[str], setup: str = "", marker: str = "") -> str:
    """The candidate's code followed by each test in its own try block; the tally is printed
    after a random marker the code cannot know, so it cannot fake the count."""
    lines = [setup, code, "", "__ponder_passed = 0"]
    for t in tests:
        body = "\n".join("        " + line for line in t.splitlines())
        lines += [
            "try:",
            "    if True:",
            body,
            "    __ponder_passed += 1",
            "except BaseException:",
            "    pass",
        ]
    lines.append(f"print({marker!r} + str(__ponder_passed))")
    return "\n".join(lines)


class CodeTests:
    """Outcome score = the fraction of the problem's tests (`meta["tests"]`) that pass."""

    name = "code_tests"

    async def score(
        self, problem: Problem, candidates: Sequence[Candidate], ctx: Context
    ) -> list[Verdict]:
        tests = list(problem.meta.get("tests") or [])
        setup = str(problem.meta.get("test_setup") or "")
        return list(await asyncio.gather(*(self._one(c, tests, setup, ctx) for c in candidates)))

    async def _one(self, cand: Candidate, tests: list[str], setup: str, ctx: Context) -> Verdict:
        if not tests:
            return Verdict(reason="the problem has no tests")
        code = extract(cand.text, "code")
        if code is None:
            return Verdict(reason="no code block in the candidate")
        marker = f"@@ponder-{secrets.token_hex(8)}@@"
        run = await ctx.sandbox.run(test_program(code, tests, setup, marker))
        tally = [line for line in run.stdout.splitlines() if line.startswith(marker)]
        if not tally:
            return Verdict(score=0.0, reason=f"tests did not finish ({run.reason or 'no tally'})")
        passed = int(tally[-1][len(marker) :])
        return Verdict(score=passed / len(tests), reason=None if run.ok else run.reason)


class CrossCheck:
    """1 when the reasoning's answer equals the program's printed answer, 0 when they differ;
    unscored (with the reason) when either is missing. Needs `answer_with="both"`."""

    name = "crosscheck"

    async def score(
        self, problem: Problem, candidates: Sequence[Candidate], ctx: Context
    ) -> list[Verdict]:
        kind = problem.kind or "math"
        out = []
        for c in candidates:
            if c.reasoning_answer is None or c.program_answer is None:
                missing = "reasoning answer" if c.reasoning_answer is None else "program answer"
                out.append(Verdict(reason=f"no {missing} to cross-check"))
            else:
                same = equivalent(c.reasoning_answer, c.program_answer, kind)
                out.append(Verdict(score=1.0 if same else 0.0))
        return out
