"""The two verifier contracts: outcome (score a whole candidate) and process (score each step
of a partial solution). A verifier never raises for one bad candidate: it returns a Verdict
with no score and the reason, and its calls are charged to the ledger as role `verifier`."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ponder.types import Candidate, Problem

if TYPE_CHECKING:
    from ponder.search.base import Context

ROLE = "verifier"
VERIFIERS = ("self_judge", "llm_judge", "code_tests", "crosscheck", "prm_http")
STEP_VERIFIERS = ("self_judge", "llm_judge", "prm_http")


@dataclass(frozen=True, slots=True)
class Verdict:
    """A score in [0, 1] (higher: more likely correct), or None with the reason why not."""

    score: float | None = None
    reason: str | None = None


class VerifierSpec(BaseModel):
    """A verifier by name and its options, as plain data (`{"name": "self_judge"}`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "self_judge"
    options: dict[str, Any] = Field(default_factory=dict)
    # Score each step (process) and aggregate, instead of the whole candidate at once.
    steps: bool = False
    # How step scores become one outcome score: min, last, prod or mean.
    aggregate: str = "min"
    # Optional transforms: step scores clipped to [lo, hi], then turned into deltas (each step
    # credited with its change), before aggregation; outcome scores replaced by their rank
    # percentile among the candidates scored together.
    clip: tuple[float, float] | None = None
    deltas: bool = False
    rank_calibrated: bool = False

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in VERIFIERS:
            raise ValueError(f"unknown verifier '{name}' (choose from: {', '.join(VERIFIERS)})")
        return name

    @field_validator("aggregate")
    @classmethod
    def _aggregate(cls, how: str) -> str:
        from ponder.verify.aggregate import check_aggregate

        return check_aggregate(how)

    @model_validator(mode="after")
    def _steps_supported(self) -> VerifierSpec:
        if self.steps and self.name not in STEP_VERIFIERS:
            raise ValueError(f"verifier '{self.name}' scores whole candidates, not steps")
        return self

    @classmethod
    def of(cls, value: VerifierSpec | str | dict[str, Any]) -> VerifierSpec:
        if isinstance(value, VerifierSpec):
            return value
        if isinstance(value, str):
            return cls(name=value)
        return cls(**value)

    @cached_property
    def key(self) -> str:
        """What identifies the built verifier (its caches serve every aggregate); the spec is
        frozen, so it is worked out once (it is asked on every scored step)."""
        return self.model_dump_json(include={"name", "options"})


@runtime_checkable
class OutcomeVerifier(Protocol):
    name: str

    async def score(
        self, problem: Problem, candidates: Sequence[Candidate], ctx: Context
    ) -> list[Verdict]:
        """One verdict per candidate, in order."""
        ...


@runtime_checkable
class ProcessVerifier(Protocol):
    name: str

    async def score_steps(
        self, problem: Problem, steps: Sequence[str], ctx: Context
    ) -> list[Verdict]:
        """One verdict per step, step k judged given steps 1..k. Prefixes scored before are
        answered from the verifier's cache, so no step is scored twice."""
        ...


class StepCache:
    """Verdicts of scored step prefixes, keyed by (question, steps so far): a verifier asks
    about a prefix once. Only real scores are kept (a failed call may succeed next time); the
    oldest entries go first beyond `capacity`, so a long-running server stays bounded."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        # verdicts kept as (score, reason) tuples: the cyclic GC does not track those, and a
        # full cache holds a hundred thousand
        self._items: OrderedDict[tuple[str, tuple[str, ...]], tuple[float, str | None]] = (
            OrderedDict()
        )

    def get(self, question: str, steps: Sequence[str]) -> Verdict | None:
        key = (question, tuple(steps))
        kept = self._items.get(key)
        if kept is None:
            return None
        self._items.move_to_end(key)
        return Verdict(*kept)

    def put(self, question: str, steps: Sequence[str], verdict: Verdict) -> None:
        if verdict.score is None:
            return
        key = (question, tuple(steps))
        self._items[key] = (verdict.score, verdict.reason)
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)


def split_steps(text: str) -> list[str]:
    """A solution's steps: its blank-line separated blocks (the default step boundary)."""
    return [s.strip() for s in text.split("\n\n") if s.strip()]
