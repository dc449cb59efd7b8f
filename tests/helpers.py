"""Shared test helpers: scripted engines."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from ponder.engine import Engine
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ReplyFn, ScriptedLM
from ponder.scheduler import Scheduler


async def no_sleep(_: float) -> None:
    return None


def scripted_engine(
    replies: Sequence[str] | ReplyFn,
    *,
    slots: int = 8,
    native_n: bool = True,
    n_with_stop: bool = True,
    **kw: object,
) -> tuple[Engine, ScriptedLM]:
    caps = Capabilities(slots=slots, n=native_n, n_with_stop=n_with_stop)
    lm = ScriptedLM(replies, capabilities=caps, **kw)  # type: ignore[arg-type]
    return Engine(lm, scheduler=Scheduler(sleep=no_sleep)), lm


def run_ponder(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The `ponder` command line in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "ponder", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
