"""Process-wide settings for ponder's own commands (never applied by the library itself).

CPython's cyclic GC runs a young-generation pass every 700 container allocations and a full
pass over every live object as the heap grows by a quarter. A process holding a thousand
searches in flight (trees, tasks, frames) spends a large share of its time in those passes
(benchmarks/RESULTS.md: 1,000 beam searches, ~50% of the run with the default settings). The
commands freeze what start-up built (modules, schemas: never garbage) out of every pass and
collect the young generation less often. The young count is allocations net of frees, so only
a growing heap or cyclic garbage reaches it; ponder makes next to no cycles (that run left
none to collect), so floating garbage stays small while passes over the growing heap of live
searches become rare: its GC time fell from 2.0 s at a 20,000 threshold to 0.8 s at 500,000,
peak memory unchanged.

A server is different: every call to an upstream server leaves a cycle of httpx's own (a
response and its stream refer to each other: about 40 objects a call, measured), which only
a collection frees. At 500,000 that floating garbage grew `ponder serve --upstream` by about
14 KB a request until the first young pass, so the server collects the young generation
every `SERVING_YOUNG_THRESHOLD` net allocations (a few hundred calls' garbage) instead.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 500_000
SERVING_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Freeze the heap built so far out of collection and collect the young generation every
    `YOUNG_THRESHOLD` net allocations instead of 700 (the older generations' ratios unchanged)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def tune_gc_for_serving() -> None:
    """A server's young-generation threshold (after `tune_gc`: the start-up heap stays
    frozen), so its requests' cyclic garbage is freed as it goes."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(SERVING_YOUNG_THRESHOLD, middle, old)
