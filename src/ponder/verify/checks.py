"""Verifiers that execute: unit tests for code (MBPP/HumanEval style, graded where the code
cannot reach the verdict) and the CoT × PoT cross-check (a candidate's reasoning answer
agreeing with its own program's output)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from ponder.answers import equivalent, extract
from ponder.runtime.verifiers import (
    OUTCOME,
    SANDBOX,
    SERVED,
    BuiltVerifier,
    Verdict,
    VerifierEnv,
    VerifyContext,
    verifier,
)
from ponder.sandbox import Sandbox
from ponder.sandbox.grading import TestReport, run_unit_tests
from ponder.types import Candidate, Problem


async def run_tests(problem: Problem, code: str, sandbox: Sandbox) -> TestReport:
    """Each of the problem's tests (`meta["tests"]`) run against `code`, with a verdict `code`
    cannot reach (`ponder.sandbox.grading`: the code runs in its own sandboxed process and
    answers calls with plain data; the tests and their assertions run in another). A bare
    function body continues the given signature (`meta["prompt"]`, HumanEval style), and the
    prompt's helpers are the tests' own. Grader and verifier both use this."""
    tests = [str(t) for t in problem.meta.get("tests") or []]
    entry = problem.meta.get("entry_point")
    prompt = str(problem.meta.get("prompt") or "")
    if entry and f"def {entry}" not in code:
        code = prompt + code
    return await run_unit_tests(
        sandbox,
        code,
        tests,
        prelude=prompt,
        setup=str(problem.meta.get("test_setup") or ""),
        entry_points=[str(entry)] if entry else [],
    )


class CodeTests:
    """Outcome score = the fraction of the problem's tests (`meta["tests"]`) that pass."""

    name = "code_tests"

    async def score(
        self, problem: Problem, candidates: Sequence[Candidate], ctx: VerifyContext
    ) -> list[Verdict]:
        return list(await asyncio.gather(*(self._one(problem, c, ctx) for c in candidates)))

    async def _one(self, problem: Problem, cand: Candidate, ctx: VerifyContext) -> Verdict:
        tests = problem.meta.get("tests") or []
        if not tests:
            return Verdict(reason="the problem has no tests")
        code = extract(cand.text, "code")
        if code is None:
            return Verdict(reason="no code block in the candidate")
        report = await run_tests(problem, code, ctx.sandbox)
        return Verdict(score=report.passed / report.total, reason=report.reason)


class CrossCheck:
    """1 when the reasoning's answer equals the program's printed answer, 0 when they differ;
    unscored (with the reason) when either is missing. Needs `answer_with="both"`."""

    name = "crosscheck"

    async def score(
        self, problem: Problem, candidates: Sequence[Candidate], ctx: VerifyContext
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


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@verifier("code_tests", NoOptions, capabilities={OUTCOME, SANDBOX, SERVED})
def code_tests(options: NoOptions, env: VerifierEnv) -> BuiltVerifier:
    """The fraction of the problem's unit tests a code candidate passes, run in the sandbox."""
    return BuiltVerifier("code_tests", outcome=CodeTests())


@verifier("crosscheck", NoOptions, capabilities={OUTCOME, SERVED})
def crosscheck(options: NoOptions, env: VerifierEnv) -> BuiltVerifier:
    """1 when a candidate's reasoning answer equals its own program's output (answer_with=both)."""
    return BuiltVerifier("crosscheck", outcome=CrossCheck())
