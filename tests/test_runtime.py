"""ponder's commands tune the process's GC; the library itself never does."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
import ponder, ponder.cli, ponder.runtime.settings
before = gc.get_threshold()
assert gc.get_freeze_count() == 0
ponder.runtime.settings.tune_gc()
after = gc.get_threshold()
print(before[0], after[0], after[1:] == before[1:], gc.get_freeze_count() > 0)
"""


def test_tune_gc_freezes_start_up_and_collects_the_young_generation_less_often() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    from ponder.runtime.settings import YOUNG_THRESHOLD

    # importing ponder (and its CLI module) left the defaults alone; tune_gc changed them
    assert out == ["700", str(YOUNG_THRESHOLD), "True", "True"]
