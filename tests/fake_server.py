"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 that misbehaves on request.

Raw asyncio, so it can do what a real framework would not: cut a response mid-JSON, hang,
or drop the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Behaviour = Callable[[int, str, dict[str, Any]], str]  # (request number, path, body) -> action

# What an HTTP error answer says (OpenAI's error object), by status.
ERRORS: dict[int, dict[str, Any]] = {
    400: {"message": "bad field 'n'", "type": "invalid_request_error", "param": None},
    404: {"message": "The model 'nope' does not exist", "type": "invalid_request_error"},
    422: {
        "message": "messages.0.content: the upstream cannot process this",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "unprocessable_entity",
    },
    429: {"message": "upstream rate limit: slow down", "type": "rate_limit_error"},
    500: {"message": "overloaded"},
    503: {"message": "overloaded"},
}


def marked(i: int, path: str, body: dict[str, Any]) -> str:
    """A behaviour the request itself asks for: `fault:ACTION` anywhere in its prompt or
    messages (every attempt at that request gets it); "ok" otherwise."""
    text = json.dumps(body.get("messages") or body.get("prompt") or "")
    _, found, rest = text.partition("fault:")
    if not found:
        return "ok"
    return rest.split()[0].strip("\\\"',.]}")


class FakeOpenAIServer:
    """Actions: "ok" (a stream when the request asks for one), "slow" (0.2 s, then ok), an
    HTTP status ("400", "404", "422", "429",
    "500", "503", …: that status with an OpenAI error object, ERRORS; 429 and 503 with
    Retry-After: 7), "hang" (until the client goes away), "garbage" (200, not JSON),
    "truncate" (200, JSON or a stream cut in half), "reset" (the connection dropped). `down()` stops
    listening (connections refused) until `up()`. With `native_n` False, the server ignores
    `n` (one choice) and reports usage for that choice only."""

    def __init__(
        self, behaviour: Behaviour | None = None, *, native_n: bool = True, logprobs: bool = True
    ) -> None:
        self.behaviour = behaviour or (lambda i, path, body: "ok")
        self.native_n = native_n
        self.logprobs = logprobs
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> FakeOpenAIServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.down()

    async def down(self) -> None:
        """Stop listening: new connections are refused (those open are left to finish)."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):  # (newer Pythons wait for connections)
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def up(self) -> None:
        """Listen again, on the same port."""
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    def completion(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        n = int(body.get("n", 1)) if self.native_n else 1
        seed = body.get("seed", 0)
        choices = []
        for i in range(n):
            words = [f"t{seed}-{i}-{k}" for k in range(3 + i)] + [f"\\boxed{{{seed}}}"]
            text = " ".join(words)
            choice: dict[str, Any] = {"index": i, "finish_reason": "stop"}
            if path.endswith("/chat/completions"):
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            if self.logprobs and body.get("logprobs"):
                choice["logprobs"] = {
                    "content": [{"token": w, "logprob": -0.1, "top_logprobs": []} for w in words]
                }
            choices.append(choice)
        return {
            "object": "chat.completion",
            "choices": choices,
            # like llama.cpp: usage describes one choice only
            "usage": {
                "prompt_tokens": 7,
                "completion_tokens": 4,
                "total_tokens": 11,
                "prompt_tokens_details": {"cached_tokens": 2},
            },
        }

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            raw = await reader.readexactly(length) if length else b""
            body = json.loads(raw) if raw else {}
            index = len(self.requests)
            self.requests.append((path, body))
            if method == "GET" and path.endswith("/models"):
                await self._send(writer, 200, {"data": [{"id": "fake-model"}]})
                return
            action = self.behaviour(index, path, body)
            if action == "hang":
                await asyncio.wait_for(reader.read(), 3600)  # until the client goes away
            elif body.get("stream") and action in ("ok", "slow", "truncate"):
                if action == "slow":
                    await asyncio.sleep(0.2)
                await self._stream(writer, path, body, cut=action == "truncate")
            elif action == "slow":
                await asyncio.sleep(0.2)
                await self._send(writer, 200, self.completion(path, body))
            elif action == "reset":
                writer.transport.abort()
                return
            elif action.isdigit():
                status = int(action)
                error = ERRORS.get(status, {"message": f"upstream error {status}"})
                retry = {"Retry-After": "7"} if status in (429, 503) else {}
                await self._send(writer, status, {"error": error}, retry)
            elif action == "garbage":
                await self._send_raw(writer, 200, b"<html>definitely not json")
            elif action == "truncate":
                payload = json.dumps(self.completion(path, body)).encode()
                await self._send_raw(writer, 200, payload[: len(payload) // 2])
            else:
                await self._send(writer, 200, self.completion(path, body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()

    async def _stream(
        self, writer: asyncio.StreamWriter, path: str, body: dict[str, Any], *, cut: bool
    ) -> None:
        """The first choice as Server-Sent Events: a chunk a word (with its log-probability
        when asked), the finish, the usage if `stream_options.include_usage`, `[DONE]`;
        `cut`: the connection closes halfway, with no `[DONE]`."""
        whole = self.completion(path, body)
        first = whole["choices"][0]
        chat = path.endswith("/chat/completions")
        text = first["message"]["content"] if chat else first["text"]
        pieces = [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]
        events: list[dict[str, Any]] = []
        for piece in pieces:
            choice: dict[str, Any] = {"index": 0, "finish_reason": None}
            if chat:
                choice["delta"] = {"content": piece}
            else:
                choice["text"] = piece
            if self.logprobs and body.get("logprobs"):
                choice["logprobs"] = {
                    "content": [{"token": piece, "logprob": -0.1, "top_logprobs": []}]
                }
            events.append({"choices": [choice]})
        end: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        end.update({"delta": {}} if chat else {"text": ""})
        events.append({"choices": [end]})
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({"choices": [], "usage": whole["usage"]})
        if cut:
            events = events[: len(events) // 2]
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        )
        for event in events:
            writer.write(f"data: {json.dumps(event)}\n\n".encode())
            await writer.drain()
        if not cut:
            writer.write(b"data: [DONE]\n\n")
            await writer.drain()

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        obj: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        await self._send_raw(writer, status, json.dumps(obj).encode(), headers)

    async def _send_raw(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()


class Upstream:
    """A FakeOpenAIServer on its own event loop in a background thread (for a server under
    test that runs in another thread): `down()` / `up()` from any thread."""

    def __init__(self, server: FakeOpenAIServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server, self.loop = server, loop
        self.url = server.url

    def down(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.down(), self.loop).result(10)

    def up(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.up(), self.loop).result(10)


@contextmanager
def upstream(behaviour: Behaviour | None = None, **kw: Any) -> Iterator[Upstream]:
    """A FakeOpenAIServer running in a background thread while the block runs."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = FakeOpenAIServer(behaviour, **kw)
    asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(10)
    try:
        yield Upstream(server, loop)
    finally:
        asyncio.run_coroutine_threadsafe(server.down(), loop).result(10)
        asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _cancel_the_rest() -> None:
    """Cancel every task on this loop but this one (connections still being handled)."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
