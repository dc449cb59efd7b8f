"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 that misbehaves on request.

Raw asyncio, so it can do what a real framework would not: cut a response mid-JSON, hang,
or drop the connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

Behaviour = Callable[[int, str, dict[str, Any]], str]  # (request number, path, body) -> action


class FakeOpenAIServer:
    """Actions: "ok", "slow" (0.2 s, then ok), "500", "503", "400", "hang", "truncate",
    "reset". With `native_n` False, the server ignores `n` (one choice) and reports usage for
    that choice only."""

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
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

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
                await asyncio.sleep(3600)
            elif action == "slow":
                await asyncio.sleep(0.2)
                await self._send(writer, 200, self.completion(path, body))
            elif action == "reset":
                writer.transport.abort()
                return
            elif action in ("500", "503"):
                await self._send(writer, int(action), {"error": {"message": "overloaded"}})
            elif action == "400":
                await self._send(writer, 400, {"error": {"message": "bad field 'n'"}})
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

    async def _send(self, writer: asyncio.StreamWriter, status: int, obj: Any) -> None:
        await self._send_raw(writer, status, json.dumps(obj).encode())

    async def _send_raw(self, writer: asyncio.StreamWriter, status: int, payload: bytes) -> None:
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
