from __future__ import annotations

import asyncio
import json
import random

from helpers import scripted_engine
from ponder.types import GenRequest, Result


def noisy(req: GenRequest, index: int, rng: random.Random) -> str:
    return f"thinking {rng.random():.9f} \\boxed{{{rng.randrange(4)}}}"


def stable(r: Result) -> str:
    """The Result as JSON without wall-clock fields (the only thing allowed to differ)."""
    data = json.loads(r.to_json())
    data.pop("seconds")
    for u in [*data["usage"].values(), *(c["usage"] for c in data["ledger"])]:
        u.pop("seconds")
    return json.dumps(data, sort_keys=True)


async def run_all(seed: int) -> list[str]:
    engine, _ = scripted_engine(noisy, latency_s=0.001, slots=3)
    qs = [f"question {i}" for i in range(6)]
    results = await asyncio.gather(
        *(
            engine.solve(q, s, seed=seed + i, **({} if s == "greedy" else {"n": 5}))
            for i, q in enumerate(qs)
            for s in ("greedy", "sample", "vote")
        )
    )
    return [stable(r) for r in results]


async def test_a_seeded_scripted_run_is_bit_for_bit_repeatable() -> None:
    first = await run_all(11)
    assert first == await run_all(11)
    assert first != await run_all(12)  # and the seed really matters
