"""`ponder serve` benchmarks.

load   200 concurrent streaming requests (vote-4) against a scripted backend (10 ms a call,
       8 slots) on loopback: every stream checked well formed and complete; p50 / p99 latency
       and time to first chunk.
proxy  A pass-through greedy request through `ponder serve --upstream` against the same request
       sent straight to the upstream (llama.cpp's own OpenAI server for the embedded model),
       one question at a time, alternating which goes first (ABBA) so prefix-cache effects
       fall on both sides alike. Target: ratio of total latency ≤ 1.05.

    .venv/bin/python benchmarks/serve.py load [--requests 200]
    .venv/bin/python benchmarks/serve.py proxy [--questions 20] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.serve import create_app
from serving import load, percentile, running


def run_load(requests: int) -> None:
    from test_serve import MODEL, ask, reply

    lm = ScriptedLM(reply, capabilities=Capabilities(slots=8, raw_prefix=True), latency_s=0.01)
    with running(create_app(Engine(lm, scheduler=Scheduler()))) as url:
        body = {"model": f"vote-4/{MODEL}", "messages": ask(), "stream": True, "seed": 1}
        started = time.perf_counter()
        checks = asyncio.run(load(url, requests, body))
        wall = time.perf_counter() - started
    bad = [c for c in checks if c.status != 200 or c.problems]
    total = [c.seconds for c in checks]
    first = [c.first_chunk_s for c in checks]
    print(
        f"{requests} concurrent streams in {wall:.2f} s: {len(bad)} bad "
        f"({sum(c.status >= 500 for c in checks)} server errors); latency p50 "
        f"{percentile(total, 0.5):.3f} s, p99 {percentile(total, 0.99):.3f} s; first chunk "
        f"p50 {percentile(first, 0.5):.3f} s, p99 {percentile(first, 0.99):.3f} s; "
        f"{len(lm.calls)} backend calls"
    )
    if bad:
        sys.exit(f"bad streams: {[c.problems for c in bad[:5]]}")


def run_proxy(questions: int, max_tokens: int) -> None:
    from ponder.lm.llamacpp import LlamaCppLM
    from ponder.lm.openai import OpenAILM
    from ponder.lm.registry import DEFAULT_MODEL, Registry
    from ponder.tasks.registry import get_task

    path, info = Registry().resolve(DEFAULT_MODEL)
    upstream = LlamaCppLM(path, info, slots=1)
    direct_url = f"{upstream.http_url}/v1"
    engine = Engine(OpenAILM(direct_url, slots=1), scheduler=Scheduler())
    problems = get_task("gsm8k").load(limit=questions)
    direct: list[float] = []
    proxied: list[float] = []
    with running(create_app(engine)) as ponder_url, httpx.Client(timeout=600) as client:
        served = client.get(f"{ponder_url}/models").json()["data"][0]["id"]

        def timed(url: str, model: str, question: str) -> float:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": question}],
                "temperature": 0.0,
                "max_tokens": max_tokens,
                "seed": 0,
            }
            started = time.perf_counter()
            r = client.post(f"{url}/chat/completions", json=body)
            r.raise_for_status()
            return time.perf_counter() - started

        timed(direct_url, served, "Hi")  # warm both paths once
        timed(ponder_url, served, "Hi")
        for i, p in enumerate(problems):
            order = [(direct_url, direct), (ponder_url, proxied)]
            for url, into in order if i % 2 == 0 else order[::-1]:
                into.append(timed(url, served, p.question))
    upstream.close()
    ratio = sum(proxied) / sum(direct)
    per = [p / d for p, d in zip(proxied, direct, strict=True)]
    print(
        f"{questions} GSM8K questions, greedy, max_tokens {max_tokens}, one at a time: direct "
        f"{sum(direct):.2f} s, through ponder serve {sum(proxied):.2f} s → ratio {ratio:.3f} "
        f"(median per question {statistics.median(per):.3f}; target ≤ 1.05); mean added "
        f"{1000 * (sum(proxied) - sum(direct)) / questions:.1f} ms per request"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    lo = sub.add_parser("load")
    lo.add_argument("--requests", type=int, default=200)
    pr = sub.add_parser("proxy")
    pr.add_argument("--questions", type=int, default=20)
    pr.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    if args.what == "load":
        run_load(args.requests)
    else:
        run_proxy(args.questions, args.max_tokens)


if __name__ == "__main__":
    main()
