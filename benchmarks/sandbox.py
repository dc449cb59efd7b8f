"""Sandbox throughput: trivial programs per second through `Sandbox.run` (full isolation:
namespaces, mounts, rlimits, a user of its own), side by side with the same programs run as a
plain `python -I` subprocess with no isolation, both with as many in flight as there are cores.

    .venv/bin/python benchmarks/sandbox.py [--programs 200]

Grading time per code candidate, before and after the isolated grader (issue 24, item 4): the
reference solutions of the first N HumanEval and first N MBPP test problems, graded one at a
time (latency) and two at a time (throughput) by the former grader (the candidate's code and
the tests in one sandboxed program; kept below only to be measured) and by
`ponder.sandbox.grading` (the candidate's code in its own process, the tests in another); then
the hostile candidates of tests/hostile_code.py on HumanEval/0 and MBPP/11, and how many each
grader passes.

    .venv/bin/python benchmarks/sandbox.py grading [--problems 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from ponder.sandbox import Limits, Sandbox, _interpreter_paths, _reveal_plan
from ponder.tasks.registry import get_task, grade
from ponder.types import Problem

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hostile_code import HOSTILE, hostile


async def plain(code: str, gate: asyncio.Semaphore) -> bytes:
    async with gate:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-c", code, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return out


async def main(programs: int) -> None:
    cores = os.cpu_count() or 1
    codes = [f"print({i} * {i})" for i in range(programs)]
    box = Sandbox(parallel=cores)
    await box.run("print(0)")  # warm the page cache
    started = time.monotonic()
    results = await asyncio.gather(*(box.run(c) for c in codes))
    sandboxed = time.monotonic() - started
    assert all(r.ok and r.stdout == f"{i * i}\n" for i, r in enumerate(results))
    gate = asyncio.Semaphore(cores)
    started = time.monotonic()
    outs = await asyncio.gather(*(plain(c, gate) for c in codes))
    bare = time.monotonic() - started
    assert all(o == f"{i * i}\n".encode() for i, o in enumerate(outs))
    print(f"{programs} trivial programs, {cores} at a time, isolation {results[0].isolation}:")
    for label, secs in (("sandbox", sandboxed), ("plain", bare)):
        rate, each = programs / secs, 1000 * secs / programs
        print(f"  {label:8}  {rate:6.1f} programs/s ({each:.1f} ms each)")
    print(f"  ratio     {bare / sandboxed:.2f} (sandbox throughput ÷ plain)")


# -- grading: the former grader, kept only to be measured -----------------------------------------
def legacy_program(code: str, tests: Sequence[str], setup: str = "", marker: str = "") -> str:
    """The candidate's code followed by each test in its own try block; the tally is printed
    after a random marker (ponder.verify.checks.test_program before issue 24)."""
    lines = [setup, code, "", "__ponder_passed = 0"]
    for t in tests:
        body = "\n".join("        " + line for line in t.splitlines())
        lines += ["try:", "    if True:", body, "    __ponder_passed += 1"]
        lines += ["except BaseException:", "    pass"]
    lines.append(f"print({marker!r} + str(__ponder_passed))")
    return "\n".join(lines)


async def legacy_grade(problem: Problem, code: str, box: Sandbox) -> bool:
    """ponder.tasks.registry.grade for code before issue 24."""
    tests = list(problem.meta.get("tests") or [])
    entry = problem.meta.get("entry_point")
    if entry and f"def {entry}" not in code:
        code = str(problem.meta.get("prompt") or "") + code
    marker = f"@@ponder-{secrets.token_hex(8)}@@"
    setup = str(problem.meta.get("test_setup") or "")
    run = await box.run(legacy_program(code, tests, setup, marker))
    tally = [line for line in run.stdout.splitlines() if line.startswith(marker)]
    return bool(tests) and (int(tally[-1][len(marker) :]) if tally else None) == len(tests)


def former_mounts(box: Sandbox) -> Sandbox:
    """The sandbox's mounts before issue 24: only private ancestors of the interpreter hidden
    (today every non-system top-level directory is)."""
    box._plan = _reveal_plan(_interpreter_paths()) if os.geteuid() == 0 else []
    return box


Grader = Callable[[Problem, str, Sandbox], Awaitable[bool]]
# label: (grader, sandbox maker); each grader gets sandboxes of its own
GRADERS: dict[str, tuple[Grader, Callable[[Sandbox], Sandbox]]] = {
    "before": (legacy_grade, former_mounts),
    "one program, new mounts": (legacy_grade, lambda box: box),
    "after (isolated)": (grade, lambda box: box),
}


async def grading(n: int, rounds: int) -> None:
    he = get_task("humaneval").load(limit=n)
    mbpp = [p for p in get_task("mbpp").load(limit=n + 10) if int(p.id.split("/")[1]) >= 11][:n]
    sets = {"HumanEval": he, "MBPP": mbpp}
    print(f"reference solutions of the first {n} HumanEval and {n} MBPP test problems,")
    print(f"{rounds} rounds; latency with the two graders interleaved candidate by candidate")
    print(
        "set        grader                    ms/candidate, 1 at a time  candidates/s, 2 at a time"
    )
    for name, problems in sets.items():
        ones = {label: make(Sandbox(parallel=1)) for label, (_, make) in GRADERS.items()}
        each: dict[str, list[float]] = {label: [] for label in GRADERS}
        for label, (fn, _) in GRADERS.items():
            await fn(problems[0], str(problems[0].gold), ones[label])  # warm the page cache
        for _ in range(rounds):
            for p in problems:
                for label, (fn, _) in GRADERS.items():
                    started = time.monotonic()
                    assert await fn(p, str(p.gold), ones[label]), (label, p.id)
                    each[label].append(time.monotonic() - started)
        for label, (fn, make) in GRADERS.items():
            two = make(Sandbox(parallel=2))
            started = time.monotonic()
            for _ in range(rounds):
                ok = await asyncio.gather(*(fn(p, str(p.gold), two) for p in problems))
                assert all(ok), label
            rate = rounds * len(problems) / (time.monotonic() - started)
            mean = 1000 * statistics.mean(each[label])
            median = 1000 * statistics.median(each[label])
            print(
                f"{name:10} {label:25} mean {mean:6.1f}  median {median:6.1f}           {rate:6.1f}"
            )
    targets = [he[0], next(p for p in mbpp if p.id == "mbpp/11")]
    print(f"hostile candidates ({len(HOSTILE)} kinds x {[p.id for p in targets]}) graded correct:")
    for label, (fn, make) in GRADERS.items():
        box = make(Sandbox(Limits(timeout_s=2), parallel=2))
        jobs = [(p, name) for p in targets for name in HOSTILE]
        results = await asyncio.gather(
            *(fn(p, hostile(name, str(p.meta["entry_point"])), box) for p, name in jobs)
        )
        fooled = sorted({name for (_, name), ok in zip(jobs, results, strict=True) if ok})
        print(f"  {label:25} {sum(results)}/{len(jobs)}: {', '.join(fooled) or '-'}")
    # the isolated grader on the former mounts: what hiding the machine's files is for
    box = former_mounts(Sandbox(Limits(timeout_s=2), parallel=2))
    name = "read the expected values from files"
    results = await asyncio.gather(
        *(grade(p, hostile(name, str(p.meta["entry_point"])), box) for p in targets)
    )
    print(f"  isolated, former mounts   {sum(results)}/{len(targets)} for {name!r}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="?", choices=["throughput", "grading"], default="throughput")
    ap.add_argument("--programs", type=int, default=200)
    ap.add_argument("--problems", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.what == "grading":
        asyncio.run(grading(args.problems, args.rounds))
    else:
        asyncio.run(main(args.programs))
