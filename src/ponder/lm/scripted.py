"""A deterministic fake backend for tests: replies from a script or a function.

Replies are a pure function of (request, choice index, seed), so a seeded run is bit-for-bit
repeatable whatever order calls complete in. Latency and failures are configurable.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import Callable, Sequence

from ponder.errors import BackendError, TransientError
from ponder.lm.protocol import Capabilities
from ponder.types import Completion, Generation, GenRequest, Message, ModelInfo, TokenLogprob

ReplyFn = Callable[[GenRequest, int, random.Random], str]
# The first token's top alternatives {token: logprob}, for judges that read P(Yes).
LogprobFn = Callable[[GenRequest, int, random.Random], dict[str, float]]
FailFn = Callable[[int, GenRequest], Exception | None]

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """The scripted tokenizer: words and punctuation marks. Never more than the UTF-8 bytes."""
    return len(_TOKEN.findall(text))


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
    ) -> None:
        self._replies = replies
        self._logprobs = logprobs
        self._latency_s = latency_s
        self._fail = fail
        self.capabilities = capabilities or Capabilities(slots=8, n_with_stop=True)
        self.info = ModelInfo(name=name, parameters=parameters)
        self.calls: list[GenRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0  # calls whose caller gave up while they ran (a client went away)

    @staticmethod
    def _rng(req: GenRequest, index: int) -> random.Random:
        key = f"{req.seed}|{index}|{req.input_text()}".encode()
        return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))

    def _first_token(self, req: GenRequest, index: int, text: str) -> list[TokenLogprob] | None:
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

    async def render(self, messages: list[Message]) -> str:
        """A ChatML-like rendering, so raw-prefix code paths can be tested."""
        turns = "".join(f"<{m.role}>{m.content}</{m.role}>\n" for m in messages)
        return turns + "<assistant>"

    async def prepare(self) -> Capabilities:
        return self.capabilities

    async def generate(self, req: GenRequest) -> Generation:
        call = len(self.calls)
        self.calls.append(req)
        self.in_flight += req.n
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self._latency_s:
                try:
                    await asyncio.sleep(self._latency_s)  # simulated network/compute latency
                except asyncio.CancelledError:
                    self.cancelled += 1
                    raise
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
            return Generation(choices=choices, prompt_tokens=count_tokens(req.input_text()))
        finally:
            self.in_flight -= req.n

    async def aclose(self) -> None:
        return None


def transient_every(k: int) -> FailFn:
    """A failure script: every k-th call fails transiently."""

    def fail(call: int, req: GenRequest) -> Exception | None:
        return (
            TransientError(f"scripted transient failure on call {call}") if call % k == 0 else None
        )

    return fail
