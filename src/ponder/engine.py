"""The engine: a policy model, one scheduler, and `solve` for any strategy."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ponder.budget import Budget, Ledger
from ponder.errors import BackendError, BudgetExceeded, UsageError
from ponder.lm import LanguageModel, Price, open_model
from ponder.sandbox import Sandbox
from ponder.scheduler import Scheduler
from ponder.search import Context, Prompting, Strategy, make_strategy
from ponder.types import Problem, Result, Usage
from ponder.verify import Verifiers


class Engine:
    """Holds the loaded policy model; solve as many problems as you like, concurrently."""

    def __init__(
        self,
        policy: LanguageModel,
        *,
        scheduler: Scheduler | None = None,
        prompting: Prompting | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.policy = policy
        self.scheduler = scheduler or Scheduler()
        self.prompting = prompting or Prompting()
        self.sandbox = sandbox or Sandbox()
        self.verifiers = Verifiers(open_model=open_model)

    @classmethod
    def open(
        cls,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        slots: int = 8,
        prompting: Prompting | None = None,
        price: Price | None = None,
        parameters: int | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        cancellable: bool = False,
    ) -> Engine:
        lm = open_model(
            model,
            base_url=base_url,
            api_key=api_key,
            slots=slots,
            price=price,
            parameters=parameters,
            progress=progress,
            cancellable=cancellable,
        )
        return cls(lm, prompting=prompting)

    async def solve(
        self,
        problem: Problem | str,
        strategy: Strategy | str = "vote",
        *,
        seed: int | None = None,
        budget: Budget | dict[str, Any] | None = None,
        observer: Callable[[dict[str, Any]], None] | None = None,
        prompting: Prompting | None = None,
        **options: Any,
    ) -> Result:
        """Answer one problem. Backend failures and budget stops come back in the Result
        (`error`, `stopped`) with everything spent so far; bad input raises UsageError.
        `observer` is told of every call charged and of the strategy's progress; `prompting`
        replaces the engine's for this problem (e.g. a server request's own max_tokens)."""
        if isinstance(problem, str):
            problem = Problem(question=problem)
        if not problem.question.strip():
            raise UsageError("the question is empty")
        if isinstance(strategy, str):
            strategy = make_strategy(strategy, **options)
        elif options:
            raise UsageError(f"options {sorted(options)} given with a ready-made strategy")
        if isinstance(budget, dict):
            budget = Budget(**budget)
        ctx = Context(
            policy=self.policy,
            scheduler=self.scheduler,
            ledger=Ledger(budget, on_charge=None if observer is None else charged(observer)),
            seed=secrets.randbelow(2**31) if seed is None else seed,
            prompting=prompting or self.prompting,
            sandbox=self.sandbox,
            verifiers=self.verifiers,
            answer_with=strategy.answer_with,
            observer=observer,
        )
        try:
            return await strategy.run(problem, ctx)
        except BudgetExceeded:
            return ctx.result(problem, strategy, None, [], stopped="budget")
        except BackendError as e:
            result = ctx.result(problem, strategy, None, [])
            result.error = str(e)
            return result

    async def aclose(self) -> None:
        await self.verifiers.aclose()
        await self.policy.aclose()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def charged(observer: Callable[[dict[str, Any]], None]) -> Callable[[str, Usage], None]:
    """A ledger listener that tells `observer` of each call as it is charged."""

    def on_charge(role: str, usage: Usage) -> None:
        observer(
            {
                "event": "call",
                "role": role,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
            }
        )

    return on_charge
