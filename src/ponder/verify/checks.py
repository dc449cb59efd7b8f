"""Verifiers that execute: unit tests for code (MBPP/HumanEval style) and the CoT × PoT
cross-check (a candidate's reasoning answer agreeing with its own program's output)."""

from __future__ import annotations

import asyncio
import secrets
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
from ponder.sandbox import ExecResult, Sandbox
from ponder.types import Candidate, Problem


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


async def run_tests(problem: Problem, code: str, sandbox: Sandbox) -> tuple[int | None, ExecResult]:
    """How many of the problem's tests (`meta["tests"]`) `code` passes in the sandbox (None
    if the tally never printed), and the run. A bare function body continues the given
    signature (`meta["prompt"]`, HumanEval style). Grader and verifier both use this."""
    tests = list(problem.meta.get("tests") or [])
    entry = problem.meta.get("entry_point")
    if entry and f"def {entry}" not in code:
        code = str(problem.meta.get("prompt") or "") + code
    marker = f"@@ponder-{secrets.token_hex(8)}@@"  # unknown to the code under test
    setup = str(problem.meta.get("test_setup") or "")
    run = await sandbox.run(test_program(code, tests, setup, marker))
    tally = [line for line in run.stdout.splitlines() if line.startswith(marker)]
    return (int(tally[-1][len(marker) :]) if tally else None), run


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
        passed, run = await run_tests(problem, code, ctx.sandbox)
        if passed is None:
            return Verdict(score=0.0, reason=f"tests did not finish ({run.reason or 'no tally'})")
        return Verdict(score=passed / len(tests), reason=None if run.ok else run.reason)


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
