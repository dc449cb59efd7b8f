"""A deterministic fake backend for tests: replies from a script or a function.

Replies are a pure function of (request, choice index, seed), so a seeded run is bit-for-bit
repeatable whatever order calls complete in. Latency and failures are configurable.

With `prefix_cache`, it also plays llama.cpp's slots: each slot remembers the text it last
held and a request's prompt tokens found there are reported as cached. A request pinned to a
slot (`GenRequest.slot`, with `Capabilities.pin_slots`) runs there; others are placed as
llama.cpp places them: the free slot sharing the longest prefix if that is over a tenth of
the prompt, else the least recently used free slot, else the first to be freed.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import re
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ponder.errors import BackendError, TransientError, UsageError, problems
from ponder.lm.cache import CacheModel, common_prefix, prompt_key
from ponder.lm.config import BackendConfig
from ponder.lm.protocol import Capabilities, LanguageModel, Progress, Watch, backend
from ponder.types import Completion, Generation, GenRequest, Message, ModelInfo, TokenLogprob

ReplyFn = Callable[[GenRequest, int, random.Random], str]
# The first token's top alternatives {token: logprob}, for judges that read P(Yes).
LogprobFn = Callable[[GenRequest, int, random.Random], dict[str, float]]
FailFn = Callable[[int, GenRequest], Exception | None]
# Every token's top alternatives {token: logprob}: (request, choice index, position, token).
TokenLogprobFn = Callable[[GenRequest, int, int, str], dict[str, float]]

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """The scripted tokenizer: words and punctuation marks. Never more than the UTF-8 bytes."""
    return len(_TOKEN.findall(text))


def _pieces(text: str) -> list[str]:
    """The scripted tokens as a server sends them: each with the white space before it, so
    they add up to the text."""
    out, end = [], 0
    for match in _TOKEN.finditer(text):
        out.append(text[end : match.end()])
        end = match.end()
    return out


def _truncate(text: str, max_tokens: int) -> tuple[str, bool]:
    matches = list(_TOKEN.finditer(text))
    if len(matches) <= max_tokens:
        return text, False
    return text[: matches[max_tokens - 1].end()], True


class ScriptedLM:
    """Replies come from `replies`: a list (cycled through by choice index) or a function
    `(request, choice_index, rng) -> text`. `fail(call_number, request)` may return an exception
    to raise for that call (call numbers start at 0)."""

    def __init__(
        self,
        replies: Sequence[str] | ReplyFn,
        *,
        name: str = "scripted",
        latency_s: float = 0.0,
        fail: FailFn | None = None,
        capabilities: Capabilities | None = None,
        parameters: int = 1_000_000,
        logprobs: LogprobFn | None = None,
        prefix_cache: bool = False,
        decode_s: float = 0.0,
        prefill_s: float = 0.0,
        token_logprobs: TokenLogprobFn | None = None,
    ) -> None:
        """`logprobs` gives the first token's alternatives (a judge's P(Yes));
        `token_logprobs` every token's (confidence signals; token streams)."""
        self._replies = replies
        self._logprobs = logprobs
        self._token_logprobs = token_logprobs
        self._latency_s = latency_s
        # simulated compute: seconds per token written, per prompt token not found cached
        self._decode_s, self._prefill_s = decode_s, prefill_s
        self._fail = fail
        self.capabilities = capabilities or Capabilities(slots=8, n_with_stop=True)
        self.info = ModelInfo(name=name, parameters=parameters)
        self.calls: list[GenRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0  # calls whose caller gave up while they ran (a client went away)
        self.streamed = 0  # tokens written by streams (a stopped one writes no more)
        self.stopped = 0  # streams stopped by their watch
        slots = self.capabilities.slots
        self.cache = CacheModel(slots) if prefix_cache else None  # llama.cpp's caches, played
        self.slot_of: list[int] = []  # the slot each call ran on (prefix_cache only)
        self.waited_for_pinned = 0  # pinned calls that found their slot busy
        self.prefilled = 0  # prompt tokens not found in a slot's cache, over every call
        self._slot_busy = [False] * slots
        self._slot_used = [0] * slots
        self._tick = itertools.count(1)
        self._slot_freed = asyncio.Condition()

    @staticmethod
    def _rng(req: GenRequest, index: int) -> random.Random:
        key = f"{req.seed}|{index}|{req.input_text()}".encode()
        return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))

    def _all_tokens(self, req: GenRequest, index: int, text: str) -> list[TokenLogprob]:
        assert self._token_logprobs is not None
        out = []
        for i, token in enumerate(_pieces(text)):
            top = self._token_logprobs(req, index, i, token)
            out.append(TokenLogprob(token=token, logprob=top.get(token, -30.0), top=top))
        return out

    def _first_token(self, req: GenRequest, index: int, text: str) -> list[TokenLogprob] | None:
        if self._token_logprobs is not None and req.top_logprobs > 0:
            return self._all_tokens(req, index, text)
        if self._logprobs is None or req.top_logprobs == 0:
            return None
        top = self._logprobs(req, index, self._rng(req, index))
        first = (_TOKEN.findall(text) or [""])[0]
        return [TokenLogprob(token=first, logprob=top.get(first, -30.0), top=top)]

    def _reply(self, req: GenRequest, index: int) -> str:
        if callable(self._replies):
            return self._replies(req, index, self._rng(req, index))
        if not self._replies:
            raise BackendError("scripted LM has an empty script")
        return self._replies[index % len(self._replies)]

    async def stream(self, req: GenRequest, watch: Watch) -> Generation:
        """The single choice written token by token (each `decode_s` apart), `watch` told of
        each; a stop ends the writing at that token, charged exactly."""
        if not self.capabilities.stream or req.n != 1:
            raise BackendError(f"scripted: no token stream here (n={req.n})")
        call = len(self.calls)
        self.calls.append(req)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self._wait(self._latency_s)
            if self._fail is not None and (err := self._fail(call, req)) is not None:
                raise err
            text = self._reply(req, 0)
            for s in req.stop:
                if s and s in text:
                    text = text[: text.index(s)]
            text, cut = _truncate(text, req.max_tokens)
            written: list[TokenLogprob] = []
            end, stopped = 0, False
            for match in _TOKEN.finditer(text):
                token = text[end : match.end()]  # (with the space before it, as servers do)
                top = (
                    self._token_logprobs(req, 0, len(written), token)
                    if self._token_logprobs is not None
                    else {token: 0.0}
                )
                written.append(TokenLogprob(token=token, logprob=top.get(token, -30.0), top=top))
                end = match.end()
                self.streamed += 1
                await self._wait(self._decode_s)
                if watch(written[-1]):
                    stopped = True
                    self.stopped += 1
                    break
            shown = text[:end] if stopped else text
            reason = "stopped" if stopped else ("length" if cut else "stop")
            choice = Completion(
                text=shown,
                completion_tokens=max(1, len(written)) if not stopped else len(written),
                finish_reason=reason,
                logprobs=written if req.top_logprobs > 0 else None,
            )
            return Generation(choices=[choice], prompt_tokens=count_tokens(req.input_text()))
        finally:
            self.in_flight -= 1

    async def render(self, messages: list[Message]) -> str:
        """A ChatML-like rendering, so raw-prefix code paths can be tested."""
        turns = "".join(f"<{m.role}>{m.content}</{m.role}>\n" for m in messages)
        return turns + "<assistant>"

    async def prepare(self) -> Capabilities:
        return self.capabilities

    async def count_tokens(self, text: str) -> int:
        """The scripted tokenizer's count (`CountsTokens`)."""
        return count_tokens(text)

    async def generate(self, req: GenRequest) -> Generation:
        if self.cache is None:
            return await self._generate(req)
        key = prompt_key(req)
        async with self._slot_freed:
            if req.slot is not None and self.capabilities.pin_slots:
                if self._slot_busy[req.slot]:
                    self.waited_for_pinned += 1
                await self._slot_freed.wait_for(lambda: not self._slot_busy[req.slot or 0])
                slot, reused = req.slot, self.cache.place(key, req.slot)
            else:
                await self._slot_freed.wait_for(lambda: not all(self._slot_busy))
                slot, reused = self._llamacpp_choice(key)
            self._slot_busy[slot], self._slot_used[slot] = True, next(self._tick)
        self.slot_of.append(slot)
        try:
            prompt = count_tokens(key)
            cached = min(prompt, count_tokens(key[:reused]))
            gen = await self._generate(req, prompt - cached)
            gen.prompt_tokens, gen.cached_tokens = prompt, cached
            self.prefilled += gen.prompt_tokens - gen.cached_tokens
            if req.n == 1:
                self.cache.texts[slot] = key + gen.choices[0].text
            return gen
        finally:
            async with self._slot_freed:
                self._slot_busy[slot] = False
                self._slot_freed.notify_all()

    def _llamacpp_choice(self, key: str) -> tuple[int, int]:
        """llama.cpp's own choice of slot: the free one sharing the most of the prompt if
        that is over a tenth of it, else the least recently used free one (saved first)."""
        assert self.cache is not None
        free = [i for i, busy in enumerate(self._slot_busy) if not busy]
        shared = {i: common_prefix(key, self.cache.texts[i]) for i in free}
        best = max(free, key=lambda i: shared[i])
        if key and shared[best] * 10 > len(key):
            return best, self.cache.place(key, best)
        lru = min(free, key=lambda i: self._slot_used[i])
        return lru, self.cache.place(key, lru, save=True)

    async def _generate(self, req: GenRequest, prefilled: int = 0) -> Generation:
        call = len(self.calls)
        self.calls.append(req)
        self.in_flight += req.n
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self._wait(self._latency_s)
            if self._fail is not None and (err := self._fail(call, req)) is not None:
                raise err
            choices = []
            for i in range(req.n):
                text = self._reply(req, i)
                for s in req.stop:
                    if s and s in text:
                        text = text[: text.index(s)]
                text, cut = _truncate(text, req.max_tokens)
                choices.append(
                    Completion(
                        text=text,
                        completion_tokens=max(1, count_tokens(text)),
                        finish_reason="length" if cut else "stop",
                        logprobs=self._first_token(req, i, text),
                    )
                )
            written = sum(c.completion_tokens for c in choices)
            await self._wait(self._decode_s * written + self._prefill_s * prefilled)
            return Generation(choices=choices, prompt_tokens=count_tokens(req.input_text()))
        finally:
            self.in_flight -= req.n

    async def _wait(self, seconds: float) -> None:
        """Simulated network and compute time; a caller that gives up is counted. With none,
        control still goes back to the event loop, as a real backend's I/O would give it: a
        long search on the scripted backend does not starve the server's other requests."""
        try:
            await asyncio.sleep(max(0.0, seconds))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def aclose(self) -> None:
        return None


def transient_every(k: int) -> FailFn:
    """A failure script: every k-th call fails transiently."""

    def fail(call: int, req: GenRequest) -> Exception | None:
        return (
            TransientError(f"scripted transient failure on call {call}") if call % k == 0 else None
        )

    return fail


class ScriptedOptions(BaseModel):
    """The `scripted` backend's settings (`BackendConfig.options`): plain data, so a scripted
    backend can be opened by name anywhere a real one can (a sweep's Ray workers, a replica)."""

    model_config = ConfigDict(extra="forbid")
    replies: list[str] = Field(
        default_factory=lambda: ["\\boxed{42}"],
        min_length=1,
        description="each choice is one of these, picked by the request's seed",
    )
    latency_s: float = Field(default=0.0, ge=0, description="seconds each call takes")
    decode_s: float = Field(default=0.0, ge=0, description="seconds per token written")
    prefill_s: float = Field(default=0.0, ge=0, description="seconds per prompt token not cached")
    prefix_cache: bool = Field(default=False, description="play llama.cpp's slot prefix caches")
    n: bool = Field(default=True, description="answers n > 1 in one request")
    stream: bool = Field(default=False, description="streams a choice token by token")


@backend(
    "scripted",
    summary="a deterministic fake for tests and benchmarks: replies picked by the seed",
    capabilities={"fake"},
    options=ScriptedOptions,
)
def open_scripted(config: BackendConfig, progress: Progress | None = None) -> LanguageModel:
    config.without_server()
    try:
        opts = ScriptedOptions.model_validate(config.options)
    except ValidationError as e:
        raise UsageError(f"backend 'scripted' options: {problems(e)}") from None
    replies = opts.replies

    def pick(req: GenRequest, index: int, rng: random.Random) -> str:
        return rng.choice(replies)

    caps = Capabilities(
        slots=config.slots,
        context_length=config.ctx_size,
        n=opts.n,
        n_with_stop=True,
        stream=opts.stream,
    )
    lm = ScriptedLM(
        pick,
        name=config.model or "scripted",
        latency_s=opts.latency_s,
        decode_s=opts.decode_s,
        prefill_s=opts.prefill_s,
        prefix_cache=opts.prefix_cache,
        capabilities=caps,
    )
    lm.info = config.priced(lm.info)  # --price and --parameters, as for every backend
    return lm
