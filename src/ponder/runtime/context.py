"""What every strategy gets: `Context`, its one door to the policy model, the scheduler, the
ledger, the sandbox and the verifiers. It never reaches a backend except through the
scheduler."""

from __future__ import annotations

import asyncio
import copy
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

from ponder.answers import extract, normalize_number, read_answer
from ponder.lm.protocol import Capabilities, LanguageModel, Watch
from ponder.runtime.budget import Ledger
from ponder.runtime.prompting import Prompting
from ponder.runtime.scheduler import Lease, Scheduler
from ponder.runtime.thinking import ThinkLoop
from ponder.runtime.tools import ToolLoop
from ponder.runtime.verifiers import Verifiers, VerifierSpec
from ponder.sandbox import ExecResult, Sandbox
from ponder.signals import SignalSettings, signals_of
from ponder.types import AnswerWith, Candidate, Generation, GenRequest, Problem, Result


class ChoiceLoop(Protocol):
    """Writes one choice in rounds (a tool loop, a thinking budget)."""

    async def generate(
        self, req: GenRequest, lease: Lease | None, watch: Callable[[], Watch] | None = None
    ) -> Generation: ...


class Configured(Protocol):
    """What a Result records of the strategy that made it."""

    name: ClassVar[str]

    def config(self) -> dict[str, Any]: ...


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

    async def prepared(self) -> Capabilities:
        """What the policy can do, asked of it once (a server is probed on first need)."""
        return await self.scheduler.prepared(self.policy, self.ledger)

    def idle_slots(self) -> int:
        """The policy backend's slots idle now, with no request waiting (Scheduler.idle_slots)."""
        return self.scheduler.idle_slots(self.policy)

    def affordable(self, req: GenRequest) -> int:
        """How many of the request's n choices the budget allows (0: none)."""
        native = self.policy.capabilities.native_n(req)
        return self.ledger.affordable_n(req, self.policy.info, native_n=native)

    def generate(
        self, req: GenRequest, watch: Callable[[], Watch] | None = None
    ) -> Awaitable[Generation]:
        """The request's call through the scheduler, to await (no frame of its own); `watch`
        (one choice) sees each token and may stop the generation (Scheduler.generate). With
        tool-integrated reasoning (`answer_with="tir"`) a policy sample calls Python as it
        goes (ponder.runtime.tools)."""
        if req.role == "policy" and req.messages is not None:
            if self.answer_with == "tir":
                return self._with_tools(req, watch)
            if self.prompting.think_budget is not None and self.answer_with == "reasoning":
                return self._thinking(req, watch)
        return self.scheduler.generate(self.policy, req, self.ledger, self.lease, watch)

    async def _thinking(self, req: GenRequest, watch: Callable[[], Watch] | None) -> Generation:
        """Each choice thinks within the budget and then answers (ponder.runtime.thinking)."""
        return await self._each_choice(
            req, ThinkLoop(self.policy, self.scheduler, self.ledger, self.prompting), watch
        )

    async def _with_tools(self, req: GenRequest, watch: Callable[[], Watch] | None) -> Generation:
        """Each choice written by its own tool loop (ponder.runtime.tools)."""
        tools = self.prompting.tools
        loop = ToolLoop(self.policy, self.scheduler, self.ledger, self.sandbox, tools, self.report)
        return await self._each_choice(req, loop, watch)

    async def _each_choice(
        self, req: GenRequest, loop: ChoiceLoop, watch: Callable[[], Watch] | None
    ) -> Generation:
        """`req`'s choices, each written round by round by `loop` on one held slot (its later
        rounds find what it wrote in that slot's cache)."""
        if watch is not None and req.n != 1:
            raise ValueError(f"a watched request has one choice (n={req.n})")

        async def one(i: int) -> Generation:
            single = replace(req, n=1, seed=None if req.seed is None else req.seed + 1000 * i)
            with self.pinned() as held:
                return await loop.generate(single, held.lease, watch)

        # every choice finishes (or fails) before one's failure is raised: a sibling left
        # running would hold its slot and its sandbox, and its cost would reach no ledger
        done = await asyncio.gather(*(one(i) for i in range(req.n)), return_exceptions=True)
        failed = next((d for d in done if isinstance(d, BaseException)), None)
        if failed is not None:
            raise failed
        return joined([d for d in done if isinstance(d, Generation)])

    def answering(self, answer_with: AnswerWith) -> Context:
        """This context with its samples prompted and answered another way (`cross_vote`'s
        programs beside its chains); the ledger, RNG, slot and the rest are shared."""
        other = copy.copy(self)
        other.answer_with = answer_with
        return other

    def pinned(self) -> AbstractContextManager[Context]:
        """A Context whose single-sequence policy calls (verifier calls to the policy
        included) run one after another on one backend slot, held until the block ends: a
        step or sample, then its judgement, which finds it in that slot's prefix cache."""
        if not self.policy.capabilities.pin_slots:  # no slots to hold: nothing changes
            return nullcontext(self)
        return self._leased()

    async def turns(self, req: GenRequest, n: int) -> list[AbstractContextManager[Context]]:
        """Held contexts that `n` sibling requests like `req` (one parent's children) take
        turns on, each one after another; the scheduler decides how many (see
        `Scheduler.sibling_leases`). A backend that holds no slots gets one turn per sibling."""
        if not self.policy.capabilities.pin_slots:
            return [nullcontext(self) for _ in range(n)]
        leases = await self.scheduler.sibling_leases(self.policy, req, self.ledger, n)
        return [self._leased(lease) for lease in leases]

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
        if self.answer_with not in ("program", "both"):
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
        return self.verifiers is not None and self.verifiers.get(spec).reuses_candidate_prefix

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
        strategy: Configured,
        answer: str | None,
        candidates: list[Candidate],
        **info: Any,
    ) -> Result:
        stopped = info.pop("stopped", None) or ("budget" if self.ledger.cut else None)
        failures = self.ledger.verifier_failures
        return Result(
            question=problem.question,
            answer=answer,
            strategy=strategy.name,
            config=strategy.config(),
            candidates=candidates,
            usage=self.ledger.by_role(),
            lines=list(self.ledger.lines),
            seed=self.seed,
            model=self.policy.info.name,
            seconds=time.monotonic() - self.started,
            stopped=stopped,
            # the answer stands, but it was chosen without some of the verdicts it needed: an
            # error (a bench does not store it, so a re-run retries it)
            error=f"the verifier failed {len(failures)} time{'s' * (len(failures) != 1)} "
            f"(first: {failures[0]})"
            if failures
            else None,
            info=info,
        )


def joined(parts: list[Generation]) -> Generation:
    """Single-choice generations as one of n choices."""
    return Generation(
        choices=[c for g in parts for c in g.choices],
        prompt_tokens=sum(g.prompt_tokens for g in parts),
        cached_tokens=sum(g.cached_tokens for g in parts),
        reasoning_tokens=sum(g.reasoning_tokens for g in parts),
    )


def answer_of(text: str, kind: str | None) -> str | None:
    """The answer a sample's text states (`read_answer`)."""
    return read_answer(text, kind)[0]


def candidates_of(gen: Generation, kind: str | None = None, top_k: int = 0) -> list[Candidate]:
    """The choices as candidates with their answers and, when `top_k` and the choice carries
    log-probabilities, their confidence signals."""
    out = []
    settings = SignalSettings(k=top_k) if top_k else None
    for c in gen.choices:
        answer, unstated = read_answer(c.text, kind)
        signals, stats = None, None
        if settings is not None:
            signals, stats = signals_of(c.logprobs, c.completion_tokens, settings)
        out.append(
            Candidate(
                text=c.text,
                answer=answer,
                completion_tokens=c.completion_tokens,
                finish_reason=c.finish_reason,
                note=None if answer is not None else no_answer(unstated),
                signals=signals,
                stats=stats,
                tool_calls=c.tool_calls,
                reasoning=c.reasoning,
            )
        )
    return out


def no_answer(unstated: str | None) -> str:
    """Why a sample has no answer."""
    if unstated is None:
        return "no answer found in the text"
    return (
        f"no answer stated (\\boxed{{}} or 'the answer is'); {unstated!r} in its text is not taken"
    )


def program_answer(run: ExecResult, kind: str | None) -> str | None:
    """A program's answer: its last printed line, read as an answer of `kind`."""
    lines = [line.strip() for line in run.stdout.splitlines() if line.strip()]
    if not run.ok or not lines:
        return None
    last = lines[-1]
    # (a printed line is the program's answer as it stands: read loosely, not as a statement)
    if kind == "number":
        return extract(last, "number")
    # a printed value is the answer itself: "400.0" → "400", "x = 3" stays "x = 3"
    return normalize_number(last) or (extract(last, kind) if kind else None) or last
