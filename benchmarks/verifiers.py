"""Selection on GSM8K with the embedded model: greedy, PAL greedy, majority@8,
weighted_vote@8 and best_of_n@8 with the self-judge, and the self-judge's quality.

`run PHASE` generates and appends one JSON line per problem to benchmarks/out/verifiers/
(resumable: problems already there are skipped). Phases: `greedy`, `pal` (greedy, answer with
the program's output), `pool` (8 samples at T=0.7, each scored by the self-judge; majority,
weighted vote and best-of-n are all read from this one pool, so they differ only in how they
select). `table` grades everything with the answer layer and prints the markdown table with
95% bootstrap intervals over problems, plus the server's prompt-token counter per phase.

    .venv/bin/python benchmarks/verifiers.py run greedy --problems 100
    .venv/bin/python benchmarks/verifiers.py run pal --problems 100
    .venv/bin/python benchmarks/verifiers.py run pool --problems 100
    .venv/bin/python benchmarks/verifiers.py table
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ponder.answers import equivalent, extract
from ponder.bench.estimators import bootstrap_mean_ci
from ponder.lm.llamacpp import LlamaCppLM
from ponder.lm.registry import DEFAULT_MODEL, Registry
from ponder.runtime.engine import Engine
from ponder.runtime.strategy import make_strategy
from ponder.search import tally
from ponder.tasks.registry import get_task
from ponder.types import Candidate
from ponder.verify.quality import best_index, selection_quality

OUT = Path(__file__).parent / "out" / "verifiers"
PHASES = {
    "greedy": ("greedy", {}),
    "pal": ("greedy", {"answer_with": "program"}),
    "pool": ("weighted_vote", {"n": 8, "temperature": 0.7, "verifier": "self_judge"}),
}


def is_correct(answer: str | None, gold: str | None) -> bool:
    return gold is not None and equivalent(answer, gold, "number")


async def run(phase: str, problems: int, in_flight: int, max_tokens: int, slots: int) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{phase}.jsonl"
    done = set()
    if path.exists():
        done = {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}
    todo = [p for p in get_task("gsm8k").load(limit=problems) if p.id not in done]
    print(f"{phase}: {len(done)} done, {len(todo)} to go", flush=True)
    if not todo:
        return
    model_path, info = Registry().resolve(DEFAULT_MODEL)
    lm = LlamaCppLM(model_path, info, slots=slots)
    engine = Engine(lm)
    engine.prompting = engine.prompting.model_copy(update={"max_tokens": max_tokens})
    name, opts = PHASES[phase]
    strategy = make_strategy(name, **opts)
    gate = asyncio.Semaphore(in_flight)
    started = time.monotonic()
    before = lm.metrics()

    async def one(i: int) -> None:
        p = todo[i]
        async with gate:
            r = await engine.solve(p, strategy, seed=int(p.id.rsplit("/", 1)[1]))
        with path.open("a") as f:
            row = {"id": p.id, "gold": p.gold, "result": r.model_dump(mode="json")}
            f.write(json.dumps(row) + "\n")
        print(f"{p.id}: {r.answer} (gold {p.gold}) {time.monotonic() - started:.0f}s", flush=True)

    await asyncio.gather(*(one(i) for i in range(len(todo))))
    after = lm.metrics()
    counters = {
        k: after.get(k, 0) - before.get(k, 0)
        for k in ("prompt_tokens_total", "tokens_predicted_total")
    }
    with (OUT / f"{phase}.server.jsonl").open("a") as f:
        f.write(json.dumps({**counters, "seconds": time.monotonic() - started}) + "\n")
    await engine.aclose()


def load(phase: str, ids: set[str] | None = None) -> list[dict[str, Any]]:
    path = OUT / f"{phase}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if ids is None or r["id"] in ids]
    rows.sort(key=lambda r: int(r["id"].rsplit("/", 1)[1]))
    return rows


def common_ids() -> set[str]:
    """Problems every phase has finished: all rows of the table are over the same problems."""
    sets = [{r["id"] for r in load(p)} for p in PHASES if (OUT / f"{p}.jsonl").exists()]
    return set.intersection(*sets) if sets else set()


def fmt(values: list[float]) -> str:
    m, lo, hi = bootstrap_mean_ci(np.asarray(values, dtype=float))
    return f"{100 * m:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def tokens(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """Per problem: completion / freshly prefilled / cached prompt tokens; and call counts."""
    us = [u for r in rows for u in r["result"]["usage"].values()]
    comp = sum(u["completion_tokens"] for u in us) / len(rows)
    cached = sum(u["cached_tokens"] for u in us) / len(rows)
    fresh = sum(u["prompt_tokens"] for u in us) / len(rows) - cached
    pol = sum(r["result"]["usage"].get("policy", {}).get("calls", 0) for r in rows)
    ver = sum(r["result"]["usage"].get("verifier", {}).get("calls", 0) for r in rows)
    return f"{comp:,.0f} / {fresh:,.0f} / {cached:,.0f}", f"{pol} / {ver}"


def table() -> None:
    ids = common_ids()
    lines = [
        f"The first {len(ids)} GSM8K test problems (those every method has finished).",
        "",
        "| method | accuracy [95% CI] | tokens per problem: completion / prefilled / cached "
        "| policy / verifier calls |",
        "|---|---|---|---|",
    ]
    for phase, label in (("greedy", "greedy"), ("pal", "PAL greedy (program output)")):
        if not (OUT / f"{phase}.jsonl").exists():
            continue
        rows = load(phase, ids)
        acc = [float(is_correct(r["result"]["answer"], r["gold"])) for r in rows]
        tok, calls = tokens(rows)
        lines.append(f"| {label} | {fmt(acc)} | {tok} | {calls} |")
    if (OUT / "pool.jsonl").exists():
        rows = load("pool", ids)
        maj: list[float] = []
        wv: list[float] = []
        bon: list[float] = []
        cover: list[float] = []
        pools = []
        for r in rows:
            cands = [Candidate(**c) for c in r["result"]["candidates"]]
            # re-extract with today's answer layer, so all rules read answers the same way
            for c in cands:
                c.answer = extract(c.text, "number")
            a_maj, _, _ = tally(cands, [1.0] * len(cands), "number")
            w = [c.score or 0.0 for c in cands]
            a_wv, _, _ = tally(cands, w if any(w) else [1.0] * len(cands), "number")
            best = best_index([c.score for c in cands])
            first = next((c.answer for c in cands if c.answer is not None), None)
            a_bon = cands[best].answer if best is not None else first
            maj.append(float(is_correct(a_maj, r["gold"])))
            wv.append(float(is_correct(a_wv, r["gold"])))
            bon.append(float(is_correct(a_bon, r["gold"])))
            cover.append(float(any(is_correct(c.answer, r["gold"]) for c in cands)))
            pools.append([(c.score, is_correct(c.answer, r["gold"])) for c in cands])
        tok, calls = tokens(rows)
        n = len(rows[0]["result"]["candidates"])
        for label, acc in (
            (f"majority@{n}", maj),
            (f"weighted_vote@{n}, self-judge", wv),
            (f"best_of_n@{n}, self-judge", bon),
        ):
            lines.append(f"| {label} | {fmt(acc)} | {tok} (one pool) | {calls} |")
        lines.append(f"| some sample right (pass@{n}) | {fmt(cover)} | | |")
        q = selection_quality(pools)
        lines.append("")
        lines.append(
            f"Self-judge over {sum(len(p) for p in pools)} candidates: AUROC {q.auroc:.3f}; "
            f"false-positive rate at the selection point {q.false_positive_rate:.3f}; "
            f"best-of-n missed a correct candidate on {q.missed} of {q.coverage} problems "
            "that had one."
        )
    for phase in PHASES:
        server = OUT / f"{phase}.server.jsonl"
        if server.exists():
            parts = [json.loads(x) for x in server.read_text().splitlines() if x.strip()]
            lines.append(
                f"- {phase} (whole run): server prefilled "
                f"{sum(p['prompt_tokens_total'] for p in parts):,.0f} and decoded "
                f"{sum(p['tokens_predicted_total'] for p in parts):,.0f} tokens in "
                f"{sum(p['seconds'] for p in parts):,.0f} s"
            )
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("phase", choices=list(PHASES))
    r.add_argument("--problems", type=int, default=100)
    r.add_argument("--in-flight", type=int, default=8)
    r.add_argument("--max-tokens", type=int, default=512)
    r.add_argument("--slots", type=int, default=8)
    sub.add_parser("table")
    args = ap.parse_args()
    if args.cmd == "run":
        asyncio.run(run(args.phase, args.problems, args.in_flight, args.max_tokens, args.slots))
    else:
        table()


if __name__ == "__main__":
    main()
