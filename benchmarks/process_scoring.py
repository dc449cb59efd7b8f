"""Process scoring cost on the embedded model: verifier prefill per scored step token.

Each path is a GSM8K solution the policy writes one step per line (temperature 0.7); as soon as
it is written, the self-judge scores its first 8 steps, every step given the ones before it,
8 paths at a time. Paths with fewer than 8 steps are skipped (not scored). Verifier prefill is
what llama.cpp reports per call (prompt tokens minus cached ones, checked against its own
`prompt_tokens_total`); step tokens are counted with the model's tokenizer. Two ways of asking:
- continuation: the rendered conversation + the solution up to step k + "\\nCorrect?", reading
  P(Yes); call k + 1 shares all but the cue with call k, and the slot that wrote the solution
  already holds it;
- questions: the partial solution as the assistant's turn + "Is the last step above correct?".

    .venv/bin/python benchmarks/process_scoring.py [--paths 8] [--steps 8]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import replace

import httpx

from ponder.lm.llamacpp import LlamaCppLM
from ponder.lm.registry import DEFAULT_MODEL, Registry
from ponder.runtime.budget import Ledger
from ponder.runtime.context import Context
from ponder.runtime.prompting import Prompting
from ponder.runtime.scheduler import Scheduler
from ponder.runtime.verifiers import Verdict, Verifiers
from ponder.tasks.registry import get_task
from ponder.types import Problem
from ponder.verify.judge import SelfJudge

STEP_PROMPT = (
    "Solve the problem step by step. Write each step on its own line, one short sentence "
    "with its calculation per line, and end with the final answer in \\boxed{}."
)


async def one_mode(lm: LlamaCppLM, raw: bool, paths: int, steps: int) -> dict[str, float]:
    lm.capabilities = lm.capabilities.model_copy(update={"raw_prefix": raw})
    ledger = Ledger()
    ctx = Context(
        policy=lm,
        scheduler=Scheduler(),
        ledger=ledger,
        seed=0,
        prompting=Prompting(system=STEP_PROMPT, max_tokens=400, stop=[]),
        verifiers=Verifiers(),
    )
    judge = SelfJudge(step_separator="\n")
    scored: list[tuple[list[str], list[Verdict]]] = []

    async def path(problem: Problem, seed: int) -> None:
        req = replace(ctx.request(problem, n=1, temperature=0.7), seed=seed)
        gen = await ctx.generate(req)
        lines = [x.strip() for x in gen.choices[0].text.split("\n") if x.strip()]
        if len(lines) >= steps and len(scored) < paths:
            slot = len(scored)
            scored.append((lines[:steps], []))
            scored[slot] = (lines[:steps], await judge.score_steps(problem, lines[:steps], ctx))

    problems = get_task("gsm8k").load(limit=60)
    before = lm.metrics()["prompt_tokens_total"]
    started = time.monotonic()
    for i in range(0, len(problems), paths):
        if len(scored) >= paths:
            break
        await asyncio.gather(*(path(p, 7 + i + j) for j, p in enumerate(problems[i : i + paths])))
    seconds = time.monotonic() - started
    server_prefill = lm.metrics()["prompt_tokens_total"] - before
    spent = ledger.by_role()
    async with httpx.AsyncClient(timeout=30) as client:
        step_tokens = 0
        for lines, _ in scored:
            for line in lines:
                r = await client.post(f"{lm.http_url}/tokenize", json={"content": line})
                step_tokens += len(r.json()["tokens"])
    ver, pol = spent["verifier"], spent["policy"]
    return {
        "paths": len(scored),
        "step_tokens": step_tokens,
        "verifier_prefill": ver.prompt_tokens - ver.cached_tokens,
        "verifier_calls": ver.calls,
        "scored": sum(v.score is not None for _, vs in scored for v in vs),
        "ledger_prefill": ver.prompt_tokens
        - ver.cached_tokens
        + pol.prompt_tokens
        - pol.cached_tokens,
        "server_prefill": server_prefill,
        "seconds": seconds,
    }


async def main(paths: int, steps: int) -> None:
    model_path, info = Registry().resolve(DEFAULT_MODEL)
    lm = LlamaCppLM(model_path, info, slots=8)
    rows = [
        (mode, await one_mode(lm, mode == "continuation", paths, steps))
        for mode in ("continuation", "questions")
    ]
    lm.close()
    print(f"{paths} paths × {steps} steps, each scored right after it was written")
    print(
        "| asking | step tokens | verifier prefill | ÷ step tokens | calls | scored "
        "| ledger = server prefill |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode, r in rows:
        same = (
            "yes"
            if r["ledger_prefill"] == r["server_prefill"]
            else f"no ({r['ledger_prefill']:,.0f} vs {r['server_prefill']:,.0f})"
        )
        print(
            f"| {mode} | {r['step_tokens']:,.0f} | {r['verifier_prefill']:,.0f} | "
            f"{r['verifier_prefill'] / r['step_tokens']:.2f} | {r['verifier_calls']:.0f} | "
            f"{r['scored']:.0f}/{r['paths'] * steps:.0f} | {same} |"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    a = ap.parse_args()
    asyncio.run(main(a.paths, a.steps))
