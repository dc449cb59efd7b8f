"""Parsing OpenAI-style response bodies (llama.cpp in-process and HTTP servers alike)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from ponder.errors import BackendError, TransientError
from ponder.types import Completion, Generation, GenRequest, TokenLogprob, Usage


def request_body(req: GenRequest, *, chat: bool, n: int, logprobs: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
    }
    if n != 1:
        body["n"] = n
    if req.seed is not None:
        body["seed"] = req.seed
    if req.stop:
        body["stop"] = req.stop
    if chat:
        assert req.messages is not None
        body["messages"] = [m.model_dump() for m in req.messages]
        if req.continue_final:
            # vLLM's names; llama.cpp's server continues a final assistant message by itself
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        if logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = max(1, req.top_logprobs)
    else:
        body["prompt"] = req.prompt
        if logprobs:
            body["logprobs"] = max(1, req.top_logprobs)
    if req.extra:  # a client's own fields, passed through (never over ponder's)
        for name, value in req.extra.items():
            body.setdefault(name, value)
    return body


# The request extension that names a call of ponder's (`Calls`).
CALL = "ponder.call"
# Reapings under way (a task is kept until it ends).
_REAPING: set[asyncio.Task[int]] = set()


class Calls:
    """An httpx client and the calls it has in flight, each named in its request's
    extensions, so that what a cancelled call left in the connection pool can be found and
    released once the call is over.

    httpcore (1.0.9) can leave a request's entry and its connection in the pool for good
    when the request is cancelled at the wrong moment: while connecting (encode/httpcore#1093),
    or while its response is being closed (the clean-up is shielded from anyio's cancel
    scopes only, and a plain asyncio `task.cancel()` lands in it). Each such leftover holds a
    socket and a place in the pool; a server whose clients often go away runs out of both."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.live: set[int] = set()
        self._ids = itertools.count()

    @contextlib.contextmanager
    def call(self) -> Iterator[dict[str, Any]]:
        """The extensions for one request (`client.post(..., extensions=...)`); if the
        request is cancelled midway, what it left in the pool is released afterwards."""
        token = next(self._ids)
        self.live.add(token)
        try:
            yield {CALL: token}
        except asyncio.CancelledError:
            task = asyncio.get_running_loop().create_task(self.reap())
            _REAPING.add(task)
            task.add_done_callback(_REAPING.discard)
            raise
        finally:
            self.live.discard(token)

    async def reap(self) -> int:
        """Release what calls no longer in flight left in the pool: their entries (a pool
        keeps a request's entry until its response is closed), and the connections that no
        live entry holds and that are neither idle nor closed. How many connections closed."""
        await asyncio.sleep(0)  # (after the cancelled call's own clean-up)
        pool = getattr(getattr(self.client, "_transport", None), "_pool", None)
        connections = getattr(pool, "_connections", None)
        entries = getattr(pool, "_requests", None)
        if pool is None or not isinstance(connections, list) or not isinstance(entries, list):
            return 0  # (another transport, or an httpcore whose pool looks otherwise)
        for entry in list(entries):
            extensions = getattr(getattr(entry, "request", None), "extensions", None)
            token = extensions.get(CALL) if isinstance(extensions, dict) else None
            if token is not None and token not in self.live:
                entries.remove(entry)  # its call is over: nobody will close its response
        held = {id(getattr(entry, "connection", None)) for entry in entries}
        orphans = [
            c for c in connections if id(c) not in held and not c.is_idle() and not c.is_closed()
        ]
        for c in orphans:
            connections.remove(c)
        for c in orphans:
            with contextlib.suppress(Exception):
                await c.aclose()
        with contextlib.suppress(Exception):  # (requests queued behind them may go on)
            await pool._close_connections(pool._assign_requests_to_connections())
        return len(orphans)


# An upstream's own error message is handed on at most this long (some echo the prompt).
MAX_ERROR_MESSAGE = 1000


def error_object(data: Any, fallback: str) -> dict[str, Any]:
    """A server's error as OpenAI's error object (message, and type / param / code if it
    gave them), from a body in OpenAI's shape, vLLM's older flat one, FastAPI's `detail`, or
    `fallback` (its text)."""
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        out = {k: err[k] for k in ("type", "param", "code") if k in err}
        message = err.get("message", err.get("detail"))
        if not isinstance(message, str):
            message = json.dumps(message if message is not None else err)
        out["message"] = message
    else:
        out = {"message": err if isinstance(err, str) and err else fallback}
    out["message"] = out["message"][:MAX_ERROR_MESSAGE] or fallback
    return out


def http_error(where: str, status: int, text: str, retry_after: str | None = None) -> BackendError:
    """The error for a server's HTTP error answer, carrying its status and error object: a
    5xx or 429 is a TransientError (retried), any other status a refusal."""
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = None
    error = error_object(data, text.strip()[:MAX_ERROR_MESSAGE] or f"HTTP {status}")
    seconds = None
    if retry_after is not None:
        try:
            seconds = max(0.0, float(retry_after))
        except ValueError:
            seconds = None
    transient = status >= 500 or status == 429
    cls = TransientError if transient else BackendError
    return cls(
        f"{where}: HTTP {status}: {error['message']}",
        failure="server_error" if transient else "refused",
        status=status,
        upstream=error,
        retry_after=seconds,
    )


def raise_for_error(data: dict[str, Any], where: str) -> None:
    """An error object in a body that came back 200."""
    err = data.get("error")
    if err is None:
        return
    error = error_object(data, str(err))
    msg = error["message"]
    code = err.get("code", 500) if isinstance(err, dict) else 500
    status = code if isinstance(code, int) and 400 <= code < 600 else None
    if isinstance(code, int) and code >= 500:
        raise TransientError(
            f"{where}: server error {code}: {msg}",
            failure="server_error",
            status=status,
            upstream=error,
        )
    raise BackendError(
        f"{where}: request refused ({code}): {msg}",
        failure="refused",
        status=status,
        upstream=error,
    )


def _logprobs(choice: dict[str, Any]) -> list[TokenLogprob] | None:
    lp = choice.get("logprobs")
    if not isinstance(lp, dict) or not isinstance(lp.get("content"), list):
        return None
    return [
        TokenLogprob(
            token=t.get("token", ""),
            logprob=float(t.get("logprob", 0.0)),
            top={
                x.get("token", ""): float(x.get("logprob", 0.0))
                for x in t.get("top_logprobs") or []
            },
        )
        for t in lp["content"]
    ]


def spent_by(data: dict[str, Any]) -> Usage:
    """What one answer of any shape cost (a capability probe's: a generation, or a route
    that generates nothing, such as /tokenize): its `usage`, with each choice's own logprob
    count where that is more (llama.cpp's `usage` counts one choice of n)."""
    usage = _object(data.get("usage"))
    choices = data.get("choices")
    if not isinstance(choices, list):
        choices = []
    if not usage and not choices:
        return Usage()
    listed = sum(len(_list(_object(_object(c).get("logprobs")).get("content"))) for c in choices)
    return Usage(
        calls=1,
        prompt_tokens=_count(usage.get("prompt_tokens")),
        cached_tokens=_count(_object(usage.get("prompt_tokens_details")).get("cached_tokens")),
        completion_tokens=max(_count(usage.get("completion_tokens")), listed),
    )


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def ended_on_stop_string(choice: Completion, logprobs: list[TokenLogprob] | None) -> bool:
    """A choice that stopped but whose last token is not end-of-generation (special tokens
    come back as empty text) was cut by a stop string."""
    if choice.finish_reason != "stop":
        return False
    return not logprobs or logprobs[-1].token != ""


def parse_generation(
    data: dict[str, Any],
    *,
    where: str,
    want_logprobs: bool,
    count_from_logprobs: bool,
    stop_tokens: int = 0,
    max_tokens: int | None = None,
) -> Generation:
    """Turn a response body into a Generation. With `count_from_logprobs`, each choice's token
    count is the length of its own logprob list: llama.cpp's `usage` counts one choice only.
    llama.cpp also leaves the stop string's tokens out of that list (it trims as many as the
    stop string tokenizes to): `stop_tokens` adds them back for choices cut by a stop string."""
    raise_for_error(data, where)
    raw_choices = data.get("choices")
    if not isinstance(raw_choices, list) or not raw_choices:
        raise TransientError(f"{where}: response has no choices", failure="bad_response")
    usage = data.get("usage") or {}
    choices: list[Completion] = []
    for ch in sorted(raw_choices, key=lambda c: int(c.get("index", 0))):
        message = ch.get("message") if isinstance(ch.get("message"), dict) else None
        text = (message.get("content") if message else ch.get("text")) or ""
        # servers with a reasoning parser (vLLM, llama.cpp --reasoning-format) say apart
        # what the model thought
        thought = (message.get("reasoning_content") if message else None) or None
        lps = _logprobs(ch)
        choice = Completion(
            text=text,
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=str(ch.get("finish_reason") or "stop"),
            logprobs=lps if want_logprobs else None,
            reasoning=str(thought) if thought else None,
        )
        if count_from_logprobs:
            cut = stop_tokens > 0 and ended_on_stop_string(choice, lps)
            if lps is None and not cut:  # (cut at its first token, a choice has no logprobs)
                raise TransientError(
                    f"{where}: a choice came back without logprobs", failure="bad_response"
                )
            tokens = len(lps or []) + (stop_tokens if cut else 0)
            if max_tokens is not None:
                tokens = min(tokens, max_tokens)
            choice.completion_tokens = tokens
        choices.append(choice)
    details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return Generation(
        choices=choices,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        cached_tokens=int(details.get("cached_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


# Tokens llama.cpp decodes for a stream after the last one it sent, before it sees that the
# client closed the connection: 0-2 past the count in its last chunk, against its own token
# counter on stopped streams of the embedded model, so a stopped stream's charge is within
# one token (tests/test_real_model.py::test_stopped_streams_are_charged_what_llamacpp_decoded).
LLAMACPP_DECODED_AFTER_CLOSE = 1


class StreamedChoice:
    """One streamed choice put together from OpenAI-style chunks (llama.cpp's `timings` per
    token say how many prompt tokens were evaluated and found cached)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.parts: list[str] = []
        self.logprobs: list[TokenLogprob] = []
        self.finish_reason: str | None = None
        self.prompt_tokens: int | None = None
        self.cached_tokens = 0
        self.completion_tokens: int | None = None  # the server's own count, when it says

    def feed(self, chunk: dict[str, Any]) -> list[TokenLogprob]:
        """Take one chunk; the tokens it brought (with their log-probabilities)."""
        raise_for_error(chunk, self.where)
        timings = chunk.get("timings")
        if isinstance(timings, dict):
            cache_n = int(timings.get("cache_n") or 0)
            self.prompt_tokens = int(timings.get("prompt_n") or 0) + cache_n
            self.cached_tokens = cache_n
            if "predicted_n" in timings:
                self.completion_tokens = int(timings["predicted_n"])
        usage = chunk.get("usage")
        if isinstance(usage, dict) and usage:
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)
            details = usage.get("prompt_tokens_details") or {}
            self.cached_tokens = int(details.get("cached_tokens") or self.cached_tokens)
        new: list[TokenLogprob] = []
        for ch in chunk.get("choices") or []:
            delta = ch.get("delta")
            text = (delta.get("content") if isinstance(delta, dict) else ch.get("text")) or ""
            if text:
                self.parts.append(text)
            lps = _logprobs(ch)
            if lps:
                new.extend(lps)
            if ch.get("finish_reason"):
                self.finish_reason = str(ch["finish_reason"])
        self.logprobs.extend(new)
        return new

    def completion(
        self,
        *,
        stopped: bool,
        want_logprobs: bool,
        stop_tokens: int = 0,
        decoded_after_close: int = 0,
        max_tokens: int | None = None,
    ) -> Completion:
        """The choice as written: finished by the server (its own count when it gave one), or
        stopped by the watch. A stopped choice is charged what the server said it had decoded
        by its last chunk (llama.cpp's per-token timings, a running usage), which
        counts the tokens it held back as a possible stop string's start and never sent, or
        the tokens received where it said nothing; plus `decoded_after_close`, those a server
        decodes before it notices the client has gone (at most `max_tokens` in all)."""
        if stopped:
            seen = max(len(self.logprobs), self.completion_tokens or 0)
            tokens = seen + decoded_after_close
            if max_tokens is not None:
                tokens = min(tokens, max(seen, max_tokens))
            reason = "stopped"
        else:
            reason = self.finish_reason or "stop"
            tokens = (
                self.completion_tokens
                if self.completion_tokens is not None
                else (len(self.logprobs) + (stop_tokens if reason == "stop" else 0))
            )
        return Completion(
            text="".join(self.parts),
            completion_tokens=tokens,
            finish_reason=reason,
            logprobs=self.logprobs if want_logprobs else None,
        )


async def stream_choice(
    calls: Calls,
    path: str,
    body: dict[str, Any],
    *,
    where: str,
    watch: Callable[[TokenLogprob], bool],
) -> tuple[StreamedChoice, bool]:
    """POST `body` as a stream and read its chunks, telling `watch` of each token; when it
    says stop, the response is closed (the server stops generating) and the choice so far is
    returned with True. Transport failures, and a stream that ends with neither a finish
    reason nor `[DONE]`, are TransientError (the scheduler retries)."""
    choice = StreamedChoice(where)
    options = {"include_usage": True, **(body.get("stream_options") or {})}
    body = {**body, "stream": True, "stream_options": options}
    done = False
    try:
        with calls.call() as extensions:
            async with calls.client.stream("POST", path, json=body, extensions=extensions) as resp:
                if resp.status_code >= 400:
                    text = (await resp.aread()).decode("utf-8", "replace")
                    raise http_error(where, resp.status_code, text, resp.headers.get("retry-after"))
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = json.loads(data)
                    except json.JSONDecodeError as e:
                        raise TransientError(
                            f"{where}: malformed chunk in the stream ({e})", failure="bad_response"
                        ) from e
                    if not isinstance(chunk, dict):
                        raise TransientError(
                            f"{where}: a stream chunk is not a JSON object", failure="bad_response"
                        )
                    for token in choice.feed(chunk):
                        if watch(token):
                            return choice, True  # leaving the block closes the stream
    except httpx.HTTPError as e:
        raise TransientError(
            f"{where}: the stream broke ({type(e).__name__}: {e})",
            failure="timeout" if isinstance(e, httpx.TimeoutException) else "unavailable",
        ) from e
    if not done and choice.finish_reason is None:  # (the connection closed midway)
        raise TransientError(
            f"{where}: the stream ended before it was done ({len(choice.parts)} chunks)",
            failure="bad_response",
        )
    return choice, False
