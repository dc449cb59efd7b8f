"""A bounded cache of step verdicts: a process verifier asks about each prefix once."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from ponder.runtime.verifiers import Verdict


class StepCache:
    """Verdicts of scored step prefixes, keyed by (question, steps so far): a verifier asks
    about a prefix once. Only real scores are kept (a failed call may succeed next time); the
    oldest entries go first beyond `capacity`, so a long-running server stays bounded."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        # verdicts kept as (score, reason) tuples: the cyclic GC does not track those, and a
        # full cache holds a hundred thousand
        self._items: OrderedDict[tuple[str, tuple[str, ...]], tuple[float, str | None]] = (
            OrderedDict()
        )

    def get(self, question: str, steps: Sequence[str]) -> Verdict | None:
        key = (question, tuple(steps))
        kept = self._items.get(key)
        if kept is None:
            return None
        self._items.move_to_end(key)
        return Verdict(*kept)

    def put(self, question: str, steps: Sequence[str], verdict: Verdict) -> None:
        if verdict.score is None:
            return
        key = (question, tuple(steps))
        self._items[key] = (verdict.score, verdict.reason)
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
