"""What every strategy gets (`Context`) and the shape every strategy has (`Strategy`)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ponder.answers import extract_answer
from ponder.budget import Ledger
from ponder.lm.protocol import LanguageModel
from ponder.scheduler import Scheduler
from ponder.types import Candidate, Generation, GenRequest, Message, Problem, Result

# Measured on the first 30 GSM8K test problems, 0.5B greedy: this prompt 7/30; without its
# second sentence 4/30 (the model writes Python and invents its output); with two worked
# examples 0/30.
DEFAULT_SYSTEM_PROMPT = (
    "Please reason step by step, and put your final answer within \\boxed{}. "
    "Do not write code; solve with arithmetic in words."
)
# Coder models like to run code in their heads and then invent its printed output.
DEFAULT_STOP = ["```output"]


class Prompting(BaseModel):
    """How a problem becomes a request: shared by every strategy."""

    system: str = DEFAULT_SYSTEM_PROMPT
    max_tokens: int = Field(default=512, ge=1)
    stop: list[str] = Field(default_factory=lambda: list(DEFAULT_STOP))

    def messages(self, problem: Problem) -> list[Message]:
        return [
            Message(role="system", content=problem.system or self.system),
            Message(role="user", content=problem.question),
        ]


@dataclass
class Context:
    """Everything a strategy may use. It never reaches a backend except through `generate`."""

    policy: LanguageModel
    scheduler: Scheduler
    ledger: Ledger
    seed: int
    prompting: Prompting = field(default_factory=Prompting)
    rng: random.Random = field(init=False)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def next_seed(self) -> int:
        """A sampling seed for the next request, drawn from the run's seeded RNG."""
        return self.rng.randrange(2**31)

    def request(self, problem: Problem, *, n: int, temperature: float) -> GenRequest:
        return GenRequest(
            messages=self.prompting.messages(problem),
            n=n,
            temperature=temperature,
            max_tokens=self.prompting.max_tokens,
            stop=self.prompting.stop,
            seed=self.next_seed(),
        )

    def affordable(self, req: GenRequest) -> int:
        """How many of the request's n choices the budget allows (0: none)."""
        native = self.policy.capabilities.native_n(req)
        return self.ledger.affordable_n(req, self.policy.info, native_n=native)

    async def generate(self, req: GenRequest) -> Generation:
        return await self.scheduler.generate(self.policy, req, self.ledger)

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
            ledger=list(self.ledger.charges),
            seed=self.seed,
            model=self.policy.info.name,
            seconds=time.monotonic() - self.started,
            stopped=stopped,
            info=info,
        )


def candidates_of(gen: Generation) -> list[Candidate]:
    return [
        Candidate(
            text=c.text,
            answer=extract_answer(c.text),
            completion_tokens=c.completion_tokens,
            finish_reason=c.finish_reason,
        )
        for c in gen.choices
    ]


class Strategy(BaseModel):
    """A strategy is its config (plain data) plus `run`, which reads like the paper."""

    model_config = ConfigDict(extra="forbid")
    name: ClassVar[str]

    async def run(self, problem: Problem, ctx: Context) -> Result:
        raise NotImplementedError
