"""Process-wide settings for ponder's own commands (never applied by the library itself).

CPython's cyclic GC runs a young-generation pass every 700 container allocations and a full
pass over every live object as the heap grows by a quarter. A process holding a thousand
searches in flight (trees, tasks, frames) spends a large share of its time in those passes
(measured in benchmarks/RESULTS.md: 1,000 beam searches, ~40% with the default settings). The
commands freeze what start-up built (modules, schemas: never garbage) out of every pass and
collect the young generation less often; cycles are rare in ponder, so memory barely moves.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Freeze the heap built so far out of collection and collect the young generation every
    `YOUNG_THRESHOLD` allocations instead of 700 (the older generations' ratios unchanged)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
