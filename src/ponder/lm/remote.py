"""Backends on Ray actors (the `[ray]` extra): joining a cluster with one-line errors, and a
LanguageModel whose calls run on an actor that holds a backend (a serving replica).

Ray is imported only here and in `ponder.bench.distributed`, and only when asked for: the
default install has no Ray, and asking for it without the extra is a one-line error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import Any

from ponder.errors import BackendError, TransientError, UsageError
from ponder.lm.config import BackendConfig
from ponder.lm.protocol import BACKENDS, Capabilities, Watch, probe_usage
from ponder.types import Generation, GenRequest, Message, ModelInfo, Usage

LOCAL = "local"  # `--ray` without an address: a Ray instance on this machine
RAY_EXTRA = "pip install 'ponder[ray]'"


def require_ray(what: str = "--ray") -> Any:
    """The `ray` module, or a one-line error naming the extra."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"{what} needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of a Ray address: HOST:PORT (the cluster's GCS, default port 6379) or
    ray://HOST:PORT (Ray Client, default 10001)."""
    rest, port = address, 6379
    if address.startswith("ray://"):
        rest, port = address.removeprefix("ray://"), 10001
    host, sep, digits = rest.rpartition(":")
    if not sep:
        host, digits = rest, str(port)
    host = host.strip("[]")
    if not host or not digits.isdigit() or "/" in host or " " in host:
        raise UsageError(
            f"--ray: '{address}' is not a Ray address (HOST:PORT, ray://HOST:PORT, or auto; "
            "give the task before --ray, e.g. `ponder bench gsm8k --ray`)"
        )
    return host, int(digits)


def connect(address: str | None = None, *, what: str = "--ray") -> Any:
    """Join the Ray cluster at `address` (None or "local": start one on this machine;
    "auto": the one `ray start` began here). An address nothing answers at is a one-line
    error at once, not Ray's minute of retries."""
    ray = require_ray(what)
    if ray.is_initialized():
        return ray
    local = address in (None, "", LOCAL)
    if not local and address != "auto":
        assert address is not None
        host, port = split_address(address)
        try:
            socket.create_connection((host, port), timeout=3.0).close()
        except OSError as e:
            reason = e.strerror or str(e) or type(e).__name__
            raise UsageError(
                f"{what} {address}: no Ray cluster answers there ({reason.lower()})"
            ) from None
    settings: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.ERROR,  # our own errors say what went wrong
        "log_to_driver": True,
    }
    if local:
        # a small object store: units and results are small, and this machine is shared
        settings["object_store_memory"] = 256 * 1024 * 1024
    try:
        ray.init(address=None if local else address, **settings)
    except Exception as e:  # ConnectionError, RuntimeError, …: Ray's own words, one line
        where = "a local Ray instance" if local else address
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"{what}: cannot join {where} ({first})") from None
    return ray


def worker_resources(config: BackendConfig, workers: int) -> tuple[BackendConfig, float]:
    """The backend each worker opens and the CPUs Ray reserves for it: an embedded model
    computes where it runs, so it gets its threads (by default this machine's cores shared
    among the workers); a server's client or a fake only waits, so it reserves none."""
    part = BACKENDS.get(config.backend_name())
    if "embedded" not in part.capabilities:
        return config, 0.0
    threads = config.threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    return config.model_copy(update={"threads": threads}), float(threads)


def check_room(ray: Any, cpus: float, workers: int) -> None:
    """Fail at once, not hang, when the cluster cannot place every worker."""
    if cpus <= 0:
        return
    free = float(ray.available_resources().get("CPU", 0.0))
    if free < cpus * workers:
        raise UsageError(
            f"--ray: {workers} workers × {cpus:g} threads need {cpus * workers:g} CPUs, but the "
            f"Ray cluster has {free:g} free (use fewer --workers or --threads)"
        )


def first_line(e: BaseException) -> str:
    """What an actor's failure says, in one line (Ray wraps it in pages of context)."""
    cause = getattr(e, "cause", None) or getattr(e, "error_msg", None) or e
    lines = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Traceback", "File ", "^"))]
    return (useful[-1] if useful else type(e).__name__)[:300]


class BackendActor:
    """A Ray actor holding one backend: its calls run in the actor's event loop."""

    def __init__(self, config: BackendConfig) -> None:
        from ponder.lm import open_backend

        self.lm = open_backend(config)

    def ping(self) -> int:
        return os.getpid()

    async def prepare(self) -> tuple[ModelInfo, Capabilities, Usage]:
        caps = await self.lm.prepare()
        return self.lm.info, caps, probe_usage(self.lm)

    async def generate(self, req: GenRequest) -> Generation:
        return await self.lm.generate(req)

    async def render(self, messages: list[Message]) -> str:
        return await self.lm.render(messages)

    async def aclose(self) -> None:
        await self.lm.aclose()


class RemoteLM:
    """A LanguageModel whose calls run on a Ray actor holding a backend. The actor's death
    is a TransientError naming it, which a replica router takes as "this replica is down"."""

    def __init__(self, actor: Any, name: str, config: BackendConfig) -> None:
        self.actor = actor
        self.name = name
        self.info = ModelInfo(name=config.model or name)
        self.capabilities = Capabilities(slots=config.slots, stream=False)
        self._prepared = False
        self._probe_usage = Usage()

    async def _call(self, method: str, *args: Any) -> Any:
        ray = require_ray()
        try:
            return await getattr(self.actor, method).remote(*args)
        except ray.exceptions.RayActorError as e:
            raise TransientError(f"{self.name} is gone ({first_line(e)})") from None
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if isinstance(e.cause, Exception) else None
            if isinstance(cause, BackendError):  # TransientError included: the backend's own
                raise cause from None
            raise BackendError(f"{self.name}: {first_line(e)}") from None

    async def ping(self) -> None:
        await self._call("ping")

    async def prepare(self) -> Capabilities:
        if not self._prepared:
            info, caps, spent = await self._call("prepare")
            self.info = info
            self._probe_usage += spent
            # a token stream's watch cannot cross processes: streams stay local
            self.capabilities = caps.model_copy(update={"stream": False})
            self._prepared = True
        return self.capabilities

    def take_probe_usage(self) -> Usage:
        """What the actor's backend spent preparing, not yet on a bill (SpendsToPrepare)."""
        spent, self._probe_usage = self._probe_usage, Usage()
        return spent

    async def generate(self, req: GenRequest) -> Generation:
        gen: Generation = await self._call("generate", req)
        return gen

    async def stream(self, req: GenRequest, watch: Watch) -> Generation:
        raise BackendError(f"{self.name}: no token streams from a Ray actor")

    async def render(self, messages: list[Message]) -> str:
        text: str = await self._call("render", messages)
        return text

    async def aclose(self) -> None:
        ray = require_ray()
        with contextlib.suppress(ray.exceptions.RayError):
            await self.actor.aclose.remote()
        ray.kill(self.actor)


def remote_replicas(
    config: BackendConfig, replicas: int, address: str | None = None
) -> list[RemoteLM]:
    """`replicas` Ray actors, each holding the backend `config` names."""
    ray = connect(address)
    config, cpus = worker_resources(config, replicas)
    check_room(ray, cpus, replicas)
    actor_class = ray.remote(BackendActor).options(num_cpus=cpus, max_concurrency=1000)
    return [
        RemoteLM(actor_class.remote(config), f"ray replica {i}", config) for i in range(replicas)
    ]
