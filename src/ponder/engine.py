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
from ponder.types import Problem, Result
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
    ) -> Engine:
        lm = open_model(
            model,
            base_url=base_url,
            api_key=api_key,
            slots=slots,
            price=price,
            parameters=parameters,
            progress=progress,
        )
        return cls(lm, prompting=prompting)

    async def solve(
        self,
        problem: Problem | str,
        strategy: Strategy | str = "vote",
        *,
        seed: int | None = None,
        budget: Budget | dict[str, Any] | None = None,
        **options: Any,
    ) -> Result:
        """Answer one problem. Backend failures and budget stops come back in the Result
        (`error`, `stopped`) with everything spent so far; bad input raises UsageError."""
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
            ledger=Ledger(budget),
            seed=secrets.randbelow(2**31) if seed is None else seed,
            prompting=self.prompting,
            sandbox=self.sandbox,
            verifiers=self.verifiers,
            answer_with=strategy.answer_with,
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
