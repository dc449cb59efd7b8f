"""Process scoring cost on the embedded model: verifier prefill per scored step token.

Samples GSM8K solutions written one step per line, keeps 8 with at least 8 steps, and scores
their first 8 steps with the self-judge, all 8 paths at once, every step given the ones before
it. The prefill is read from llama.cpp's own counter (`prompt_tokens_total`); step tokens are
counted with the model's tokenizer. Two ways of asking are compared side by side:
- transcript: one growing raw prompt per path ("step / Correct: Yes / step / Correct:"), so
  each call adds one step and a 3-token cue to a prefix the slot already holds;
- questions: the partial solution as a chat turn plus "Is the last step above correct?".

    .venv/bin/python benchmarks/process_scoring.py [--paths 8] [--steps 8]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from ponder.budget import Ledger
from ponder.lm.llamacpp import LlamaCppLM
from ponder.lm.registry import DEFAULT_MODEL, Registry
from ponder.scheduler import Scheduler
from ponder.search import Context, Prompting
from ponder.tasks import gsm8k
from ponder.types import GenRequest, Message
from ponder.verify import SelfJudge, Verifiers

STEP_PROMPT = (
    "Solve the problem step by step. Write each step on its own line, one short sentence "
    "with its calculation per line, and end with the final answer in \\boxed{}."
)


async def main(paths: int, steps: int) -> None:
    model_path, info = Registry().resolve(DEFAULT_MODEL)
    lm = LlamaCppLM(model_path, info, slots=8)
    scheduler = Scheduler()
    ledger = Ledger()
    ctx = Context(policy=lm, scheduler=scheduler, ledger=ledger, seed=0, verifiers=Verifiers())
    ctx.prompting = Prompting(system=STEP_PROMPT)

    # 1. solutions with at least `steps` lines
    chosen: list[tuple[object, list[str]]] = []
    for problem in gsm8k.load(limit=40):
        req = GenRequest(
            messages=[
                Message(role="system", content=STEP_PROMPT),
                Message(role="user", content=problem.question),
            ],
            n=4,
            temperature=0.7,
            max_tokens=400,
            seed=1,
        )
        gen = await scheduler.generate(lm, req, ledger)
        for c in gen.choices:
            lines = [x.strip() for x in c.text.splitlines() if x.strip()]
            if len(lines) >= steps and len(chosen) < paths:
                chosen.append((problem, lines[:steps]))
        if len(chosen) >= paths:
            break
    async with httpx.AsyncClient(timeout=30) as client:

        async def n_tokens(text: str) -> int:
            r = await client.post(f"{lm.http_url}/tokenize", json={"content": text})
            return len(r.json()["tokens"])

        step_tokens = sum([await n_tokens(s) for _, lines in chosen for s in lines])

    # 2. score every path's steps, both ways, on fresh caches of the same slots
    rows = []
    for mode in ("transcript", "questions"):
        lm.capabilities = lm.capabilities.model_copy(update={"raw_prefix": mode == "transcript"})
        judge = SelfJudge()
        before = lm.metrics()["prompt_tokens_total"]
        started = time.monotonic()
        verdicts = await asyncio.gather(
            *(judge.score_steps(p, lines, ctx) for p, lines in chosen)  # type: ignore[arg-type]
        )
        seconds = time.monotonic() - started
        prefill = lm.metrics()["prompt_tokens_total"] - before
        scored = sum(v.score is not None for vs in verdicts for v in vs)
        rows.append((mode, prefill, seconds, scored))
    lm.close()
    print(f"{len(chosen)} paths × {steps} steps = {step_tokens:,} step tokens (model tokenizer)")
    print("| asking | verifier prefill tokens | ÷ step tokens | judge calls scored | seconds |")
    print("|---|---|---|---|---|")
    for mode, prefill, seconds, scored in rows:
        print(
            f"| {mode} | {prefill:,.0f} | {prefill / step_tokens:.2f} | "
            f"{scored}/{len(chosen) * steps} | {seconds:.1f} |"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    a = ap.parse_args()
    asyncio.run(main(a.paths, a.steps))
