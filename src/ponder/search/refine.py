"""Refinement: generate, critique, revise, until the critic accepts or R rounds are spent
(Self-Refine, Madaan et al., 2023). With `history`, each revision sees every earlier attempt and
its critique as one conversation (RISE, Qu et al., 2024: multi-turn introspection). For code,
the critique is what the problem's *public* tests say when run on the attempt (LeTI, Wang et
al., 2024: learning from execution feedback) — never the hidden tests or their values.

    attempt ← generate(question)
    for r in 1..R:
        feedback, accepted ← critique(attempt)      (the model's own P(Yes) and its reasons;
                                                     for code: the failing public tests)
        if accepted: stop
        attempt ← revise(question, attempt, feedback)   (RISE: after every earlier attempt)
        if attempt repeats the last word for word:      (greedy, it would again and again)
            stop, or redraw it once at a temperature (`on_repeat`)
    answer ← the last attempt's
"""

from __future__ import annotations

import ast
import re
from typing import ClassVar, Literal

from pydantic import Field

from ponder.answers import extract
from ponder.errors import BackendError, BudgetExceeded
from ponder.runtime.context import Context
from ponder.runtime.strategy import MULTIPLIES, Strategy, strategy
from ponder.sandbox import Sandbox
from ponder.types import Candidate, GenRequest, Message, Problem, Result
from ponder.verify.judge import p_yes

CRITIQUE = (
    "Check the solution above step by step. Is its final answer correct? Reply Yes or No "
    "first; if No, say briefly what is wrong."
)
REVISE = (
    "Here is feedback on your solution:\n{feedback}\n\nWrite a corrected solution, ending "
    "with the final answer within \\boxed{{}}."
)
REVISE_CODE = (
    "Your code was run on the public tests:\n{feedback}\n\nFix the code. Put the whole "
    "corrected code in one ```python block."
)


@strategy
class Refine(Strategy):
    """Generate, critique, revise until the critic accepts (Self-Refine; RISE; LeTI for code)."""

    name: ClassVar[str] = "refine"
    width: ClassVar[str | None] = "rounds"
    rounds: int = Field(
        default=3, ge=0, description="revisions at most", json_schema_extra=MULTIPLIES
    )
    temperature: float = Field(default=0.0, ge=0.0, description="sampling temperature")
    history: bool = Field(
        default=False, description="RISE: each revision sees every earlier attempt and critique"
    )
    accept: float = Field(
        default=0.5, gt=0.0, lt=1.0, description="the critic's P(Yes) that accepts an attempt"
    )
    critique_tokens: int = Field(default=160, ge=1, description="tokens a critique may take")
    on_repeat: Literal["keep", "stop", "redraw"] = Field(
        default="stop",
        description="a revision that repeats the attempt word for word: keep revising (keep), "
        "stop revising (stop; at temperature 0 every later round would repeat it too), or "
        "draw it again at redraw_temperature (redraw)",
    )
    redraw_temperature: float = Field(
        default=0.7, gt=0.0, description="the temperature of a repeated revision's redraw"
    )

    async def run(self, problem: Problem, ctx: Context) -> Result:
        conversation = list(ctx.prompting.messages(problem, ctx.answer_with))
        attempts: list[Candidate] = []
        revisions: list[dict[str, object]] = []
        stopped = None
        try:
            attempt = await self.write(ctx, problem, conversation)
            attempts.append(attempt)
            for r in range(self.rounds):
                feedback, accepted = await self.critique(ctx, problem, conversation, attempt)
                revisions.append(
                    {
                        "round": r,
                        "answer": attempt.answer,
                        "accepted": accepted,
                        "feedback": feedback,
                    }
                )
                ctx.report("revision", round=r, answer=attempt.answer, accepted=accepted)
                if accepted:
                    break
                if self.history:  # RISE: the whole exchange so far
                    conversation += [Message(role="assistant", content=attempt.text)]
                else:  # Self-Refine: the last attempt only
                    conversation = [
                        *conversation[:2],
                        Message(role="assistant", content=attempt.text),
                    ]
                template = REVISE_CODE if problem.kind == "code" else REVISE
                conversation.append(
                    Message(role="user", content=template.format(feedback=feedback))
                )
                attempt = await self.write(ctx, problem, conversation)
                attempt.note = f"revision {r + 1}" if attempt.note is None else attempt.note
                repeated = attempt.text == attempts[-1].text
                attempts.append(attempt)
                if repeated and self.on_repeat == "stop":
                    attempt.note += ": repeats the attempt, no more revisions"
                    break
                if repeated and self.on_repeat == "redraw":
                    attempt.note += ": repeats the attempt, drawn again"
                    attempt = await self.write(
                        ctx, problem, conversation, temperature=self.redraw_temperature
                    )
                    attempt.note = f"revision {r + 1}, redrawn" + (
                        f"; {attempt.note}" if attempt.note else ""
                    )
                    attempts.append(attempt)
        except BudgetExceeded:
            stopped = "budget"
        answer = attempts[-1].answer if attempts else None
        return ctx.result(problem, self, answer, attempts, stopped=stopped, revisions=revisions)

    async def write(
        self,
        ctx: Context,
        problem: Problem,
        conversation: list[Message],
        temperature: float | None = None,
    ) -> Candidate:
        req = ctx.request(
            problem, n=1, temperature=self.temperature if temperature is None else temperature
        )
        req.messages = list(conversation)
        if ctx.affordable(req) < 1:
            raise BudgetExceeded("budget: no room for another attempt")
        (cand,) = await ctx.candidates(problem, await ctx.generate(req))
        return cand

    async def critique(
        self, ctx: Context, problem: Problem, conversation: list[Message], attempt: Candidate
    ) -> tuple[str, bool]:
        """(feedback, accepted): the public tests' verdict for code, else the model's own."""
        if problem.kind == "code":
            return await public_feedback(problem, attempt.text, ctx.sandbox)
        req = GenRequest(
            messages=[
                *conversation[:2],
                Message(role="assistant", content=attempt.text),
                Message(role="user", content=CRITIQUE),
            ],
            max_tokens=self.critique_tokens,
            temperature=0.0,
            top_logprobs=20 if ctx.policy.capabilities.logprobs else 0,
            seed=ctx.next_seed(),
            role="verifier",
        )
        if ctx.affordable(req) < 1:
            raise BudgetExceeded("budget: no room for a critique")
        try:
            (choice,) = (await ctx.generate(req)).choices
        except BackendError as e:
            ctx.ledger.verifier_failures.append(f"critique call failed: {e}")
            return f"(no critique: {e})", False
        verdict = p_yes(choice)
        accepted = verdict.score is not None and verdict.score >= self.accept
        return choice.text.strip() or "(an empty critique)", accepted


_DOCTEST = re.compile(r"^\s*>>> (.+)$\n^\s*(.+)$", re.MULTILINE)


def public_tests(problem: Problem) -> list[str]:
    """The tests a code problem shows its solver: MBPP's listed asserts (they are in the
    question), HumanEval's docstring examples as asserts. Never its hidden tests."""
    if "public_tests" in problem.meta:
        return list(problem.meta["public_tests"])
    prompt = str(problem.meta.get("prompt") or "")
    if prompt:  # HumanEval: the examples in the docstring
        out = []
        for call, expected in _DOCTEST.findall(prompt):
            try:
                ast.parse(call, mode="eval")
                ast.literal_eval(expected.strip())
            except (SyntaxError, ValueError):
                continue
            out.append(f"assert {call.strip()} == {expected.strip()}")
        return out
    return [t for t in problem.meta.get("tests") or [] if t.strip() in problem.question]


async def public_feedback(problem: Problem, text: str, sandbox: Sandbox) -> tuple[str, bool]:
    """Run the attempt's code on the public tests, each in its own try: (what failed, with the
    error; all passed?)."""
    code = extract(text, "code")
    if code is None:
        return "There is no ```python block in your answer.", False
    tests = public_tests(problem)
    if not tests:
        return "(no public tests to run)", True
    entry = problem.meta.get("entry_point")
    if entry and f"def {entry}" not in code:
        code = str(problem.meta.get("prompt") or "") + code
    checks = []
    for i, test in enumerate(tests):
        checks.append(
            f"try:\n    exec({test!r}, globals())\n    print('PASS {i}')\n"
            f"except BaseException as e:\n    print('FAIL {i}', type(e).__name__, str(e)[:200])"
        )
    run = await sandbox.run(code + "\n\n" + "\n".join(checks))
    failed: list[str] = []
    seen: set[str] = set()
    for line in run.stdout.splitlines():
        if line.startswith("PASS "):
            seen.add(line.split()[1])
        elif line.startswith("FAIL "):
            _, index, *rest = line.split(" ", 2)
            seen.add(index)
            failed.append(f"{tests[int(index)]}  ->  {' '.join(rest) or 'failed'}")
    if not run.ok and len(seen) < len(tests):
        reason = run.reason or (run.stderr.strip().splitlines() or ["the program failed"])[-1]
        return f"The code did not run: {reason}", False
    if failed:
        return "\n".join(failed), False
    return "All public tests pass.", True
