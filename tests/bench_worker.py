"""A bench run on the scripted backend, as its own process (the crash-safety test kills it).

    python tests/bench_worker.py STORE [PROBLEMS]

Replies depend only on (question, seed), so any order of completion gives the same rows.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
from pathlib import Path

from ponder.bench.harness import Harness, plan
from ponder.bench.store import Store
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.runtime.strategy import make_strategy, options_taken
from ponder.tasks.registry import get_task
from ponder.types import GenRequest


def engine_for(golds: dict[str, str | None], latency_s: float) -> Engine:
    def reply(req: GenRequest, index: int, rng: random.Random) -> str:
        if req.role == "verifier":
            return "Yes"
        question = req.messages[-1].content if req.messages else ""
        right = rng.random() < 0.45
        wrong = rng.choice(["7", "8", "9"])
        return f"some steps\n\\boxed{{{golds.get(question) if right else wrong}}}"

    def judge(req: GenRequest, index: int, rng: random.Random) -> dict[str, float]:
        p = 0.05 + 0.9 * rng.random()
        return {"Yes": math.log(p), "No": math.log(1 - p)}

    async def no_sleep(_: float) -> None:
        return None

    lm = ScriptedLM(
        reply,
        logprobs=judge,
        latency_s=latency_s,
        capabilities=Capabilities(slots=8, n_with_stop=True),
    )
    return Engine(lm, scheduler=Scheduler(sleep=no_sleep))


async def main(store_path: Path, limit: int, latency_s: float) -> None:
    problems = get_task("gsm8k").load(limit=limit)
    engine = engine_for({p.question: p.gold for p in problems}, latency_s)
    strategies = [
        make_strategy(name, **options_taken(name, {"n": 6, "verifier": "self_judge"}))
        for name in ("greedy", "vote", "weighted_vote")
    ]
    store = Store(store_path)
    harness = Harness(engine, store, model_sha256="scripted")
    async with engine:
        for p in plan(strategies):
            await harness.execute("gsm8k", problems, p, seed=3)
    store.close()


if __name__ == "__main__":
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    latency = float(sys.argv[3]) if len(sys.argv) > 3 else 0.01
    asyncio.run(main(Path(sys.argv[1]), limit, latency))
