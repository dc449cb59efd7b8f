"""Several backends serving one model as one: requests routed by prefix affinity, with
health checks and failover (`ponder serve --upstream URL --upstream URL …`, or Ray actors).

- **Prefix affinity.** A request's affinity key is what its prompt begins with that the
  backend's prefix cache can reuse: a conversation's system prompt and first question (every
  sample, judge and step of a question shares them), a raw prompt's rendered conversation (a
  step search continues text this router rendered). A key stays with the replica that had it
  while that replica has room (fewer sequences in flight than twice its slots: its own queue
  refills a freed slot at once), and while it is full too (a wait there is cheaper than the
  whole prompt again elsewhere) unless the key alone fills it (a hot question) and another
  replica has nothing in flight: the key then spills there, and has both. A new key, or one
  whose replicas are down, goes to the healthy replica with the fewest in flight per slot.
- **Health.** A replica that cannot be prepared at start-up is down, with a warning naming it;
  every `check_every` seconds each replica is checked (a down one that answers is prepared
  and comes back). A request that fails transiently has its replica checked at once: if the
  replica is down, the request runs again on another (failover); if not, the error goes to
  the scheduler, which retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import httpx

from ponder.errors import BackendError, TransientError
from ponder.lm.protocol import Capabilities, LanguageModel, Watch, probe_usage
from ponder.types import Generation, GenRequest, Message, ModelInfo, Usage

log = logging.getLogger("ponder.replicas")
Check = Callable[[], Awaitable[None]]  # raises when the replica does not answer
Routing = Literal["affinity", "round-robin"]


def http_check(base_url: str, api_key: str | None = None, timeout: float = 3.0) -> Check:
    """A server's health: its model list answers."""

    async def check() -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        async with httpx.AsyncClient(timeout=timeout) as client:
            resp = await client.get(f"{base_url.rstrip('/')}/models", headers=headers)
        if resp.status_code >= 500:
            raise TransientError(f"{base_url}: HTTP {resp.status_code}")

    return check


@dataclass
class Replica:
    name: str
    lm: LanguageModel
    check: Check
    up: bool = False
    in_flight: int = 0  # sequences
    requests: int = 0  # requests it ran
    reason: str = ""  # why it is down

    def room(self) -> bool:
        """Fewer in flight than its slots can run with its own queue refilling them."""
        return self.in_flight < 2 * max(1, self.lm.capabilities.slots)

    def idle(self) -> bool:
        """Nothing in flight."""
        return self.in_flight == 0

    def load(self) -> float:
        return self.in_flight / max(1, self.lm.capabilities.slots)


@dataclass
class _Keys:
    """Affinity keys → the replicas that have the key's prefix (the first one it went to, then
    any it spilled to), most recently used keys last, bounded."""

    limit: int = 65536
    of: OrderedDict[str, list[int]] = field(default_factory=OrderedDict)

    def get(self, key: str) -> list[int]:
        got = self.of.get(key)
        if got is None:
            return []
        self.of.move_to_end(key)
        return got

    def add(self, key: str, index: int) -> None:
        held = self.of.setdefault(key, [])
        if index not in held:
            held.append(index)
        self.of.move_to_end(key)
        while len(self.of) > self.limit:
            self.of.popitem(last=False)


class ReplicaLM:
    """One LanguageModel over several replicas of the same model."""

    def __init__(
        self,
        replicas: Sequence[Replica],
        *,
        routing: Routing = "affinity",
        check_every: float = 5.0,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if not replicas:
            raise BackendError("no replicas to serve from")
        self.replicas = list(replicas)
        self.routing = routing
        self.check_every = check_every
        self._warn = warn or log.warning
        first = self.replicas[0].lm
        self.info: ModelInfo = first.info
        self.capabilities = self._combined(first.capabilities)
        self._keys = _Keys()
        self._rendered: OrderedDict[str, str] = OrderedDict()  # rendered text → its key
        self._turn = 0
        self.spilled = 0  # requests sent away from their key's full replica
        self._hot: dict[str, int] = {}  # sequences in flight per key
        self._prepared = False
        self._lock = asyncio.Lock()
        self._health: asyncio.Task[None] | None = None

    def _combined(self, one: Capabilities) -> Capabilities:
        """What one replica can do, with every replica's slots: requests are placed on
        replicas here, not on slots (each replica's own server places them on its slots)."""
        slots = sum(max(1, r.lm.capabilities.slots) for r in self.replicas)
        return one.model_copy(update={"slots": slots, "pin_slots": False})

    def take_probe_usage(self) -> Usage:
        """What the replicas' probes spent that no bill carries yet (SpendsToPrepare)."""
        return Usage.total_of(probe_usage(r.lm) for r in self.replicas)

    # -- start-up and health -------------------------------------------------------------
    async def prepare(self) -> Capabilities:
        async with self._lock:
            if self._prepared:
                return self.capabilities
            await asyncio.gather(*(self._bring_up(r, at_start=True) for r in self.replicas))
            up = [r for r in self.replicas if r.up]
            if not up:
                raise BackendError(
                    "no replica is up: " + "; ".join(f"{r.name}: {r.reason}" for r in self.replicas)
                )
            self.info = up[0].lm.info
            self.capabilities = self._combined(up[0].lm.capabilities)
            self._prepared = True
            if self.check_every > 0 and self._health is None:
                self._health = asyncio.create_task(self._watch())
            return self.capabilities

    async def _bring_up(self, r: Replica, *, at_start: bool = False) -> None:
        try:
            await r.check()
            await r.lm.prepare()
        except Exception as e:  # any failure: this replica is down, the others serve
            r.up, r.reason = False, one_line(e)
            if at_start:
                self._warn(
                    f"replica {r.name} is down at start ({r.reason}); serving from the others "
                    f"and checking it every {self.check_every:g} s"
                )
            return
        if not r.up and not at_start:
            self._warn(f"replica {r.name} is back")
        r.up, r.reason = True, ""

    async def _down(self, r: Replica, e: BaseException) -> None:
        if r.up:
            r.up, r.reason = False, one_line(e)
            self._warn(f"replica {r.name} is down ({r.reason}); its requests go to the others")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.check_every)
            await asyncio.gather(*(self._check(r) for r in self.replicas))

    async def _check(self, r: Replica) -> None:
        if not r.up:
            await self._bring_up(r)
            return
        try:
            await r.check()
        except Exception as e:
            await self._down(r, e)

    async def _is_down(self, r: Replica) -> bool:
        """Check `r` now (after a failed request)."""
        try:
            await r.check()
        except Exception as e:
            await self._down(r, e)
            return True
        return False

    # -- routing -------------------------------------------------------------------------
    def key(self, req: GenRequest) -> str:
        """What the request's prompt begins with that a replica's prefix cache can reuse."""
        if req.messages is not None:
            head: list[Message] = []
            for m in req.messages:
                head.append(m)
                if m.role == "user":
                    break
            return "\x00".join(f"{m.role}:{m.content}" for m in head)
        assert req.prompt is not None
        best = ""
        for rendered in self._rendered:
            if len(rendered) > len(best) and req.prompt.startswith(rendered):
                best = rendered
        return self._rendered[best] if best else req.prompt

    def _pick(self, key: str, exclude: set[int]) -> Replica:
        up = [i for i, r in enumerate(self.replicas) if r.up and i not in exclude]
        if not up:
            raise TransientError(
                "every replica is down: "
                + "; ".join(f"{r.name}: {r.reason or 'failed'}" for r in self.replicas)
            )
        if self.routing == "round-robin":
            self._turn += 1
            return self.replicas[up[self._turn % len(up)]]
        spread = zlib.crc32(key.encode())  # ties broken the same way for the same key

        def least(among: list[int]) -> int:
            return min(among, key=lambda i: (self.replicas[i].load(), (i + spread) % len(up)))

        held = [i for i in self._keys.get(key) if i in up]
        if held:
            roomy = [i for i in held if self.replicas[i].room()]
            if roomy:
                return self.replicas[least(roomy)]
            # full replicas still take their key's requests: queueing there costs a wait,
            # going elsewhere the whole prompt again; unless the key alone fills them (a hot
            # question) and another replica is doing nothing
            room = sum(2 * max(1, self.replicas[i].lm.capabilities.slots) for i in held)
            idle = [i for i in up if i not in held and self.replicas[i].idle()]
            if not idle or self._hot.get(key, 0) < room:
                return self.replicas[least(held)]
            self.spilled += 1
            best = least(idle)
        else:
            best = least(up)  # a new key (or its replicas are down)
        self._keys.add(key, best)
        return self.replicas[best]

    async def _on_replica(
        self, req: GenRequest, call: Callable[[Replica], Awaitable[Generation]]
    ) -> Generation:
        if not self._prepared:
            await self.prepare()
        key, tried = self.key(req), set[int]()
        while True:
            r = self._pick(key, tried)
            r.in_flight += req.n
            r.requests += 1
            self._hot[key] = self._hot.get(key, 0) + req.n
            try:
                return await call(r)
            except TransientError as e:
                if not await self._is_down(r):
                    raise  # the replica is up: the scheduler retries
                tried.add(self.replicas.index(r))
                log.info("request failed over from %s: %s", r.name, e)
            finally:
                r.in_flight -= req.n
                self._hot[key] -= req.n
                if not self._hot[key]:
                    del self._hot[key]

    # -- LanguageModel -------------------------------------------------------------------
    async def generate(self, req: GenRequest) -> Generation:
        return await self._on_replica(req, lambda r: r.lm.generate(req))

    async def stream(self, req: GenRequest, watch: Watch) -> Generation:
        return await self._on_replica(req, lambda r: r.lm.stream(req, watch))

    async def render(self, messages: list[Message]) -> str:
        probe = GenRequest(messages=messages)
        key = self.key(probe)
        if not self._prepared:
            await self.prepare()
        up = [r for r in self.replicas if r.up]
        if not up:
            raise TransientError("every replica is down")
        text = await self._pick(key, set()).lm.render(messages)
        self._rendered[text] = key
        while len(self._rendered) > 4096:
            self._rendered.popitem(last=False)
        return text

    def stats(self) -> list[dict[str, object]]:
        """Each replica: whether it is up, its requests, what it has in flight."""
        out: list[dict[str, object]] = []
        for r in self.replicas:
            row: dict[str, object] = {"name": r.name, "up": r.up, "requests": r.requests}
            row["in_flight"] = r.in_flight
            if not r.up:
                row["down"] = r.reason
            out.append(row)
        return out

    async def aclose(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
            self._health = None
        for r in self.replicas:
            with contextlib.suppress(Exception):
                await r.lm.aclose()


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:300]
