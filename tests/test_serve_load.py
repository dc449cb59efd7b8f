"""A bounded loopback load: 200 concurrent streaming requests, all well formed and complete."""

from __future__ import annotations

import asyncio

from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.serve import create_app
from serving import load, percentile, running
from test_serve import MODEL, ask, reply


def test_200_concurrent_streams_are_all_complete_and_well_formed() -> None:
    # 10 ms per backend call, 8 slots: the requests really queue behind each other
    lm = ScriptedLM(reply, capabilities=Capabilities(slots=8, raw_prefix=True), latency_s=0.01)
    engine = Engine(lm, scheduler=Scheduler())
    with running(create_app(engine)) as url:
        body = {"model": f"vote-4/{MODEL}", "messages": ask(), "stream": True, "seed": 1}
        checks = asyncio.run(load(url, 200, body))
    assert [c.status for c in checks] == [200] * 200
    assert [c.problems for c in checks if c.problems] == []
    assert len(lm.calls) == 800  # 4 samples each (fanned out: stop strings), none lost
    # every stream opened before its work was done (the first chunk is not the last)
    assert all(c.first_chunk_s <= c.seconds for c in checks)
    print(
        f"200 streams: p50 {percentile([c.seconds for c in checks], 0.5):.3f} s, "
        f"p99 {percentile([c.seconds for c in checks], 0.99):.3f} s"
    )
