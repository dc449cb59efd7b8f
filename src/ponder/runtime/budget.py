"""Ledger and Budget: the one place that counts compute and caps it.

A call is estimated at its worst case before it is sent (every choice runs to `max_tokens`, the
prompt is at most one token per byte), that estimate is reserved, and the real usage is charged
when the call returns. Because reservations are upper bounds, caps on tokens, calls, FLOPs and
dollars are never exceeded, even with many calls in flight. The seconds cap is a deadline: no
call starts after it, and calls in flight are given only the time that is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from pydantic import BaseModel, ConfigDict, Field

from ponder.errors import BudgetExceeded
from ponder.types import USAGE_FIELDS, Charge, GenRequest, LedgerLine, ModelInfo, Usage

# Chat templates add a few special tokens per message; this bounds them generously.
_TEMPLATE_TOKENS_PER_MESSAGE = 16


class Budget(BaseModel):
    """Caps on compute for one solve. None means no cap."""

    # a misspelt cap ({"token": 10}) is an error, never a cap silently missing
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tokens: int | None = Field(default=None, ge=0, description="prompt + completion tokens")
    completion_tokens: int | None = Field(default=None, ge=0)
    calls: int | None = Field(default=None, ge=0)
    flops: float | None = Field(default=None, ge=0)
    dollars: float | None = Field(default=None, ge=0)
    seconds: float | None = Field(default=None, gt=0)

    def first_exceeded(self, usage: Usage) -> str | None:
        """The name of the first cap that `usage` goes past, or None."""
        checks = (
            ("tokens", self.tokens, usage.total_tokens),
            ("completion_tokens", self.completion_tokens, usage.completion_tokens),
            ("calls", self.calls, usage.calls),
            ("flops", self.flops, usage.flops),
            ("dollars", self.dollars, usage.dollars),
        )
        for name, cap, value in checks:
            if cap is not None and value > cap:
                return name
        return None


_NO_CAPS = Budget()


def estimate(req: GenRequest, model: ModelInfo, *, native_n: bool = True) -> Usage:
    """The most a request can cost: an upper bound, never an average. Without native n the
    request goes out as n single calls, each with the whole prompt."""
    n_messages = len(req.messages) if req.messages is not None else 0
    prompt = len(req.input_text().encode("utf-8")) + _TEMPLATE_TOKENS_PER_MESSAGE * (n_messages + 1)
    completion = req.n * req.max_tokens
    if not native_n:
        prompt *= req.n
    return Usage(
        calls=1 if native_n else req.n,
        prompt_tokens=prompt,
        completion_tokens=completion,
        flops=model.flops(prompt, 0, completion),
        dollars=model.dollars(prompt, 0, completion),
    )


class Ledger:
    """Counts every call by role and enforces a Budget through reservations."""

    def __init__(
        self,
        budget: Budget | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_charge: Callable[[str, Usage], None] | None = None,
        parent: Ledger | None = None,
    ) -> None:
        """`parent`: a ledger over many solves (a workload's whole budget): every reservation
        and charge is made on it too, so its caps hold for all of them together."""
        self.budget = budget or Budget()
        self.parent = parent
        # Without caps nothing needs reserving or adding up before a call (most solves).
        self.capped: bool = self.budget != _NO_CAPS or (parent is not None and parent.capped)
        self.on_charge = on_charge  # told of every charge as it lands (progress streams)
        # Compact lines (see LedgerLine): a thousand searches in flight keep hundreds of
        # thousands of them alive, which the cyclic GC would otherwise walk again and again.
        self.lines: list[LedgerLine] = []
        self._clock = clock
        self._start = clock()
        # per role, each Usage field's sum over lines[:_summed] (added up when read, not on
        # every call: an uncapped solve never reads them until it ends)
        self._spent: dict[str, dict[str, float]] = {}
        self._summed = 0
        self._reserved = Usage()
        # Attempts that failed and were retried: their cost is unknown, but their number is not.
        self.failed_attempts = 0
        # Verifier calls that failed for good (unreachable, an error answer): their candidates
        # are unscored for a reason other than the verifier's own, so the result is not whole
        self.verifier_failures: list[str] = []
        # Whether a cap ever cut what was asked (fewer choices, or a call refused): a result
        # says it stopped on the budget even when the strategy itself went on with less
        self.cut = False

    # -- reading -------------------------------------------------------------------------
    @property
    def charges(self) -> list[Charge]:
        """Every call charged so far, in order."""
        return [Charge.of(line) for line in self.lines]

    def by_role(self) -> dict[str, Usage]:
        return {role: Usage(**sums) for role, sums in self._sums().items()}

    def _sums(self) -> dict[str, dict[str, float]]:
        lines = self.lines
        if self._summed < len(lines):
            rows: dict[str, list[tuple[float, ...]]] = {}
            for role, _, values in lines[self._summed :]:
                rows.setdefault(role, []).append(values)
            for role, calls in rows.items():
                sums = self._spent.setdefault(role, dict.fromkeys(USAGE_FIELDS, 0))
                for name, column in zip(USAGE_FIELDS, zip(*calls, strict=True), strict=True):
                    sums[name] += sum(column)
            self._summed = len(lines)
        return self._spent

    @property
    def spent(self) -> Usage:
        return Usage.total_of(self.by_role().values())

    def elapsed(self) -> float:
        return self._clock() - self._start

    def seconds_left(self) -> float | None:
        if self.budget.seconds is None:
            return None
        return max(0.0, self.budget.seconds - self.elapsed())

    # -- asking before spending ----------------------------------------------------------
    def refusal(self, cost: Usage) -> str | None:
        """Why `cost` may not be spent now (the cap's name), or None if it may."""
        left = self.seconds_left()
        if left is not None and left <= 0:
            return "seconds"
        if not self.capped:
            return None
        if self.parent is not None and (why := self.parent.refusal(cost)) is not None:
            return f"{why} (workload)"
        return self.budget.first_exceeded(self.spent + self._reserved + cost)

    def allows(self, cost: Usage) -> bool:
        return self.refusal(cost) is None

    def affordable_n(self, req: GenRequest, model: ModelInfo, *, native_n: bool = True) -> int:
        """The largest n ≤ req.n whose worst case fits the budget (0 if none does)."""
        if not self.capped:  # (no caps at all: no seconds cap either)
            return req.n
        for n in range(req.n, 0, -1):
            if self.allows(estimate(replace(req, n=n), model, native_n=native_n)):
                self.cut = self.cut or n < req.n
                return n
        self.cut = True
        return 0

    def reserve(self, cost: Usage) -> Usage:
        if not self.capped:  # (no caps at all: no seconds cap either)
            return cost
        cap = self.refusal(cost)
        if cap is not None:
            self.cut = True
            raise BudgetExceeded(f"budget cap '{cap}' would be exceeded by this call")
        if self.parent is not None:
            self.parent.reserve(cost)
        self._reserved = self._reserved + cost
        return cost

    def release(self, reservation: Usage) -> None:
        if self.capped:
            self._reserved = self._reserved - reservation
            if self.parent is not None:
                self.parent.release(reservation)

    # -- spending ------------------------------------------------------------------------
    def charge(self, role: str, model: str, usage: Usage) -> None:
        self.record(role, model, tuple(getattr(usage, name) for name in USAGE_FIELDS), usage)

    def record(
        self, role: str, model: str, values: tuple[float, ...], usage: Usage | None = None
    ) -> None:
        """`charge` from a call's counts in `Usage` field order (the scheduler's path: no
        Usage object per call unless someone is told of it)."""
        self.lines.append((role, model, values))
        if self.parent is not None:
            self.parent.record(role, model, values, usage)
        if self.on_charge is not None:
            self.on_charge(role, usage or Usage(**dict(zip(USAGE_FIELDS, values, strict=True))))
