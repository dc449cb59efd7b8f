"""Throughput of ponder against raw xllamacpp, side by side in one run.

1. ponder: `vote -n N` over the first P GSM8K test problems, all in flight through the
   scheduler, on a fresh in-process llama.cpp with S slots. Every request body is recorded.
2. raw: a fresh llama.cpp with the same settings is sent exactly those bodies (same prompts,
   seeds, n, max_tokens) straight through xllamacpp from a thread pool, all at once.

Decode tokens are read from the server's own counter (`tokens_predicted_total`), so both sides
are measured the same way. Prints tokens/s for each, their ratio, and the peak RSS.

    .venv/bin/python benchmarks/throughput.py [--problems 20] [--n 8] [--slots 8] [--max-tokens 256]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ponder.answers import equivalent
from ponder.lm.llamacpp import LlamaCppLM
from ponder.lm.registry import DEFAULT_MODEL, Registry
from ponder.runtime.engine import Engine
from ponder.runtime.prompting import Prompting
from ponder.runtime.strategy import Strategy, make_strategy
from ponder.tasks.registry import get_task
from ponder.types import Problem, Result


class RecordingLM(LlamaCppLM):
    """The real backend, noting every body it sends to llama.cpp."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.bodies: list[tuple[dict[str, Any], bool]] = []
        super().__init__(*args, **kwargs)
        self.bodies.clear()  # not the warm-up

    def _call(self, body: dict[str, Any], *, chat: bool) -> dict[str, Any]:
        self.bodies.append((body, chat))
        return super()._call(body, chat=chat)


async def solve_all(engine: Engine, problems: list[Problem], strategy: Strategy) -> list[Result]:
    """Every problem in flight at once (problem i seeded i): the scheduler keeps slots full."""
    return list(
        await asyncio.gather(*(engine.solve(p, strategy, seed=i) for i, p in enumerate(problems)))
    )


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=20)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args()

    path, info = Registry().resolve(args.model)
    problems = get_task("gsm8k").load(limit=args.problems)
    rss_before = peak_rss_mib()

    # 1. through ponder
    lm = RecordingLM(path, info, slots=args.slots)
    engine = Engine(lm, prompting=Prompting(max_tokens=args.max_tokens))
    strategy = make_strategy("vote", n=args.n)
    before = lm.metrics()["tokens_predicted_total"]
    t0 = time.monotonic()
    results = asyncio.run(solve_all(engine, problems, strategy))
    completion_tokens = sum(r.total.completion_tokens for r in results)
    correct = sum(
        equivalent(r.answer, p.gold, "number") for r, p in zip(results, problems, strict=True)
    )
    ponder_s = time.monotonic() - t0
    ponder_tokens = lm.metrics()["tokens_predicted_total"] - before
    rss_ponder = peak_rss_mib()
    bodies = list(lm.bodies)
    lm.close()
    del lm, engine

    # 2. raw xllamacpp, same bodies, fresh server
    raw = LlamaCppLM(path, info, slots=args.slots)
    before = raw.metrics()["tokens_predicted_total"]
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        list(pool.map(lambda bc: raw._call(bc[0], chat=bc[1]), bodies))
    raw_s = time.monotonic() - t0
    raw_tokens = raw.metrics()["tokens_predicted_total"] - before
    raw.close()

    ponder_tps, raw_tps = ponder_tokens / ponder_s, raw_tokens / raw_s
    print(
        f"model {info.name} · {args.slots} slots · vote n={args.n} · {args.problems} GSM8K "
        f"problems · max_tokens {args.max_tokens}"
    )
    print(
        f"ponder: {ponder_tokens:.0f} decode tokens in {ponder_s:.1f} s = {ponder_tps:.1f} tok/s "
        f"(ledger: {completion_tokens} completion tokens; "
        f"accuracy {correct}/{len(problems)})"
    )
    print(f"raw   : {raw_tokens:.0f} decode tokens in {raw_s:.1f} s = {raw_tps:.1f} tok/s")
    print(f"ratio ponder/raw: {ponder_tps / raw_tps:.3f} (target >= 0.9)")
    print(
        f"peak RSS: {peak_rss_mib():.0f} MiB (after ponder phase {rss_ponder:.0f} MiB; "
        f"interpreter + imports {rss_before:.0f} MiB; target <= 1536 MiB)"
    )
    if completion_tokens != ponder_tokens:
        print("MISMATCH: the ledger's tokens differ from the server's counter", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
