"""its-hub 1.2.0: BetaSelfConsistency leaks LMOrchestrator permits (run with its-hub's venv python).

`LMOrchestrator` limits parallel calls with `_ThreadSafeAsyncSemaphore`, whose `acquire` runs
`threading.Semaphore.acquire` in the default thread pool. Beta stops early by cancelling the
rest of its budget; a task cancelled while its thread waits gets the permit later and never
releases it. Rounds of 8 concurrent problems (budget 8, a fake LM that always answers the same,
so Beta stops at 4 of 8) against one shared orchestrator; prints the free permits after each
round, or the deadlock. `--slots` uses the driver's SlotOrchestrator (asyncio semaphore) instead.

    benchmarks/out/peers/venv-its-hub/bin/python benchmarks/peers/its_hub_semaphore_leak.py
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

from its_hub import BetaSelfConsistency
from its_hub.api import AbstractLanguageModel
from its_hub.core.orchestrator import LMOrchestrator
from its_hub_driver import SlotOrchestrator


class SameAnswer(AbstractLanguageModel):
    """A language model that answers \\boxed{7} after 10-50 ms."""

    async def agenerate_single(self, messages: Any, **kwargs: Any) -> dict[str, str]:
        await asyncio.sleep(random.uniform(0.01, 0.05))
        return {"role": "assistant", "content": "\\boxed{7}"}

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def agenerate(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def aevaluate(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def free(orchestrator: LMOrchestrator) -> int:
    sem: Any = orchestrator._semaphore
    return int(sem._value if isinstance(sem, asyncio.Semaphore) else sem._sem._value)


async def main(slots: bool, permits: int = 8, rounds: int = 6) -> None:
    random.seed(0)
    orchestrator = SlotOrchestrator(permits) if slots else LMOrchestrator(permits)
    beta = BetaSelfConsistency(orchestrator=orchestrator)
    lm = SameAnswer()
    for i in range(rounds):
        batch = asyncio.gather(*(beta.ainfer(lm, "q", budget=8) for _ in range(8)))
        try:
            await asyncio.wait_for(batch, 20)
        except TimeoutError:
            print(f"round {i}: deadlock ({free(orchestrator)} of {permits} permits free)")
            return
        await asyncio.sleep(0.3)  # let cancelled waiters' threads finish acquiring
        print(f"round {i}: {free(orchestrator)} of {permits} permits free")


if __name__ == "__main__":
    asyncio.run(main(slots="--slots" in sys.argv))
