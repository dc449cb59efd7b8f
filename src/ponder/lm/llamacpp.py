"""The embedded default backend: llama.cpp's server engine in-process via xllamacpp.

Parallel slots with continuous batching; calls block in C++ with the GIL released, so each runs
on a worker thread and up to `slots` decode together. Token counts come from each choice's own
logprobs (always requested; they cost almost nothing) because xllamacpp's `usage` counts one
choice when n > 1; a choice cut by a stop string gets back the stop string's tokens, which
llama.cpp trims from the logprobs (stop strings are tokenized once by llama.cpp itself).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from ponder.env import env_flag
from ponder.errors import BackendError, ModelError, TransientError, UsageError
from ponder.lm.config import BackendConfig
from ponder.lm.protocol import Capabilities, LanguageModel, Progress, Watch, backend
from ponder.lm.registry import DEFAULT_MODEL, Registry
from ponder.lm.wire import (
    LLAMACPP_DECODED_AFTER_CLOSE,
    Calls,
    parse_generation,
    request_body,
    stream_choice,
)
from ponder.types import Generation, GenRequest, Message, ModelInfo


@backend(
    "llamacpp",
    summary="the embedded model: llama.cpp in-process on the CPU (a registered name or .gguf)",
    capabilities={"embedded"},
)
def open_llamacpp(config: BackendConfig, progress: Progress | None = None) -> LanguageModel:
    config.without_options()
    config.without_server()
    check_context(config.slots, config.ctx_size)
    path, info = Registry().resolve(config.model or DEFAULT_MODEL, progress)
    return LlamaCppLM(
        path,
        config.priced(info),
        slots=config.slots,
        ctx_per_slot=config.ctx_size,
        threads=config.threads,
        cancellable=config.cancellable,
        # PONDER_PIN_SLOTS=0 leaves placing requests on slots to llama.cpp (to compare)
        pin_slots=env_flag("PONDER_PIN_SLOTS", True),
    )


# llama.cpp runs at most this many sequences at once (LLAMA_MAX_SEQ; 257 fails to init), and
# keeps its whole context (slots × per slot) in an int32.
MAX_SLOTS = 256
MAX_CONTEXT = 2**31 - 1


def check_context(slots: int, ctx_size: int) -> None:
    """A usage error naming --slots / --ctx-size where llama.cpp could not take them (it says
    only "failed to init server", or aborts the process)."""
    if slots > MAX_SLOTS:
        raise UsageError(f"--slots {slots}: llama.cpp runs at most {MAX_SLOTS} sequences at once")
    if slots * ctx_size > MAX_CONTEXT:
        raise UsageError(
            f"--slots {slots} × --ctx-size {ctx_size} = {slots * ctx_size:,} context tokens: "
            f"llama.cpp holds at most {MAX_CONTEXT:,}"
        )


class LlamaCppLM:
    def __init__(
        self,
        path: Path,
        info: ModelInfo,
        *,
        slots: int = 8,
        ctx_per_slot: int = 2048,
        threads: int | None = None,
        warmup: bool = True,
        cancellable: bool = False,
        pin_slots: bool = True,
    ) -> None:
        """`cancellable`: requests go through llama.cpp's own loopback HTTP endpoint, so a
        cancelled call closes its connection and llama.cpp stops that generation and frees the
        slot (a server's disconnected client); in-process calls cannot be stopped midway.
        `pin_slots`: the scheduler places each request on a slot by what the slot caches
        (ponder.slots); False leaves the choice to llama.cpp."""
        try:
            import xllamacpp as xlc
        except ImportError as e:  # pragma: no cover - depends on the machine
            raise ModelError(
                f"cannot import xllamacpp ({e}); on Debian install libgomp1 "
                "(apt-get install libgomp1)"
            ) from e
        params = xlc.CommonParams()
        params.model.path = str(path)
        params.n_parallel = slots
        params.n_ctx = slots * ctx_per_slot  # shared by all slots
        n_threads = threads or max(1, os.cpu_count() or 1)
        params.cpuparams.n_threads = n_threads
        params.cpuparams_batch.n_threads = n_threads
        params.cont_batching = True
        params.endpoint_metrics = True
        params.verbosity = -1
        params.warmup = False  # ours below warms the real request path once
        self.path = path
        self.info = info
        self.cancellable = cancellable
        self._http: httpx.AsyncClient | None = None
        self._calls: Calls | None = None
        self.capabilities = Capabilities(
            n=True,
            logprobs=True,
            raw_prefix=True,
            context_length=ctx_per_slot,
            slots=slots,
            n_with_stop=True,
            pin_slots=pin_slots,
            stream=True,
            continuation="apply-template",
        )
        try:
            self._server = xlc.Server(params)
        except Exception as e:
            raise ModelError(f"llama.cpp could not load {path}: {e}") from e
        # Threads only wait on llama.cpp (GIL released); more threads than slots lets its own
        # queue hold the next sequences so freed slots refill at once.
        self._stop_tokens: dict[str, int] = {}
        self._rendered: dict[tuple[tuple[str, str], ...], str] = {}
        self._pool = ThreadPoolExecutor(max_workers=4 * slots, thread_name_prefix="llamacpp")
        if warmup:
            self._call({"prompt": "Hi", "max_tokens": 1, "temperature": 0.0}, chat=False)

    @property
    def http_url(self) -> str:
        """llama.cpp's own OpenAI-compatible HTTP endpoint for this model, on 127.0.0.1."""
        return str(self._server.listening_address)

    def metrics(self) -> dict[str, float]:
        """The server's Prometheus counters: the ground truth for tokens processed."""
        out: dict[str, float] = {}
        for line in str(self._server.handle_metrics()).splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name.removeprefix("llamacpp:")] = float(value)
        return out

    def stop_tokens(self, stop: str) -> int:
        """How many tokens llama.cpp trims from a choice's logprobs when `stop` cuts it: the
        stop string's own token count."""
        if stop not in self._stop_tokens:
            resp = httpx.post(
                f"{self.http_url}/tokenize",
                json={"content": stop, "add_special": False},
                timeout=30.0,
            )
            resp.raise_for_status()
            self._stop_tokens[stop] = len(resp.json()["tokens"])
        return self._stop_tokens[stop]

    async def count_tokens(self, text: str) -> int:
        """`text`'s tokens by the model's own tokenizer (llama.cpp's /tokenize, as for stop
        strings; `CountsTokens`)."""
        try:
            calls = self._client()
            with calls.call() as extensions:  # (a request cancelled midway: its client left)
                resp = await calls.client.post(
                    "/tokenize", json={"content": text, "add_special": False}, extensions=extensions
                )
            resp.raise_for_status()
            return len(resp.json()["tokens"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            raise TransientError(f"llamacpp:{self.path.name}: /tokenize failed: {e}") from e

    async def render(self, messages: list[Message]) -> str:
        """The model's chat template applied to `messages`, ending where the assistant's reply
        begins: a raw prompt that later requests can extend (and hit the prefix cache)."""
        key = tuple((m.role, m.content) for m in messages)
        if key not in self._rendered:
            async with httpx.AsyncClient(timeout=30.0) as client:
                resp = await client.post(
                    f"{self.http_url}/apply-template",
                    json={"messages": [m.model_dump() for m in messages]},
                )
            resp.raise_for_status()
            self._rendered[key] = str(resp.json()["prompt"])
        return self._rendered[key]

    def _call(self, body: dict[str, Any], *, chat: bool) -> dict[str, Any]:
        handler = self._server.handle_chat_completions if chat else self._server.handle_completions
        result: dict[str, Any] = handler(body)
        return result

    async def prepare(self) -> Capabilities:
        return self.capabilities

    async def generate(self, req: GenRequest) -> Generation:
        if not self.capabilities.native_n(req):
            raise BackendError(f"llamacpp:{self.path.name}: n={req.n} here must be fanned out")
        chat = req.messages is not None
        # logprobs only where read: asked for, or counting each of n choices (one choice is
        # counted by llama.cpp's own `usage`)
        logprobs = req.top_logprobs > 0 or req.n > 1
        body = request_body(req, chat=chat, n=req.n, logprobs=logprobs)
        if req.slot is not None:
            body["id_slot"] = req.slot  # placed by the scheduler where its prefix is cached
        loop = asyncio.get_running_loop()
        if self.cancellable:
            data = await self._post(body, chat=chat)
        else:
            data = await loop.run_in_executor(self._pool, lambda: self._call(body, chat=chat))
        stop_tokens = 0
        if req.n > 1 and req.stop:
            stop = req.stop[0]
            if stop in self._stop_tokens:
                stop_tokens = self.stop_tokens(stop)  # cached: no I/O, no thread hop
            else:
                stop_tokens = await loop.run_in_executor(self._pool, self.stop_tokens, stop)
        return parse_generation(
            data,
            where=f"llamacpp:{self.path.name}",
            want_logprobs=req.top_logprobs > 0,
            # A single choice's `usage` is llama.cpp's own count; with n > 1 it counts one
            # choice, so each counts its own logprobs (plus the stop string's, when cut).
            count_from_logprobs=req.n > 1,
            stop_tokens=stop_tokens,
            max_tokens=req.max_tokens,
        )

    async def stream(self, req: GenRequest, watch: Watch) -> Generation:
        """One choice streamed from llama.cpp's own HTTP endpoint (in-process calls cannot be
        stopped midway): `watch` sees each token with its log-probabilities, and a stop closes
        the connection, which stops the generation and frees the slot."""
        if req.n != 1:
            raise BackendError(f"llamacpp:{self.path.name}: a stream has one choice (n={req.n})")
        chat = req.messages is not None
        body = request_body(req, chat=chat, n=1, logprobs=True)
        body["timings_per_token"] = True  # prompt, cached and written tokens as they go
        if req.slot is not None:
            body["id_slot"] = req.slot
        choice, stopped = await stream_choice(
            self._client(),
            "/v1/chat/completions" if chat else "/v1/completions",
            body,
            where=f"llamacpp:{self.path.name}",
            watch=watch,
        )
        return Generation(
            choices=[
                choice.completion(
                    stopped=stopped,
                    want_logprobs=req.top_logprobs > 0,
                    decoded_after_close=LLAMACPP_DECODED_AFTER_CLOSE,
                    max_tokens=req.max_tokens,
                )
            ],
            prompt_tokens=choice.prompt_tokens or 0,
            cached_tokens=choice.cached_tokens,
        )

    def _client(self) -> Calls:
        """The loopback HTTP client, with its calls in flight tracked (what a cancelled
        call leaves in the pool is released: `Calls`)."""
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self.http_url, timeout=None)
            self._calls = Calls(self._http)
        assert self._calls is not None
        return self._calls

    async def _post(self, body: dict[str, Any], *, chat: bool) -> dict[str, Any]:
        calls = self._client()
        path = "/v1/chat/completions" if chat else "/v1/completions"
        try:
            with calls.call() as extensions:
                resp = await calls.client.post(path, json=body, extensions=extensions)
            data: dict[str, Any] = resp.json()
        except (httpx.HTTPError, ValueError) as e:
            raise TransientError(
                f"llamacpp:{self.path.name} over HTTP: {e}",
                failure="bad_response"
                if isinstance(e, ValueError)
                else "timeout"
                if isinstance(e, httpx.TimeoutException)
                else "unavailable",
            ) from e
        return data

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        server = getattr(self, "_server", None)
        if server is not None:
            del self._server
