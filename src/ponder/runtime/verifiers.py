"""What a verifier is: the outcome contract (score whole candidates) and the process contract
(score each step of a partial solution), the registry every verifier is built from, and the
pool an engine keeps of the verifiers it has built.

A verifier never raises for one bad candidate: it returns a Verdict with no score and the
reason, and its model calls are charged to the ledger as role `verifier`. A verifier sees the
part of a strategy's context it needs (`VerifyContext`), so this module sits below the context.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Protocol, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    model_validator,
)

from ponder.errors import UsageError, problems
from ponder.lm.config import BackendConfig
from ponder.lm.protocol import LanguageModel
from ponder.plugins import Registry, first_line
from ponder.runtime.aggregate import aggregate, check_aggregate, clip, deltas, rank_calibrated
from ponder.runtime.budget import Ledger
from ponder.runtime.prompting import Prompting
from ponder.runtime.scheduler import Lease, Scheduler
from ponder.sandbox import Sandbox
from ponder.types import AnswerWith, Candidate, Problem

ROLE = "verifier"

# What a verifier's registry entry may say it does (its capabilities):
OUTCOME = "outcome"  # scores whole candidates
PROCESS = "process"  # scores steps (each given the steps before it)
LOGPROBS = "logprobs"  # reads P(Yes) from log-probabilities
SANDBOX = "sandbox"  # runs code in the sandbox
SERVED = "served"  # safe to offer through the server (uses only the served model and sandbox)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A score in [0, 1] (higher: more likely correct), or None with the reason why not."""

    score: float | None = None
    reason: str | None = None


class VerifyContext(Protocol):
    """What a verifier may use of the strategy's context: the policy and its conversation, the
    scheduler (every model call goes through it), the ledger it is charged to, the slot lease
    held by the caller, and the sandbox."""

    @property
    def policy(self) -> LanguageModel: ...
    @property
    def scheduler(self) -> Scheduler: ...
    @property
    def ledger(self) -> Ledger: ...
    @property
    def lease(self) -> Lease | None: ...
    @property
    def prompting(self) -> Prompting: ...
    @property
    def sandbox(self) -> Sandbox: ...
    @property
    def answer_with(self) -> AnswerWith: ...


class OutcomeVerifier(Protocol):
    async def score(
        self, problem: Problem, candidates: Sequence[Candidate], ctx: VerifyContext
    ) -> list[Verdict]:
        """One verdict per candidate, in order."""
        ...


class ProcessVerifier(Protocol):
    async def score_steps(
        self, problem: Problem, steps: Sequence[str], ctx: VerifyContext
    ) -> list[Verdict]:
        """One verdict per step, step k judged given steps 1..k. Prefixes scored before are
        answered from the verifier's cache, so no step is scored twice."""
        ...


class LastStepScorer(Protocol):
    async def score_last_step(
        self, problem: Problem, steps: Sequence[str], ctx: VerifyContext
    ) -> Verdict:
        """Only the last of `steps`, given those before it (a step search's new node: its
        ancestors were judged when they were made)."""
        ...


@dataclass(frozen=True)
class BuiltVerifier:
    """A verifier as built from its spec: the contracts it meets, typed (no probing)."""

    name: str
    outcome: OutcomeVerifier | None = None
    process: ProcessVerifier | None = None
    last_step: LastStepScorer | None = None
    # it continues each candidate's own conversation (a self-judge), so scoring right after
    # generation, on the slot that wrote the candidate, finds it in the prefix cache
    reuses_candidate_prefix: bool = False
    close: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True)
class VerifierEnv:
    """What a verifier factory may use: opening another model (an LLM judge's)."""

    open_model: Callable[[BackendConfig], LanguageModel] | None = None


Opts = TypeVar("Opts", bound=BaseModel)
VerifierFactory = Callable[[Any, VerifierEnv], BuiltVerifier]

VERIFIERS: Registry[VerifierFactory] = Registry(
    "verifier",
    "ponder.verifiers",
    ("ponder.verify.judge", "ponder.verify.checks", "ponder.verify.prm_http"),
)


def verifier(
    name: str, options: type[Opts], *, capabilities: set[str], summary: str | None = None
) -> Callable[
    [Callable[[Opts, VerifierEnv], BuiltVerifier]], Callable[[Opts, VerifierEnv], BuiltVerifier]
]:
    """Register a verifier factory `(options, env) -> BuiltVerifier` as `name`, with its options
    model and capabilities (OUTCOME, PROCESS, LOGPROBS, SANDBOX, SERVED)."""

    def register(
        factory: Callable[[Opts, VerifierEnv], BuiltVerifier],
    ) -> Callable[[Opts, VerifierEnv], BuiltVerifier]:
        VERIFIERS.add(
            name,
            factory,
            summary=summary or first_line(factory.__doc__),
            options=options,
            capabilities=capabilities,
        )
        return factory

    return register


class VerifierSpec(BaseModel):
    """A verifier by name and its options, as plain data (`{"name": "self_judge"}`)."""

    # taken as written ("steps": "yes" is no bool), as strategy options are; clip stays lax
    # (a JSON list is its pair), finite
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    name: StrictStr = "self_judge"
    options: dict[str, Any] = Field(default_factory=dict)
    # Score each step (process) and aggregate, instead of the whole candidate at once.
    steps: StrictBool = False
    # How step scores become one outcome score: min, last, prod or mean.
    aggregate: StrictStr = "min"
    # Optional transforms: step scores clipped to [lo, hi], then turned into deltas (each step
    # credited with its change), before aggregation; outcome scores replaced by their rank
    # percentile among the candidates scored together.
    clip: tuple[float, float] | None = None
    deltas: StrictBool = False
    rank_calibrated: StrictBool = False

    @model_validator(mode="after")
    def _known(self) -> VerifierSpec:
        try:
            part = VERIFIERS.get(self.name)
        except UsageError as e:
            raise ValueError(str(e)) from None
        check_aggregate(self.aggregate)
        if self.clip is not None and self.clip[0] > self.clip[1]:
            raise ValueError(
                f"clip [{self.clip[0]:g}, {self.clip[1]:g}]: its low end is above its high"
            )
        if self.steps and PROCESS not in part.capabilities:
            raise ValueError(f"verifier '{self.name}' scores whole candidates, not steps")
        if part.options is not None:
            try:
                part.options.model_validate(self.options)
            except ValidationError as e:
                raise ValueError(
                    options_error(f"verifier '{self.name}'", part.options, e)
                ) from None
        return self

    @classmethod
    def of(cls, value: VerifierSpec | str | dict[str, Any]) -> VerifierSpec:
        if isinstance(value, VerifierSpec):
            return value
        if isinstance(value, str):
            return cls(name=value)
        return cls(**value)

    def __str__(self) -> str:
        """Compact: the name, then what differs from the defaults (`self_judge steps=True`)."""
        rest = self.model_dump(mode="json", exclude_defaults=True, exclude={"name"})
        return " ".join([self.name, *(f"{k}={v}" for k, v in rest.items())])

    @cached_property
    def key(self) -> str:
        """What identifies the built verifier (its caches serve every aggregate); the spec is
        frozen, so it is worked out once (it is asked on every scored step)."""
        return self.model_dump_json(include={"name", "options"})


def options_error(what: str, model: type[BaseModel], e: ValidationError) -> str:
    """A one-line message for bad options, naming every valid key (once: a nested part's own
    message, a verifier's inside a strategy's, names its keys already). A check across
    options (a model validator: no location) names its options in its own message."""
    said = problems(e)
    if "(valid keys: " in said:
        return f"bad options for {what}: {said}"
    keys = ", ".join(k for k, f in model.model_fields.items() if not f.exclude) or "none"
    return f"bad options for {what}: {said} (valid keys: {keys})"


def split_steps(text: str) -> list[str]:
    """A solution's steps: its blank-line separated blocks (the default step boundary)."""
    return [s.strip() for s in text.split("\n\n") if s.strip()]


class Verifiers:
    """The verifiers an engine has built, each spec once (judges keep caches, PRMs keep
    connections), and outcome scoring with any of them (a process verifier scores a
    candidate's steps and aggregates them)."""

    def __init__(self, env: VerifierEnv | None = None) -> None:
        self.env = env or VerifierEnv()
        self._built: dict[str, BuiltVerifier] = {}

    def get(self, spec: VerifierSpec) -> BuiltVerifier:
        key = spec.key
        built = self._built.get(key)
        if built is None:
            part = VERIFIERS.get(spec.name)
            options = part.options.model_validate(spec.options) if part.options else spec.options
            built = self._built[key] = part.obj(options, self.env)
        return built

    def process(self, spec: VerifierSpec) -> BuiltVerifier:
        """The built verifier, which must score steps (a usage error otherwise)."""
        built = self.get(spec)
        if built.process is None:
            step_verifiers = ", ".join(VERIFIERS.names(PROCESS))
            raise UsageError(
                f"verifier '{spec.name}' cannot score steps: a step search needs a process "
                f"verifier ({step_verifiers})"
            )
        return built

    async def score(
        self,
        problem: Problem,
        candidates: Sequence[Candidate],
        spec: VerifierSpec,
        ctx: VerifyContext,
    ) -> list[Verdict]:
        built = self.get(spec)
        if not spec.steps and built.outcome is not None:
            verdicts = list(await built.outcome.score(problem, candidates, ctx))
        else:
            verdicts = await self._by_steps(self.process(spec), problem, candidates, spec, ctx)
        if spec.rank_calibrated:
            ranks = rank_calibrated([v.score for v in verdicts])
            verdicts = [replace(v, score=r) for v, r in zip(verdicts, ranks, strict=True)]
        return verdicts

    async def _by_steps(
        self,
        built: BuiltVerifier,
        problem: Problem,
        candidates: Sequence[Candidate],
        spec: VerifierSpec,
        ctx: VerifyContext,
    ) -> list[Verdict]:
        process = built.process
        assert process is not None  # (checked by `process`)

        async def one(cand: Candidate) -> Verdict:
            steps = split_steps(cand.text)
            if not steps:
                return Verdict(reason="empty candidate: no steps to score")
            verdicts = await process.score_steps(problem, steps, ctx)
            scores = [v.score for v in verdicts]
            if spec.clip is not None:
                scores = clip(scores, *spec.clip)
            if spec.deltas:
                scores = deltas(scores)
            value = aggregate(scores, spec.aggregate)
            reasons = sorted({v.reason for v in verdicts if v.reason})
            return Verdict(score=value, reason="; ".join(reasons) or None)

        # paths in parallel; within a path the verifier orders its calls for its cache
        return list(await asyncio.gather(*(one(c) for c in candidates)))

    async def aclose(self) -> None:
        for built in self._built.values():
            if built.close is not None:
                await built.close()
        self._built.clear()
