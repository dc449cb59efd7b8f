"""Cache-aware placement of requests on a backend's slots (llama.cpp's parallel sequences).

llama.cpp keeps a prefix cache per slot and, in host memory, the prompts of slots that moved
on (`--cache-ram`). Left to itself, a saturated server gives each freed slot to whichever
request is queued next, so the children of a search node (which all extend that node's text)
land anywhere and prefill the whole path again; on two CPU cores prompt evaluation runs at
~150 tokens/s, so that re-prefill was most of step search's extra wall time. The router places
every single-sequence request itself, pinned to a slot (`id_slot`), by what `CacheModel`
predicts each slot would cost it:

    cost(slot) ← prompt characters to prefill there + ½ × characters it would overwrite unsaved
    free ← the cheapest free slot
    if the machine is saturated (at most `tolerate_idle` slots free) and the request is a
       sibling of the request on some busy slot (the same prompt: the same parent path)
       whose own cache will spare it ≥ min_gain characters over `free` (or over what host
       memory holds, when no slot is free), and nobody else waits for that slot:
                                                                    wait for that slot
    elif some slot is free:                                         take free
    else:                                                           wait for any slot

A freed slot goes first to the request waiting for it, then to those waiting for any slot
(oldest first, each deciding again), then to the waiting request that loses least by moving,
if that loss is under min_gain or free slots pile up. Waiting only while the machine is
saturated costs little: other requests keep the free slots busy, and on a CPU a short wait
costs less than a long prefill. Only a slot's own cache is worth waiting for (a prompt
restored from host memory can be restored on any slot), and only as a sibling: a cousin
would overwrite a path that goes on. What a waiter overwrites counts half (a sibling's
fresh step, needed again only if that sibling is kept). A request with n > 1 choices is left
to the backend to spread over its slots (one prefill shared by its choices): it takes n free
slots, and what they hold afterwards is unknown.

Work that could as well wait for a slot it already holds (the next sibling of a node whose
first child has a slot: step search writes siblings in turn there) asks `take_spare`: a slot
now only if nobody waits and more than `tolerate_idle` are free, so it spreads over an idle
machine and never takes a slot that another request would use.

The model is a prediction: a wrong guess costs a cache miss, never a wrong answer.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from ponder.lm.cache import CacheModel, common_prefix

# A sibling's prompt is the busy request's prompt (the same parent path) give or take a
# separator; anything that parts earlier is a cousin.
_SEPARATOR_SLACK = 16


@dataclass
class _Waiter:
    key: str | None  # the prompt (None: no affinity)
    n: int
    seq: int  # arrival order
    future: asyncio.Future[list[int]] = field(repr=False)
    want: int | None = None  # the busy slot it waits for; None: any free slot


class SlotRouter:
    def __init__(
        self,
        slots: int,
        *,
        min_gain: int = 128,
        tolerate_idle: int = 1,
        destroy_weight: float = 0.5,
    ) -> None:
        """`min_gain`: how many characters cheaper (~4 a token) a busy slot must be than the
        best free one for a request to wait for it. `tolerate_idle`: a request waits for
        its slot only while at most this many slots are free."""
        n = max(1, slots)
        self.cache = CacheModel(n)
        self.busy = [False] * n
        self.used = [0] * n  # when each slot was last given out (least recent goes first)
        self.min_gain = min_gain
        self.tolerate_idle = tolerate_idle
        self.destroy_weight = destroy_weight
        self.growth = 0.0  # running mean of how many characters a slot's text grows while held
        self.granted = [""] * n  # the prompt each slot was last given out for
        self._waiters: list[_Waiter] = []
        self._clock = itertools.count(1)
        # What placement achieved (diagnosis and tests): single-sequence requests placed,
        # and characters of their prompts the model predicted cached where they went.
        self.placed = 0
        self.reused_chars = 0

    # -- asking ------------------------------------------------------------------------
    async def acquire(self, key: str | None, n: int = 1) -> list[int]:
        """Slots for a request: one to pin it to (n = 1), or n to let the backend spread
        its choices over. Waits until they are free; cancellation gives them back."""
        n = min(n, len(self.busy))
        waiter = _Waiter(key, n, next(self._clock), asyncio.get_running_loop().create_future())
        # (a request for several slots waiting blocks every later one)
        if not any(w.n > 1 for w in self._waiters) and self._place(waiter):
            return waiter.future.result()
        self._waiters.append(waiter)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(waiter.future.result(), None)  # granted and cancelled at once
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
                self._dispatch()
            raise

    def take_spare(self, key: str) -> int | None:
        """A slot for `key` now if one is spare (free while nobody waits and the machine
        is not saturated), else None: for work that can as well wait for a slot it holds."""
        if self._waiters or self.free <= self.tolerate_idle:
            return None
        waiter = _Waiter(key, 1, next(self._clock), asyncio.get_running_loop().create_future())
        slot = self._best_free(waiter)
        assert slot is not None
        self._grant(waiter, [slot])
        return slot

    def release(self, slots: list[int], text: str | None) -> None:
        """The slots are free again; `text` is what a single slot now holds (its prompt and
        completion), None when unknown."""
        for i in slots:
            self.busy[i] = False
            if text is not None and len(slots) == 1:
                # how much a slot's text grows while it is held (a step and its judgement)
                grown = len(text) - len(self.granted[i])
                self.growth += (max(0, grown) - self.growth) / 16
            self.cache.texts[i] = text if text is not None and len(slots) == 1 else ""
        self._dispatch()

    def holding(self, slot: int, key: str) -> None:
        """A held slot (a lease) gets its next prompt: the model follows it there."""
        self.cache.place(key, slot)

    @property
    def free(self) -> int:
        return self.busy.count(False)

    # -- placing -----------------------------------------------------------------------
    def _cost(self, waiter: _Waiter, slot: int) -> float:
        if not waiter.key:
            return 0.0
        out = self.cache.outcome(waiter.key, slot)
        return len(waiter.key) - out.reused + self.destroy_weight * out.destroyed

    def _own_cost(self, waiter: _Waiter, slot: int) -> float:
        """The cost of waiting for a busy slot, counting only what its own cache will hold:
        worth it for a sibling of the request there (the same prompt: the same parent
        path), which then overwrites what that request writes meanwhile (a step and its
        judgement, as long as requests typically write) unless llama.cpp saves it."""
        assert waiter.key is not None
        granted = self.granted[slot]
        shared = common_prefix(waiter.key, granted)
        if shared + _SEPARATOR_SLACK < len(granted):
            # a cousin (it parts from the busy request's prompt): waiting would overwrite a
            # path that goes on, and the one it waits for has already lost its own path
            return float(len(waiter.key))
        held = len(granted) + self.growth
        if shared * 2 < held:  # it would be saved and something loaded instead
            return float(len(waiter.key))
        return len(waiter.key) - shared + self.destroy_weight * (held - shared)

    def _best_free(self, waiter: _Waiter) -> int | None:
        free = [i for i, busy in enumerate(self.busy) if not busy]
        if not free:
            return None
        # the cheapest; among equals the least recently used (its text is least likely needed)
        return min(free, key=lambda i: (self._cost(waiter, i), self.used[i]))

    def _grant(self, waiter: _Waiter, slots: list[int]) -> None:
        tick = next(self._clock)
        for i in slots:
            self.busy[i], self.used[i] = True, tick
            self.granted[i] = (waiter.key or "") if waiter.n == 1 else ""
        if waiter.n == 1 and waiter.key is not None:
            self.placed += 1
            self.reused_chars += self.cache.place(waiter.key, slots[0])
        else:
            for i in slots:
                self.cache.texts[i] = ""
        waiter.future.set_result(slots)

    def _place(self, waiter: _Waiter) -> bool:
        """Grant the waiter now if the policy says so; else decide what it waits for."""
        if waiter.n > 1:
            free = sorted((i for i, b in enumerate(self.busy) if not b), key=self.used.__getitem__)
            if len(free) < waiter.n:
                return False
            self._grant(waiter, free[: waiter.n])
            return True
        idle = self._best_free(waiter)
        if waiter.key and self.free <= self.tolerate_idle:
            # Only what a busy slot holds in its own cache is worth waiting for: a prompt
            # restored from host memory can be restored on any slot that frees.
            key = waiter.key
            own = {i: self._own_cost(waiter, i) for i, busy in enumerate(self.busy) if busy}
            taken = {w.want for w in self._waiters if w is not waiter}
            if own:
                best = min(own, key=lambda i: (own[i], i))
                other = (
                    self._cost(waiter, idle)
                    if idle is not None
                    else len(key) - self.cache.from_memory(key)
                )
                if other - own[best] >= self.min_gain and best not in taken:
                    waiter.want = best
                    return False
        if idle is None:
            waiter.want = None
            return False
        self._grant(waiter, [idle])
        return True

    def _dispatch(self) -> None:
        """Hand out free slots: a request waiting for a slot that is now free gets it; then
        those waiting for any slot decide again, oldest first (a slot another request has
        just taken may now hold their prefix: a sibling took the parent's saved prompt);
        then, when free slots pile up, the waiter that loses least by moving gets its best
        free one. A waiting request for n > 1 slots goes before every later one."""
        while self._waiters and self.free:
            multi = next((w for w in self._waiters if w.n > 1), None)
            if multi is not None and self._place(multi):
                self._waiters.remove(multi)
                continue
            singles = [
                w for w in self._waiters if w.n == 1 and (multi is None or w.seq < multi.seq)
            ]
            pick = next((w for w in singles if w.want is not None and not self.busy[w.want]), None)
            if pick is not None and pick.want is not None:
                self._waiters.remove(pick)
                self._grant(pick, [pick.want])
                continue
            placed = next((w for w in singles if w.want is None and self._place(w)), None)
            if placed is not None:
                self._waiters.remove(placed)
                continue
            if not singles:
                return
            pick = min(singles, key=lambda w: (self._loss(w), w.seq))
            slot = self._best_free(pick)
            # a waiter moves when moving is cheap, or when free slots pile up
            cheap = self._loss(pick) < self.min_gain
            if slot is None or not (cheap or self.free > self.tolerate_idle):
                return
            self._waiters.remove(pick)
            self._grant(pick, [slot])

    def _loss(self, waiter: _Waiter) -> float:
        """How much more the best free slot costs a waiter than the slot it waits for (as
        it judged that slot when it chose to wait)."""
        free = self._best_free(waiter)
        if free is None or waiter.want is None:
            return 0.0
        return self._cost(waiter, free) - self._own_cost(waiter, waiter.want)
