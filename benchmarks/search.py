"""Step-level search benchmarks (issue 6).

ratio     Wall time per generated token of beam and particles against a best-of-n pool, the
          same GSM8K problems, one run, on the embedded model: the sweep
          benchmarks/sweeps/search-100.yaml limited to its first P problems, stored in its store
          (so the accuracy sweep that follows reuses every unit). Generated tokens count every
          completion token, policy and verifier.
          With --calls F, llama.cpp's own timings of every call go to F (JSON lines) and each
          run's split is printed: tokens llama.cpp evaluated (prompt and decoded) per generated
          token, and the interval between decoded tokens (one batch step, all slots).
server-ratio  Beam on GSM8K problems through llama.cpp's HTTP server against the embedded backend
          (issue 28): one model loaded once (the embedded model's file, the sweep's beam
          N=2 × M=2, its prompt and limits), the P problems all in flight, first in process
          (LlamaCppLM), then through the same engine's OpenAI-compatible server on 127.0.0.1
          reached only by URL (OpenAILM, as `--base-url` reaches it: probed, chat template
          rendered by the server, requests pinned to its slots), every slot's cache erased
          before each run. Wall per generated token (every completion token, policy and
          verifier), server / embedded; each run's tokens checked against llama.cpp's /metrics.
overhead  The engine's own cost: a zero-latency scripted backend and a scripted process
          verifier, P problems × beam width W × S steps, all problems in flight at once; with
          Python's default GC, with ponder's, and the floor (the same work without the engine)
          in three fresh processes, each beside a reference loop's time (the VMs here vary).

    .venv/bin/python benchmarks/search.py ratio [--problems 20] [--offset 0] [--store S]
                                                [--calls F] [--only beam ...]
    PONDER_PIN_SLOTS=0 ... ratio ...    (llama.cpp places requests itself: to compare)
    .venv/bin/python benchmarks/search.py server-ratio [--problems 20] [--offset 0]
                                                [--threads N] [--slots 8]
    .venv/bin/python benchmarks/search.py overhead [--problems 1000] [--width 16] [--steps 10]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import random
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ponder.lm.protocol import Capabilities
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.runtime.strategy import STRATEGIES
from ponder.runtime.verifiers import VERIFIERS
from ponder.types import (
    Completion,
    Generation,
    GenRequest,
    Message,
    ModelInfo,
    Problem,
    TokenLogprob,
)

HERE = Path(__file__).resolve().parent
SWEEP = HERE / "sweeps" / "search-100.yaml"


def ratio(
    problems: int, offset: int, store_path: Path | None, calls: Path | None, only: list[str]
) -> None:
    from ponder.bench.sweep import load_sweep
    from ponder.cli import run_sweep

    sweep = load_sweep(SWEEP).with_limit(problems)
    if only:  # the pool (the sweep's first strategy) always runs: every ratio is against it
        pool, *searches = sweep.strategies
        unknown = set(only) - {s.name for s in searches}
        if unknown:
            sys.exit(f"--only: {', '.join(sorted(unknown))} not among the sweep's searches")
        sweep.strategies = [pool, *(s for s in searches if s.name in only)]
    for task in sweep.tasks:
        task.offset = offset
    assert sweep.store is not None
    store = store_path.resolve() if store_path else (SWEEP.parent / sweep.store).resolve()
    store.parent.mkdir(parents=True, exist_ok=True)
    before = last_segment(store)
    log = record_calls(calls) if calls else None
    interrupted = asyncio.run(run_sweep(sweep, store, SWEEP.parent, None))
    if interrupted:
        sys.exit("interrupted: run again to finish (stored units are kept)")
    rows = per_run(store, after=before)
    pool = next((r for r in rows if r["kind"] == "pool"), None)
    if pool is None or pool["wall"] == 0:
        sys.exit("no fresh pool segment in this run (the store already had these problems?)")
    base = pool["wall"] / pool["generated"]
    first = offset + 1
    print(f"\nGSM8K test {first}-{offset + problems}, one run; generated = completion tokens\n")
    print("| run | wall s | units | generated | prefilled | cached | s per 1k generated | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        per = r["wall"] / r["generated"]
        print(
            f"| {r['strategy']} | {r['wall']:.0f} | {r['units']} | {r['generated']:,} | "
            f"{r['prefilled']:,} | {r['cached']:,} | {1000 * per:.1f} | **{per / base:.2f}** |"
        )
    if log is not None:
        print_call_split(store, before, log)


def server_ratio(problems: int, offset: int, threads: int | None, slots: int) -> None:
    import httpx

    from ponder.bench.sweep import load_sweep
    from ponder.lm.llamacpp import LlamaCppLM
    from ponder.lm.openai import OpenAILM
    from ponder.lm.registry import DEFAULT_MODEL, Registry
    from ponder.sandbox import Sandbox
    from ponder.tasks.registry import get_task

    sweep = load_sweep(SWEEP)
    beam = next(s for s in sweep.strategies if s.name == "beam")
    options = beam.options()
    task = get_task("gsm8k")
    todo = task.load(limit=problems, offset=offset)
    path, info = Registry().resolve(DEFAULT_MODEL)
    model = LlamaCppLM(path, info, slots=slots, ctx_per_slot=sweep.ctx_size, threads=threads)
    url = model.http_url
    print(
        f"beam N={options.get('n')} × M={options.get('m')} on GSM8K test "
        f"{offset + 1}–{offset + len(todo)}, {slots} slots, {threads or 'all'} threads, {url}",
        flush=True,
    )

    def erase_slots() -> None:
        for slot in range(slots):
            httpx.post(f"{url}/slots/{slot}", params={"action": "erase"}, timeout=60)

    async def run(label: str, lm: Any) -> dict[str, Any]:
        engine = Engine(lm, prompting=sweep.prompting())
        await lm.prepare()  # (a server's probe is not the run's)
        erase_slots()
        before = model.metrics()
        started = time.perf_counter()
        results = await asyncio.gather(
            *(engine.solve(p, beam.name, seed=0, **options) for p in todo)
        )
        wall = time.perf_counter() - started
        after = model.metrics()
        sandbox = Sandbox()
        right = sum(
            [await task.grade(p, r.answer, sandbox) for p, r in zip(todo, results, strict=True)]
        )
        generated = sum(r.total.completion_tokens for r in results)
        prompt = sum(r.total.prompt_tokens - r.total.cached_tokens for r in results)
        counted = after["tokens_predicted_total"] - before["tokens_predicted_total"]
        evaluated = after["prompt_tokens_total"] - before["prompt_tokens_total"]
        errors = [r.error for r in results if r.error]
        row = {
            "run": label,
            "wall_s": wall,
            "right": right,
            "problems": len(todo),
            "generated": generated,
            "server_generated": counted,
            "prefilled": prompt,
            "server_prefilled": evaluated,
            "calls": sum(r.total.calls for r in results),
            "s_per_1k": 1000 * wall / max(1, generated),
            "errors": errors,
        }
        print(json.dumps(row), flush=True)
        return row

    async def both() -> list[dict[str, Any]]:
        embedded = await run("embedded (in process)", model)
        server = OpenAILM(url, slots=slots)
        try:
            over_http = await run(f"llama.cpp server ({url})", server)
            over_http["continuation"] = server.continuation
            over_http["pinned"] = server.capabilities.pin_slots
        finally:
            await server.aclose()
        return [embedded, over_http]

    try:
        rows = asyncio.run(both())
    finally:
        model.close()
    base = rows[0]["s_per_1k"]
    print()
    print(
        "| run | wall s | right | generated (server's count) | prefilled (server's count) "
        "| calls | s per 1k generated | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {r['wall_s']:.0f} | {r['right']}/{r['problems']} "
            f"| {r['generated']:,} ({r['server_generated']:,.0f}) "
            f"| {r['prefilled']:,} ({r['server_prefilled']:,.0f}) | {r['calls']:,} "
            f"| {r['s_per_1k']:.1f} | {r['s_per_1k'] / base:.2f} |"
        )
    print(f"\nserver: continuation {rows[1]['continuation']}, pinned to slots: {rows[1]['pinned']}")


def record_calls(path: Path) -> list[dict[str, Any]]:
    """Every call the embedded model serves from now on, with llama.cpp's own timings (kept
    in the returned list and written to `path`, a line each)."""
    from ponder.lm.llamacpp import LlamaCppLM

    kept: list[dict[str, Any]] = []
    out = path.open("w")
    lock = threading.Lock()
    serve = LlamaCppLM._call

    def timed(self: LlamaCppLM, body: dict[str, Any], *, chat: bool) -> dict[str, Any]:
        started = time.time()
        data = serve(self, body, chat=chat)
        t = data.get("timings") or {}
        row = {
            "started": started,
            "ended": time.time(),
            "slot": body.get("id_slot"),
            "n": body.get("n", 1),
            "max_tokens": body.get("max_tokens"),
            "prompt_n": t.get("prompt_n", 0),
            "cache_n": t.get("cache_n", 0),
            "predicted_n": t.get("predicted_n", 0),
            "prompt_ms": t.get("prompt_ms", 0.0),
            "predicted_ms": t.get("predicted_ms", 0.0),
        }
        with lock:  # calls return on llama.cpp's worker threads
            kept.append(row)
            out.write(json.dumps(row) + "\n")
            out.flush()
        return data

    LlamaCppLM._call = timed  # type: ignore[method-assign]
    return kept


def print_call_split(store: Path, after: int, log: list[dict[str, Any]]) -> None:
    """Each run's calls as llama.cpp timed them. On a CPU the batch step is compute-bound, so
    its length grows with every token in it, prompt or decoded: the wall time per generated
    token follows the evaluated tokens per generated token."""
    with sqlite3.connect(store) as db:
        spans = db.execute(
            "SELECT r.strategy, s.started, s.ended FROM segments s JOIN runs r ON r.rid = s.rid"
            " WHERE s.sid > ? ORDER BY s.sid",
            (after,),
        ).fetchall()
    print("\nllama.cpp's own account of each run's calls (--calls)\n")
    print(
        "| run | calls | decoded | prompt evaluated | evaluated per decoded | "
        "ms between decoded tokens | ms per evaluated token (wall) |"
    )
    print("|---|---|---|---|---|---|---|")
    for strategy, started, ended in spans:
        mine = [c for c in log if started <= c["started"] < (ended or math.inf)]
        decoded = sum(c["predicted_n"] for c in mine)
        prompt = sum(c["prompt_n"] for c in mine)
        steps = [c for c in mine if c["predicted_n"] > 1]
        interval = sum(c["predicted_ms"] for c in steps) / max(
            1, sum(c["predicted_n"] for c in steps)
        )
        wall = ((ended or started) - started) * 1000
        print(
            f"| {strategy} | {len(mine)} | {decoded:,} | {prompt:,} | "
            f"{(decoded + prompt) / max(1, decoded):.2f} | {interval:.0f} | "
            f"{wall / max(1, decoded + prompt):.1f} |"
        )


def last_segment(store: Path) -> int:
    if not store.exists():
        return 0
    with sqlite3.connect(store) as db:
        return int(db.execute("SELECT COALESCE(MAX(sid), 0) FROM segments").fetchone()[0])


def per_run(store: Path, *, after: int) -> list[dict[str, Any]]:
    """Wall time and tokens of each run's segments opened after segment id `after`."""
    with sqlite3.connect(store) as db:
        q = """
        SELECT r.rid, r.kind, r.strategy, r.config,
               (SELECT SUM(s.ended - s.started) FROM segments s
                 WHERE s.rid = r.rid AND s.sid > :after),
               COUNT(u.unit),
               SUM(u.policy_completion + u.verifier_completion),
               SUM(u.policy_prompt + u.verifier_prompt - u.policy_cached - u.verifier_cached),
               SUM(u.policy_cached + u.verifier_cached)
        FROM runs r JOIN units u ON u.rid = r.rid AND u.sid > :after
        GROUP BY r.rid ORDER BY r.rid"""
        out = []
        for rid, kind, strategy, config, wall, units, gen, pre, cached in db.execute(
            q, {"after": after}
        ):
            label = strategy
            if kind == "pool":
                label = f"pool ({json.loads(config).get('name', strategy)} units)"
            out.append(
                {
                    "rid": rid,
                    "kind": kind,
                    "strategy": label,
                    "wall": wall or 0.0,
                    "units": units,
                    "generated": gen,
                    "prefilled": pre,
                    "cached": cached,
                }
            )
        return out


# ---------------------------------------------------------------------------------------------
# overhead: zero-latency scripted backend


class InstantLM:
    """A zero-latency backend that costs next to nothing itself (no tokenizer, no hashing), so
    what is measured is the engine: the policy writes step k of a path until `steps` are
    written, then a boxed answer; the judge's Yes/No logprobs are random."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.info = ModelInfo(name="instant", parameters=1_000_000)
        self.capabilities = Capabilities(slots=64, n_with_stop=True, raw_prefix=True)
        self.rng = random.Random(0)
        self.calls = 0
        # by the ids of the conversation's messages (kept alive with it, so ids stay theirs):
        # a search asks with the same message objects every time
        self.rendered: dict[tuple[int, ...], tuple[list[Message], str]] = {}
        # the judge's answers, drawn once and dealt in turn (P(Yes) uniform in 0.05..0.95)
        self.verdicts = [self._verdict(self.rng.uniform(0.05, 0.95)) for _ in range(4099)]

    @staticmethod
    def _verdict(p: float) -> Generation:
        top = {"Yes": math.log(p), "No": math.log(1 - p)}
        yes = TokenLogprob(token="Yes", logprob=top["Yes"], top=top)
        return Generation(choices=[Completion(text="Yes", completion_tokens=1, logprobs=[yes])])

    async def prepare(self) -> Capabilities:
        return self.capabilities

    async def render(self, messages: list[Message]) -> str:
        key = tuple(map(id, messages))
        kept = self.rendered.get(key)
        if kept is None:
            text = "".join(f"<{m.role}>{m.content}\n" for m in messages) + "<assistant>"
            kept = self.rendered[key] = (list(messages), text)
        return kept[1]

    async def generate(self, req: GenRequest) -> Generation:
        self.calls += 1
        prompt = req.prompt or ""
        if req.role == "verifier":
            kept = self.verdicts[self.calls % len(self.verdicts)]
            return Generation(choices=kept.choices, prompt_tokens=len(prompt) // 4)
        done = prompt.count("\n\n")
        if done >= self.steps:
            texts = ["The answer is \\boxed{7}."] * req.n
        else:  # distinct steps (the call's number), so no prefix is ever a cache hit
            texts = [f"Step {done}: option {self.calls}.{i}" for i in range(req.n)]
        return Generation(
            choices=[Completion(text=t, completion_tokens=6) for t in texts],
            prompt_tokens=len(prompt) // 4,
        )

    async def aclose(self) -> None:
        return None


def overhead(problems: int, width: int, steps: int, gc_as: str) -> None:
    """The engine's own cost, with Python's default GC settings and then as ponder's commands
    run it (ponder.runtime.tune_gc), in fresh processes one after the other."""
    if gc_as == "both":
        for how in ("default", "ponder", "floor"):
            cmd = [sys.executable, __file__, "overhead", "--problems", str(problems)]
            cmd += ["--width", str(width), "--steps", str(steps), "--gc", how]
            subprocess.run(cmd, check=True)
        return
    if gc_as in ("ponder", "floor"):
        from ponder.runtime.settings import tune_gc

        tune_gc()
    if gc_as == "floor":
        floor(problems, width, steps)
        return
    lm = InstantLM(steps)
    qs = [Problem(question=f"Question {i}?", kind="number", id=str(i)) for i in range(problems)]

    async def go() -> tuple[float, float, list[Any]]:
        eng = Engine(lm, scheduler=Scheduler())
        # ponder's own parts are imported by their registries on first use; import them
        # before the clock starts, so the time is the engine's, not a one-off import's
        STRATEGIES.names(), VERIFIERS.names()
        t0, c0 = time.perf_counter(), time.process_time()
        results = await asyncio.gather(
            *(
                eng.solve(q, "beam", n=width, m=1, max_steps=steps + 1, seed=i)
                for i, q in enumerate(qs)
            )
        )
        return time.perf_counter() - t0, time.process_time() - c0, results

    machine = reference_loop()
    clock = GCClock()
    wall, cpu, results = asyncio.run(go())
    nodes = sum(len(r.info["tree"]) - 1 for r in results)
    calls = sum(r.total.calls for r in results)
    answered = sum(r.answer == "7" for r in results)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{problems} problems × beam width {width} × {steps} steps: {wall:.2f} s wall, "
        f"{cpu:.2f} s CPU ({nodes:,} nodes, {calls:,} calls policy + verifier, "
        f"{1e6 * wall / calls:.1f} µs per call; {answered}/{problems} answered; "
        f"peak RSS {rss:.0f} MiB; GC {gc_as} ({clock}); target < 10 s)\n"
        f"  this machine's speed: a 10M-step pure-Python loop took {machine:.2f} s "
        "(a reference to compare runs on other machines, or at other times, by)"
    )


def floor(problems: int, width: int, steps: int) -> None:
    """The same work with the engine taken out, as a floor to read the engine's cost against:
    the same backend, one task per child, a GenRequest per call, each child a tree node judged
    once (a dict for the judge's cache, a list for the ledger), the best `width` kept. No
    scheduler, budget, slots, retries, trace or Result: what any asyncio engine built on these
    types pays at least, on this machine, today."""
    lm = InstantLM(steps)
    lines: list[tuple[str, int, int, float]] = []
    verdicts: dict[tuple[str, tuple[str, ...]], float] = {}

    async def call(req: GenRequest) -> Generation:
        started = time.monotonic()
        gen = await lm.generate(req)
        lines.append((req.role, gen.prompt_tokens, gen.completion_tokens, started))
        return gen

    async def child(tree: Any, node: Any, head: str) -> Any:
        body = tree.text(node)
        req = GenRequest(prompt=head + body, max_tokens=256, temperature=0.7, stop=["\n\n"])
        choice = (await call(req)).choices[0]
        step = choice.text.strip()
        kid = tree.add(node, step, tokens=choice.completion_tokens, terminal="boxed" in step)
        key = (tree.question, tree.steps(kid))
        if key not in verdicts:
            judge = GenRequest(prompt=head + tree.text(kid) + "?", top_logprobs=20, role="verifier")
            top = (await call(judge)).choices[0].logprobs[0].top  # type: ignore[index]
            yes, no = math.exp(top["Yes"]), math.exp(top["No"])
            verdicts[key] = yes / (yes + no)
        kid.score = verdicts[key]
        return kid

    async def beam(question: str) -> Any:
        from ponder.search.tree import Tree

        head = await lm.render([Message(role="user", content=question)])
        tree = Tree(question)
        beams, finished = [tree.root] * width, 0
        for _ in range(steps + 1):
            kids = await asyncio.gather(*(child(tree, b, head) for b in beams))
            finished += sum(k.terminal for k in kids)
            live = [k for k in kids if not k.terminal]
            if finished >= width or not live:
                break
            beams = sorted(live, key=lambda k: -k.score)[:width]
        return tree

    async def go() -> tuple[float, list[Any]]:
        started = time.perf_counter()
        trees = await asyncio.gather(*(beam(f"Question {i}?") for i in range(problems)))
        return time.perf_counter() - started, trees

    machine = reference_loop()
    clock = GCClock()
    wall, trees = asyncio.run(go())
    nodes = sum(len(t.nodes) - 1 for t in trees)
    print(
        f"floor, the same work without the engine: {wall:.2f} s wall ({nodes:,} nodes, "
        f"{len(lines):,} calls, {1e6 * wall / len(lines):.1f} µs per call; GC ponder ({clock}))\n"
        f"  this machine's speed: a 10M-step pure-Python loop took {machine:.2f} s"
    )


class GCClock:
    """Seconds the cyclic GC spent, and its passes by generation, while installed (read
    beside the wall time: unlike it, barely moved by a busy neighbour on a shared VM)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.passes = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.passes[info["generation"]] += 1

    def __str__(self) -> str:
        young, middle, old = self.passes
        return f"{self.seconds:.2f} s in {young}/{middle}/{old} passes, young/middle/old"


def reference_loop(steps: int = 10_000_000) -> float:
    """Seconds for a plain interpreted loop: how fast this machine runs Python right now
    (the shared VMs here have differed by 2x between sessions)."""
    started = time.perf_counter()
    total = 0
    for i in range(steps):
        total += i
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("ratio")
    r.add_argument("--problems", type=int, default=20)
    r.add_argument("--offset", type=int, default=0, help="skip this many problems first")
    r.add_argument(
        "--store", type=Path, help="another store than the sweep's (to measure problems again)"
    )
    r.add_argument(
        "--calls", type=Path, help="write llama.cpp's timings of every call here (JSON lines)"
    )
    r.add_argument(
        "--only", nargs="+", default=[], metavar="SEARCH", help="these searches (and the pool)"
    )
    sr = sub.add_parser("server-ratio")
    sr.add_argument("--problems", type=int, default=20)
    sr.add_argument("--offset", type=int, default=0, help="skip this many problems first")
    sr.add_argument("--threads", type=int, default=None, help="llama.cpp threads [all cores]")
    sr.add_argument("--slots", type=int, default=8)
    o = sub.add_parser("overhead")
    o.add_argument("--problems", type=int, default=1000)
    o.add_argument("--width", type=int, default=16)
    o.add_argument("--steps", type=int, default=10)
    o.add_argument(
        "--gc",
        choices=["both", "default", "ponder", "floor"],
        default="both",
        help="the engine with Python's default GC settings or ponder's commands' "
        "(runtime.tune_gc), the floor (the same work without the engine, tuned GC), or all "
        "three in turn",
    )
    args = ap.parse_args()
    if args.what == "ratio":
        ratio(args.problems, args.offset, args.store, args.calls, args.only)
    elif args.what == "server-ratio":
        server_ratio(args.problems, args.offset, args.threads, args.slots)
    else:
        overhead(args.problems, args.width, args.steps, args.gc)


if __name__ == "__main__":
    main()
