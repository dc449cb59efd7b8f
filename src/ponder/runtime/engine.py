"""The engine: a policy model, one scheduler, and `solve` for any registered strategy."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from types import TracebackType
from typing import Any

from pydantic import ValidationError

from ponder.errors import BackendError, BudgetExceeded, UsageError, problem_line
from ponder.lm import BackendConfig, LanguageModel, Progress, open_backend
from ponder.runtime.budget import Budget, Ledger
from ponder.runtime.context import Context
from ponder.runtime.prompting import Prompting
from ponder.runtime.scheduler import Scheduler
from ponder.runtime.strategy import Strategy, check_thinking, make_strategy
from ponder.runtime.verifiers import VerifierEnv, Verifiers
from ponder.sandbox import Sandbox
from ponder.types import Problem, Result, Usage, blank


class Engine:
    """Holds the loaded policy model; solve as many problems as you like, concurrently."""

    def __init__(
        self,
        policy: LanguageModel,
        *,
        scheduler: Scheduler | None = None,
        prompting: Prompting | None = None,
        sandbox: Sandbox | None = None,
        verifiers: Verifiers | None = None,
    ) -> None:
        self.policy = policy
        self.scheduler = scheduler or Scheduler()
        self.prompting = prompting or Prompting()
        self.sandbox = sandbox or Sandbox()
        self.verifiers = verifiers or Verifiers(VerifierEnv(open_model=open_backend))

    @classmethod
    def open(
        cls,
        config: BackendConfig | None = None,
        *,
        prompting: Prompting | None = None,
        progress: Progress | None = None,
        **settings: Any,
    ) -> Engine:
        """An engine over the backend `config` names (the embedded default model when None);
        `settings` are BackendConfig fields, e.g. `Engine.open(model="qwen2.5-coder-1.5b")`."""
        if config is None:
            config = BackendConfig(**settings)
        elif settings:
            config = config.model_copy(update=settings)
        lm = open_backend(config, progress)
        scheduler = Scheduler(request_timeout_s=config.timeout)
        return cls(lm, prompting=prompting, scheduler=scheduler)

    async def solve(
        self,
        problem: Problem | str,
        strategy: Strategy | str = "vote",
        *,
        seed: int | None = None,
        budget: Budget | dict[str, Any] | None = None,
        observer: Callable[[dict[str, Any]], None] | None = None,
        prompting: Prompting | None = None,
        workload: Ledger | None = None,
        **options: Any,
    ) -> Result:
        """Answer one problem. Backend failures and budget stops come back in the Result
        (`error`, `stopped`) with everything spent so far; bad input raises UsageError.
        `observer` is told of every call charged and of the strategy's progress; `prompting`
        replaces the engine's for this problem (e.g. a server request's own max_tokens);
        `workload` is a ledger over many solves whose budget caps them all together (every
        reservation and charge of this solve is made on it too)."""
        if isinstance(problem, str):
            problem = Problem(question=problem)
        if blank(problem.question):
            raise UsageError("the question is empty")
        if isinstance(strategy, str):
            strategy = make_strategy(strategy, **options)
        elif options:
            raise UsageError(f"options {sorted(options)} given with a ready-made strategy")
        strategy.check_fits(problem)
        prompting = prompting or self.prompting
        check_thinking(strategy, prompting)
        if isinstance(budget, dict):
            try:
                budget = Budget(**budget)
            except ValidationError as e:  # a misspelt or negative cap, named
                where = "; ".join(problem_line(("budget", *x["loc"]), x["msg"]) for x in e.errors())
                raise UsageError(where) from None
        ctx = Context(
            policy=self.policy,
            scheduler=self.scheduler,
            ledger=Ledger(
                budget,
                on_charge=None if observer is None else charged(observer),
                parent=workload,
            ),
            seed=secrets.randbelow(2**31) if seed is None else seed,
            prompting=prompting,
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
