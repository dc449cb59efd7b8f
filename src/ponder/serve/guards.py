"""What stands between a client and the work: request ids, the body-size limit (ASGI
middlewares, before the app reads a byte of the body), the per-key rate and concurrency
limits, the prompt-token limit, and a watch for a client that goes away.

Every limit a client can run into is refused with OpenAI's error JSON naming the limit (as
the option and the keys-file setting are called), and 429s say when to retry.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ponder.errors import BackendError
from ponder.lm.protocol import CountsTokens, LanguageModel
from ponder.serve.protocol import ApiError, error_body

log = logging.getLogger("ponder.serve")

# The request being served, for log lines (tasks started for it inherit it).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# A client's own id is used if it looks like one: printable, no spaces, at most 128 chars.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=@-]{0,127}")


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class RequestIds:
    """Every request gets an id: the client's `x-request-id` if it is sane, else a new one.
    It goes back in the `x-request-id` header of every response, into `request.state`, and
    into every log line about the request (`REQUEST_ID`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = header(scope, b"x-request-id")
        rid = given if given and _SANE_ID.fullmatch(given) else "req-" + secrets.token_hex(12)
        scope.setdefault("state", {})["request_id"] = rid
        raw = rid.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", raw)]}
            await send(message)

        token = REQUEST_ID.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


class BodyLimit:
    """413 for a request body over `max_bytes`, before the app parses any of it: a
    Content-Length over the limit is refused before a byte of the body is read; otherwise the
    bytes are counted as they arrive and the request is refused as soon as the count passes
    the limit (a chunked body that never says its length included). A body within the limit
    is handed to the app whole. The server discards whatever the client still sends."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await self._refuse(send, 400, f"Content-Length '{declared[:40]}' is not a number")
                return
            if int(declared) > self.max_bytes:
                await self._too_large(send, int(declared))
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # gone before its body ended: nobody to answer
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._too_large(send, None)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole: Message | None = {"type": "http.request", "body": b"".join(chunks)}
        del chunks

        async def replay() -> Message:
            nonlocal whole
            if whole is not None:
                message, whole = whole, None
                return message
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send, declared: int | None) -> None:
        size = f" ({declared} bytes)" if declared is not None else ""
        log.info("%s: request body%s over max_body_bytes", REQUEST_ID.get(), size)
        await self._refuse(
            send,
            413,
            f"the request body{size} is over this server's limit of {self.max_bytes} bytes "
            "(max_body_bytes)",
            code="request_too_large",
        )

    @staticmethod
    async def _refuse(send: Send, status: int, message: str, code: str | None = None) -> None:
        payload = json.dumps(error_body(message, "invalid_request_error", None, code)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


class RateLimiter:
    """Each key's requests in any 60 seconds (a sliding window of their times: at most the
    key's limit of them are kept)."""

    WINDOW_S = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def check(self, key: str, per_minute: int | None) -> None:
        """Count one request of `key`'s, or raise 429 with the seconds until it may retry."""
        if per_minute is None:
            return
        now = self._clock()
        seen = self._seen.setdefault(key, deque())
        while seen and seen[0] <= now - self.WINDOW_S:
            seen.popleft()
        if len(seen) >= per_minute:
            wait = seen[0] + self.WINDOW_S - now
            log.info("%s: %s over max_rpm %d", REQUEST_ID.get(), key, per_minute)
            raise ApiError(
                429,
                f"this key's limit of {per_minute} requests a minute (max_rpm) is reached; "
                f"retry in {max(1, round(wait))} s",
                kind="rate_limit_error",
                code="rate_limit_exceeded",
                retry_after=wait,
            )
        seen.append(now)


class Ticket:
    """One admitted request's place, given back once (`release`)."""

    def __init__(self, gate: Gate, key: str) -> None:
        self.gate, self.key = gate, key
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.gate._release(self.key)


class Gate:
    """The requests in flight: at most `max_in_flight` in all, and each key's own limit
    (`peak`: the most there ever were at once)."""

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.peak = 0
        self.by_key: dict[str, int] = {}

    def admit(self, key: str, max_concurrent: int) -> Ticket:
        """A place for one of `key`'s requests now, or 429 (no waiting: no await between the
        check and taking the place)."""
        if self.in_flight >= self.max_in_flight:
            log.info("%s: server at max_in_flight %d", REQUEST_ID.get(), self.max_in_flight)
            raise ApiError(
                429,
                f"the server is at its limit of {self.max_in_flight} requests in flight "
                "(max_in_flight); retry",
                kind="rate_limit_error",
                code="queue_full",
                retry_after=1,
            )
        if self.by_key.get(key, 0) >= max_concurrent:
            log.info("%s: %s at max_concurrent %d", REQUEST_ID.get(), key, max_concurrent)
            raise ApiError(
                429,
                f"this key's limit of {max_concurrent} requests at once (max_concurrent) is "
                "reached; retry when one finishes",
                kind="rate_limit_error",
                code="concurrency_limit_exceeded",
                retry_after=1,
            )
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.by_key[key] = self.by_key.get(key, 0) + 1
        return Ticket(self, key)

    def _release(self, key: str) -> None:
        self.in_flight -= 1
        left = self.by_key[key] - 1
        if left:
            self.by_key[key] = left
        else:
            del self.by_key[key]


async def check_prompt(policy: LanguageModel, text: str, limit: int, param: str) -> None:
    """413 if `text` (a request's prompt: every message's text) is over `limit` tokens.

    A text's tokens are never more than its UTF-8 bytes (every token is at least a byte), so
    a text of at most `limit` bytes passes without counting. A longer one is counted by the
    backend's own tokenizer when it offers one (`CountsTokens`: the embedded llama.cpp model,
    the scripted backend); otherwise, or if the tokenizer fails, its bytes are the estimate: an
    upper bound, so the limit is never passed, though a prompt that would fit may be refused
    (the message says it was estimated)."""
    size = len(text.encode("utf-8"))
    if size <= limit:
        return
    tokens, how = size, " (estimated by its UTF-8 bytes: this backend has no tokenizer to ask)"
    if isinstance(policy, CountsTokens):
        try:
            tokens, how = await policy.count_tokens(text), ""
        except BackendError as e:
            log.warning("%s: the tokenizer failed (%s); estimating by bytes", REQUEST_ID.get(), e)
            how = " (estimated by its UTF-8 bytes: the tokenizer failed)"
    if tokens > limit:
        log.info("%s: prompt of %d tokens over max_prompt_tokens", REQUEST_ID.get(), tokens)
        raise ApiError(
            413,
            f"{param}: the prompt is {tokens} tokens{how}, over this server's limit of "
            f"{limit} prompt tokens (max_prompt_tokens)",
            param=param,
            code="prompt_too_long",
        )


async def until_disconnected(receive: Receive) -> None:
    """Returns when the client has gone away (for a request whose body has been read: the
    server's next message is the disconnect)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0.01)  # (a server that answers at once with empty bodies: no spin)


def spent_tally() -> tuple[dict[str, int], Callable[[dict[str, Any]], None]]:
    """An observer that adds up the calls charged to a request (for its log line), and the
    sums it keeps."""
    sums = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}

    def observe(event: dict[str, Any]) -> None:
        if event.get("event") == "call":
            sums["calls"] += 1
            sums["prompt_tokens"] += int(event.get("prompt_tokens", 0))
            sums["completion_tokens"] += int(event.get("completion_tokens", 0))

    return sums, observe
