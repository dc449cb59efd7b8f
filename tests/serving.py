"""A ponder server on 127.0.0.1 in a background thread, and a streaming load against it (for
tests and benchmarks/serve.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve `app` on a free loopback port; yields its base URL (…/v1)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # uvicorn has no start-up callback to wait on
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class StreamCheck:
    """One streamed request as the client saw it."""

    status: int
    seconds: float  # request sent → [DONE]
    first_chunk_s: float  # request sent → first chunk
    problems: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None  # an error chunk's error object


async def stream_once(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> StreamCheck:
    """POST a streaming chat request and check the stream is well formed and complete: JSON
    chunks with one id, the role first, content, one finish reason, a usage chunk if the
    body asks for one (and none otherwise), [DONE]."""
    started = time.perf_counter()
    first: float | None = None
    problems: list[str] = []
    datas: list[str] = []
    async with client.stream("POST", f"{url}/chat/completions", json=body) as r:
        async for line in r.aiter_lines():
            if first is None:
                first = time.perf_counter() - started
            if not line:
                continue
            if not line.startswith("data: "):
                problems.append(f"not an SSE data line: {line[:80]!r}")
                continue
            datas.append(line.removeprefix("data: "))
        status = r.status_code
    seconds = time.perf_counter() - started
    if status != 200:
        return StreamCheck(status, seconds, first or seconds, [f"status {status}"])
    if not datas or datas[-1] != "[DONE]":
        problems.append("no [DONE] at the end")
    chunks = []
    for d in datas[:-1]:
        try:
            chunks.append(json.loads(d))
        except json.JSONDecodeError:
            problems.append(f"chunk is not JSON: {d[:80]!r}")
    errors = [c["error"] for c in chunks if "error" in c]
    if errors:
        problems.append("an error chunk")
    ids = {c.get("id") for c in chunks if "error" not in c}  # (an error chunk is OpenAI's error)
    if len(ids) != 1:
        problems.append(f"{len(ids)} ids in one stream")
    with_choices = [c for c in chunks if c.get("choices")]
    if not with_choices or with_choices[0]["choices"][0]["delta"].get("role") != "assistant":
        problems.append("the first chunk does not open the assistant's message")
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in with_choices)
    if not text:
        problems.append("no content")
    finishes = [c["choices"][0]["finish_reason"] for c in with_choices]
    if [f for f in finishes if f] != ["stop"]:
        problems.append(f"finish reasons {finishes}")
    usage = [c for c in chunks if c.get("usage")]
    if (body.get("stream_options") or {}).get("include_usage"):
        if not chunks or chunks[-1].get("choices") != [] or not chunks[-1].get("usage"):
            problems.append("no usage chunk before [DONE]")
    elif usage:
        problems.append("a usage chunk nobody asked for")
    return StreamCheck(status, seconds, first or seconds, problems, errors[0] if errors else None)


async def load(url: str, requests: int, body: dict[str, Any]) -> list[StreamCheck]:
    """`requests` streaming requests, all at once, each on its own connection."""
    limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        return list(
            await asyncio.gather(*(stream_once(client, url, body) for _ in range(requests)))
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
