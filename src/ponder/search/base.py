"""What every strategy gets (`Context`) and the shape every strategy has (`Strategy`)."""

from __future__ import annotations

import asyncio
import copy
import functools
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ponder.answers import extract, extract_answer, normalize_number
from ponder.budget import Ledger
from ponder.lm.protocol import LanguageModel
from ponder.sandbox import ExecResult, Sandbox
from ponder.scheduler import Lease, Scheduler
from ponder.signals import SignalSettings, signals_of
from ponder.types import Candidate, Generation, GenRequest, Message, Problem, Result

if TYPE_CHECKING:
    from ponder.verify import Verifiers, VerifierSpec

# Measured on the first 30 GSM8K test problems, 0.5B greedy: this prompt 7/30; without its
# second sentence 4/30 (the model writes Python and invents its output); with two worked
# examples 0/30.
DEFAULT_SYSTEM_PROMPT = (
    "Please reason step by step, and put your final answer within \\boxed{}. "
    "Do not write code; solve with arithmetic in words."
)
# Program-aided answering (PAL): the sandbox runs the program; what it prints is the answer.
PROGRAM_SYSTEM_PROMPT = (
    "Solve the problem by writing a Python program that computes the answer and prints only "
    "the final answer. Put the whole program in one ```python code block."
)
# CoT × PoT: two answers per candidate that a cross-check verifier compares.
BOTH_SYSTEM_PROMPT = (
    "Please reason step by step, and put your final answer within \\boxed{}. Then check it: "
    "write a Python program in one ```python code block that computes the answer and prints it."
)
# Coder models like to run code in their heads and then invent its printed output.
DEFAULT_STOP = ["```output"]

AnswerWith = Literal["reasoning", "program", "both"]


@functools.lru_cache(maxsize=4096)
def _conversation(system: str, question: str) -> tuple[Message, Message]:
    """A question's two messages, made once per (system prompt, question): a search asks for
    them on every request (a memo of a pure function: the messages are never changed)."""
    return Message(role="system", content=system), Message(role="user", content=question)


class Prompting(BaseModel):
    """How a problem becomes a request: shared by every strategy."""

    system: str = DEFAULT_SYSTEM_PROMPT
    max_tokens: int = Field(default=512, ge=1)
    stop: list[str] = Field(default_factory=lambda: list(DEFAULT_STOP))
    # Top-k log-probabilities asked for with every sample, where the backend gives them: the
    # candidates' confidence signals are read from them (ponder.signals). 0: none.
    logprobs: int = Field(default=20, ge=0, le=20)

    program_system: str = PROGRAM_SYSTEM_PROMPT
    both_system: str = BOTH_SYSTEM_PROMPT

    def messages(self, problem: Problem, answer_with: AnswerWith = "reasoning") -> list[Message]:
        return list(self.conversation(problem, answer_with))

    def conversation(
        self, problem: Problem, answer_with: AnswerWith = "reasoning"
    ) -> tuple[Message, ...]:
        """The problem's messages as one shared tuple (the same object for the same system
        prompt and question while the memo holds it: never change its messages)."""
        if answer_with == "reasoning":
            system = problem.system or self.system
        elif answer_with == "program":
            system = self.program_system
        elif answer_with == "both":
            system = self.both_system
        else:
            raise ValueError(f"unknown answer_with {answer_with!r}")
        return _conversation(system, problem.question)


@dataclass
class Context:
    """Everything a strategy may use. It never reaches a backend except through `generate`."""

    policy: LanguageModel
    scheduler: Scheduler
    ledger: Ledger
    seed: int
    prompting: Prompting = field(default_factory=Prompting)
    sandbox: Sandbox = field(default_factory=Sandbox)
    verifiers: Verifiers | None = None
    answer_with: AnswerWith = "reasoning"
    # Told of progress as it happens (samples finished, tallies, search depth): the server
    # streams it. Never required: strategies report and move on.
    observer: Callable[[dict[str, Any]], None] | None = None
    # Calls made through this Context share one backend slot (see `pinned`).
    lease: Lease | None = None
    rng: random.Random = field(init=False)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def report(self, event: str, **data: Any) -> None:
        if self.observer is not None:
            self.observer({"event": event, **data})

    def next_seed(self) -> int:
        """A sampling seed for the next request, drawn from the run's seeded RNG."""
        return self.rng.randrange(2**31)

    def request(self, problem: Problem, *, n: int, temperature: float) -> GenRequest:
        return GenRequest(
            messages=self.prompting.messages(problem, self.answer_with),
            n=n,
            temperature=temperature,
            max_tokens=self.prompting.max_tokens,
            stop=self.prompting.stop,
            seed=self.next_seed(),
            top_logprobs=self.prompting.logprobs if self.policy.capabilities.logprobs else 0,
        )

    def affordable(self, req: GenRequest) -> int:
        """How many of the request's n choices the budget allows (0: none)."""
        native = self.policy.capabilities.native_n(req)
        return self.ledger.affordable_n(req, self.policy.info, native_n=native)

    def generate(self, req: GenRequest) -> Awaitable[Generation]:
        """The request's call through the scheduler, to await (no frame of its own)."""
        return self.scheduler.generate(self.policy, req, self.ledger, self.lease)

    def pinned(self) -> AbstractContextManager[Context]:
        """A Context whose single-sequence policy calls (verifier calls to the policy
        included) run one after another on one backend slot, held until the block ends: a
        step or sample, then its judgement, which finds it in that slot's prefix cache."""
        if not self.policy.capabilities.pin_slots:  # no slots to hold: nothing changes
            return nullcontext(self)
        return self._leased()

    async def spare(self, req: GenRequest) -> AbstractContextManager[Context] | None:
        """Like `pinned`, but holding a slot that is spare now (placed for `req`'s prompt),
        or None if no slot is spare or the backend holds none."""
        if not self.policy.capabilities.pin_slots:
            return None
        lease = await self.scheduler.spare_lease(self.policy, req, self.ledger)
        return None if lease is None else self._leased(lease)

    @contextmanager
    def _leased(self, lease: Lease | None = None) -> Iterator[Context]:
        with lease or self.scheduler.lease(self.policy) as held_lease:
            held = copy.copy(self)  # shares the RNG, ledger and everything else
            held.lease = held_lease
            yield held

    async def candidates(self, problem: Problem, gen: Generation) -> list[Candidate]:
        """The choices as candidates with their answers; programs are run in the sandbox
        (all at once) when the strategy answers with programs."""
        cands = candidates_of(gen, problem.kind, self.prompting.logprobs)
        if self.answer_with == "reasoning":
            return cands
        runs = await asyncio.gather(*(self._run_program(c) for c in cands))
        for cand, run in zip(cands, runs, strict=True):
            cand.reasoning_answer = cand.answer
            failure = None
            if isinstance(run, str):
                failure = run
            else:
                cand.program_answer = program_answer(run, problem.kind)
                if cand.program_answer is None:
                    failure = (
                        "the program printed nothing"
                        if run.ok
                        else f"the program failed ({run.reason})"
                    )
            # "program": only the program's fate matters; "both": say what each side lacks
            notes = [failure] if self.answer_with == "program" else [cand.note, failure]
            cand.note = "; ".join(n for n in notes if n) or None
            if self.answer_with == "program" or cand.answer is None:
                cand.answer = cand.program_answer
        return cands

    async def _run_program(self, cand: Candidate) -> ExecResult | str:
        code = extract(cand.text, "code")
        if code is None:
            return "no ```python block in the candidate"
        return await self.sandbox.run(code)

    def reuses_candidate_prefix(self, spec: VerifierSpec) -> bool:
        """Whether the verifier continues each candidate's own conversation (a self-judge),
        so scoring right after generation finds it in the backend's prefix cache."""
        if self.verifiers is None:
            return False
        return bool(getattr(self.verifiers.get(spec), "reuses_candidate_prefix", False))

    async def score(
        self, problem: Problem, candidates: list[Candidate], spec: VerifierSpec
    ) -> None:
        """Score candidates in place with the verifier `spec`; unscored ones get the reason."""
        if self.verifiers is None:
            raise RuntimeError("this Context has no verifiers")
        verdicts = await self.verifiers.score(problem, candidates, spec, self)
        for cand, v in zip(candidates, verdicts, strict=True):
            cand.score = v.score
            if v.score is None:
                cand.note = v.reason if cand.note is None else f"{cand.note}; {v.reason}"

    def result(
        self,
        problem: Problem,
        strategy: Strategy,
        answer: str | None,
        candidates: list[Candidate],
        **info: Any,
    ) -> Result:
        stopped = info.pop("stopped", None)
        return Result(
            question=problem.question,
            answer=answer,
            strategy=strategy.name,
            config=strategy.model_dump(mode="json"),
            candidates=candidates,
            usage=self.ledger.by_role(),
            lines=list(self.ledger.lines),
            seed=self.seed,
            model=self.policy.info.name,
            seconds=time.monotonic() - self.started,
            stopped=stopped,
            info=info,
        )


def answer_of(text: str, kind: str | None) -> str | None:
    return extract_answer(text) if kind is None else extract(text, kind)


def candidates_of(gen: Generation, kind: str | None = None, top_k: int = 0) -> list[Candidate]:
    """The choices as candidates with their answers and, when `top_k` and the choice carries
    log-probabilities, their confidence signals."""
    out = []
    settings = SignalSettings(k=top_k) if top_k else None
    for c in gen.choices:
        answer = answer_of(c.text, kind)
        signals, stats = None, None
        if settings is not None:
            signals, stats = signals_of(c.logprobs, c.completion_tokens, settings)
        out.append(
            Candidate(
                text=c.text,
                answer=answer,
                completion_tokens=c.completion_tokens,
                finish_reason=c.finish_reason,
                note=None if answer is not None else "no answer found in the text",
                signals=signals,
                stats=stats,
            )
        )
    return out


def program_answer(run: ExecResult, kind: str | None) -> str | None:
    """A program's answer: its last printed line, read as an answer of `kind`."""
    lines = [line.strip() for line in run.stdout.splitlines() if line.strip()]
    if not run.ok or not lines:
        return None
    last = lines[-1]
    if kind == "number":
        return answer_of(last, "number")
    # a printed value is the answer itself: "400.0" → "400", "x = 3" stays "x = 3"
    return normalize_number(last) or (answer_of(last, kind) if kind else None) or last


class Strategy(BaseModel):
    """A strategy is its config (plain data) plus `run`, which reads like the paper."""

    model_config = ConfigDict(extra="forbid")
    name: ClassVar[str]
    # PAL: "program" answers with the printed output of the model's program; "both" keeps
    # the reasoning's answer and the program's for a CoT × PoT cross-check.
    answer_with: AnswerWith = "reasoning"

    async def run(self, problem: Problem, ctx: Context) -> Result:
        raise NotImplementedError
