"""Judges that ask a language model "is this correct?" and read P(Yes) from its logprobs.

`SelfJudge` asks the policy itself, continuing the very conversation that produced the
candidate (same system prompt, question and answer), so on llama.cpp the slot that generated
the candidate already holds that prefix and only the question is prefilled. `LLMJudge` asks
another model (or backend) with a standalone grading prompt.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from ponder.errors import BackendError, BudgetExceeded, UsageError
from ponder.lm.config import BackendConfig, ServerUrl
from ponder.lm.protocol import LanguageModel
from ponder.runtime.verifiers import (
    LOGPROBS,
    OUTCOME,
    PROCESS,
    ROLE,
    SERVED,
    BuiltVerifier,
    Verdict,
    VerifierEnv,
    VerifyContext,
    verifier,
)
from ponder.types import Candidate, Completion, GenRequest, Message, Problem
from ponder.verify.cache import StepCache

OUTCOME_QUESTION = "Is the answer above correct? Answer Yes or No."
STEP_QUESTION = "Is the last step above correct? Answer Yes or No."
STEP_CUE = "\nCorrect (Yes/No)?"
JUDGE_SYSTEM = "You are a careful grader. Check the solution and reply with Yes or No only."
_YES = {"yes", "y", "true", "correct"}
_NO = {"no", "n", "false", "incorrect"}
HEADS_KEPT = 4096  # rendered conversations a judge keeps (one per problem in flight)


@functools.lru_cache(maxsize=4096)
def _side(token: str) -> bool | None:
    """Whether a token says Yes (True), No (False) or neither (None); kept per token, since a
    judge's top tokens are mostly the same few."""
    word = token.strip().lower()
    return True if word in _YES else False if word in _NO else None


@functools.lru_cache(maxsize=4096)
def _grading_head(system: str, question: str) -> tuple[Message, Message]:
    """The standalone grading conversation a judge's partial solutions continue (one shared
    tuple per system prompt and question: a memo of a pure function)."""
    return (
        Message(role="system", content=system),
        Message(role="user", content=f"Problem:\n{question}\n\nSolution:"),
    )


def p_yes(choice: Completion) -> Verdict:
    """P(Yes) / (P(Yes) + P(No)) over the judge's first token; from its text if the backend
    gave no logprobs."""
    first = choice.logprobs[0] if choice.logprobs else None
    if first is not None:
        yes = no = 0.0
        top = first.top
        if first.token not in top:
            top = {first.token: first.logprob, **top}
        for token, lp in top.items():
            side = _side(token)
            if side is True:
                yes += math.exp(lp)
            elif side is False:
                no += math.exp(lp)
        if yes + no > 0:
            return Verdict(score=yes / (yes + no))
        return Verdict(reason=f"the judge answered {first.token!r}, neither Yes nor No")
    word = choice.text.strip().split()[0].strip(".,!:").lower() if choice.text.strip() else ""
    if word in _YES:
        return Verdict(score=1.0, reason="no logprobs: scored from the judge's text")
    if word in _NO:
        return Verdict(score=0.0, reason="no logprobs: scored from the judge's text")
    return Verdict(reason=f"the judge answered {choice.text[:40]!r}, neither Yes nor No")


async def ask(
    ctx: VerifyContext,
    model: LanguageModel,
    messages: list[Message] | None = None,
    prompt: str | None = None,
) -> Verdict:
    """One Yes/No question to `model` (chat messages or a raw prompt), charged as a verifier
    call; failures become reasons."""
    req = GenRequest(
        messages=messages,
        prompt=prompt,
        max_tokens=1 if model.capabilities.logprobs else 3,
        temperature=0.0,
        top_logprobs=20 if model.capabilities.logprobs else 0,
        seed=0,
        role=ROLE,
    )
    try:
        gen = await ctx.scheduler.generate(model, req, ctx.ledger, ctx.lease)
    except BudgetExceeded as e:
        return Verdict(reason=f"not scored: {e}")
    except BackendError as e:
        ctx.ledger.verifier_failures.append(f"judge call failed: {e}")
        return Verdict(reason=f"judge call failed: {e}")
    if not gen.choices:
        return Verdict(reason="the judge returned no choice")
    return p_yes(gen.choices[0])


class SelfJudge:
    """The policy judges its own candidate (outcome) or newest step (process)."""

    name = "self_judge"

    def __init__(
        self,
        question: str = OUTCOME_QUESTION,
        step_question: str = STEP_QUESTION,
        step_cue: str = STEP_CUE,
        step_separator: str = "\n\n",
    ) -> None:
        self.question = question
        self.step_question = step_question
        self.step_cue = step_cue
        self.step_separator = step_separator
        self._steps = StepCache()
        # rendered heads by (model, conversation): see `rendered_head`
        self._heads: dict[tuple[int, int], tuple[LanguageModel, tuple[Message, ...], str]] = {}

    def model(self, ctx: VerifyContext) -> LanguageModel:
        return ctx.policy

    def conversation(
        self, problem: Problem, answer: str, ctx: VerifyContext, q: str
    ) -> list[Message]:
        # The generating conversation verbatim, so the backend's prefix cache hits.
        return [
            *ctx.prompting.messages(problem, ctx.answer_with),
            Message(role="assistant", content=answer),
            Message(role="user", content=q),
        ]

    async def score(
        self, problem: Problem, candidates: Sequence[Candidate], ctx: VerifyContext
    ) -> list[Verdict]:
        async def one(c: Candidate) -> Verdict:
            if not c.text.strip():
                return Verdict(reason="empty candidate")
            msgs = self.conversation(problem, c.text, ctx, self.question)
            return await ask(ctx, self.model(ctx), msgs)

        return list(await asyncio.gather(*(one(c) for c in candidates)))

    async def score_steps(
        self, problem: Problem, steps: Sequence[str], ctx: VerifyContext
    ) -> list[Verdict]:
        """Step k is judged given steps 1..k. With a backend that renders its chat template
        (llama.cpp), the rendered conversation is continued with the solution up to step k and
        a cue asking whether that step is correct, so every prompt is the path's own prefix
        plus the cue and a slot holding the path prefills only the cue (measured in
        benchmarks/RESULTS.md); other backends get the partial solution as the assistant's
        turn and a question. Longest prefix first: the slot holding the whole path (it just
        wrote it) then answers each shorter prefix from its cache too."""
        verdicts = {
            k: await self.score_last_step(problem, steps[:k], ctx) for k in range(len(steps), 0, -1)
        }
        return [verdicts[k] for k in range(1, len(steps) + 1)]

    async def score_last_step(
        self, problem: Problem, steps: Sequence[str], ctx: VerifyContext
    ) -> Verdict:
        """Whether the last of `steps` is right, given those before it: asked once, so a
        step search pays for each new step alone (its ancestors were judged as they were
        written, and must not be paid for again once the cache has let them go)."""
        verdict = self._steps.get(problem.question, steps)
        if verdict is None:
            model = self.model(ctx)
            partial = self.step_separator.join([s.strip() for s in steps])
            head = await self.rendered_head(problem, ctx)
            if head is not None:
                verdict = await ask(ctx, model, prompt=head + partial + self.step_cue)
            else:
                msgs = self.conversation(problem, partial, ctx, self.step_question)
                verdict = await ask(ctx, model, msgs)
            self._steps.put(problem.question, steps, verdict)
        return verdict

    async def rendered_head(self, problem: Problem, ctx: VerifyContext) -> str | None:
        """The judge's conversation (`head`) as its model renders it, for raw prompts that
        continue it; None when the model renders no chat template. Rendered once per model
        and conversation (every judged step asks for it)."""
        model = self.model(ctx)
        caps = await ctx.scheduler.prepared(model, ctx.ledger)  # (a server: probed once)
        if not (caps.render and caps.raw_prefix):
            return None
        head = self.head(problem, ctx)
        # by identity: `head` gives the same tuple for the same conversation, and the memo
        # holds both objects, so their ids stay theirs
        key = (id(model), id(head))
        kept = self._heads.get(key)
        if kept is None:
            kept = self._heads[key] = (model, head, await model.render(list(head)))
            if len(self._heads) > HEADS_KEPT:
                del self._heads[next(iter(self._heads))]  # the oldest
        return kept[2]

    def head(self, problem: Problem, ctx: VerifyContext) -> tuple[Message, ...]:
        """The conversation a partial solution continues: the policy's own, so the backend
        slot that generated the solution already holds it."""
        return ctx.prompting.conversation(problem, ctx.answer_with)


class LLMJudge(SelfJudge):
    """Another model grades the candidate from a standalone prompt."""

    name = "llm_judge"

    def __init__(self, judge: LanguageModel, system: str = JUDGE_SYSTEM) -> None:
        super().__init__()
        self.judge = judge
        self.system = system

    def model(self, ctx: VerifyContext) -> LanguageModel:
        return self.judge

    def head(self, problem: Problem, ctx: VerifyContext) -> tuple[Message, ...]:
        return _grading_head(self.system, problem.question)

    def conversation(
        self, problem: Problem, answer: str, ctx: VerifyContext, q: str
    ) -> list[Message]:
        what = "solution so far" if q == self.step_question else "solution"
        return [
            Message(role="system", content=self.system),
            Message(
                role="user",
                content=f"Problem:\n{problem.question}\n\nProposed {what}:\n{answer}\n\n{q}",
            ),
        ]


class SelfJudgeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(default=OUTCOME_QUESTION, description="asked after a whole candidate")
    step_question: str = Field(default=STEP_QUESTION, description="asked after a partial one")
    step_cue: str = Field(default=STEP_CUE, description="appended to a raw partial solution")
    step_separator: str = Field(default="\n\n", description="what joins a path's steps")


class LLMJudgeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, description="the judge: a registered model or .gguf")
    base_url: ServerUrl | None = Field(default=None, description="or a server's URL for the judge")
    api_key: str | None = Field(default=None, description="the key sent to base_url")
    system: str = Field(default=JUDGE_SYSTEM, description="the judge's system prompt")


@verifier("self_judge", SelfJudgeOptions, capabilities={OUTCOME, PROCESS, LOGPROBS, SERVED})
def self_judge(options: SelfJudgeOptions, env: VerifierEnv) -> BuiltVerifier:
    """The policy's own P(Yes) to "is this (step) correct?", read from its logprobs."""
    judge = SelfJudge(**options.model_dump())
    return BuiltVerifier(
        "self_judge", outcome=judge, process=judge, last_step=judge, reuses_candidate_prefix=True
    )


@verifier("llm_judge", LLMJudgeOptions, capabilities={OUTCOME, PROCESS, LOGPROBS})
def llm_judge(options: LLMJudgeOptions, env: VerifierEnv) -> BuiltVerifier:
    """Another model's P(Yes) to "is this (step) correct?", from a standalone grading prompt."""
    if env.open_model is None:
        raise UsageError("llm_judge needs an engine that can open models")
    model = env.open_model(
        BackendConfig(model=options.model, base_url=options.base_url, api_key=options.api_key)
    )
    judge = LLMJudge(model, system=options.system)
    return BuiltVerifier(
        "llm_judge", outcome=judge, process=judge, last_step=judge, close=model.aclose
    )
