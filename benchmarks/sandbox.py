"""Sandbox throughput: trivial programs per second through `Sandbox.run` (full isolation:
namespaces, mounts, rlimits, `nobody`), side by side with the same programs run as a plain
`python -I` subprocess with no isolation, both with as many in flight as there are cores.

    .venv/bin/python benchmarks/sandbox.py [--programs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from ponder.sandbox import Sandbox


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


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--programs", type=int, default=200)
    asyncio.run(main(ap.parse_args().programs))
