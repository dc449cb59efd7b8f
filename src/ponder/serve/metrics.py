"""What the server has done, for `/metrics` (Prometheus' text format) and the request log.

`Accounting` is an ASGI middleware around the app: it times every request, reads the status
it was answered with, counts it by endpoint, strategy and status, and writes one log line
for it (`ponder.serve.requests`, INFO) with its id, key, model and what it spent. The tokens
every backend call was charged are counted by role as they are charged (`Metrics.charge`),
so a request whose client went away still counts what it cost.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ponder.serve.guards import REQUEST_ID
from ponder.types import Usage

log = logging.getLogger("ponder.serve.requests")

# The endpoints counted by name; any other path is "other" (a scanner's random paths must not
# make a label each).
ENDPOINTS = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"}
)
# The status a request whose client went away is counted and logged with (nobody reads the
# response; a stream cut short had sent its 200 already).
CLIENT_GONE = 499
# Request latency buckets, seconds (a plain request takes milliseconds, a search minutes).
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass
class Served:
    """What a request's handler tells the accounting (kept in the request's scope state)."""

    key: str
    model: str
    strategy: str  # "none" for a plain request passed through
    spent: dict[str, int] = field(default_factory=dict)  # calls, prompt and completion tokens
    gone: bool = False  # the client went away before the response ended


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: int = 0
    sum: float = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                self.counts[i] += 1
        self.total += 1
        self.sum += value


class Metrics:
    """Counters since the server started."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, str]] = Counter()  # endpoint, strategy, status
        self.latency: dict[tuple[str, str], Histogram] = {}  # endpoint, strategy
        self.tokens: Counter[tuple[str, str]] = Counter()  # role, prompt / completion
        self.calls: Counter[str] = Counter()  # role

    def request(self, endpoint: str, strategy: str, status: int, seconds: float) -> None:
        self.requests[endpoint, strategy, str(status)] += 1
        self.latency.setdefault((endpoint, strategy), Histogram()).observe(seconds)

    def charge(self, event: dict[str, Any]) -> None:
        """A progress event; each charged call ("call") is counted by role."""
        if event.get("event") != "call":
            return
        role = str(event.get("role", "policy"))
        self.calls[role] += 1
        self.tokens[role, "prompt"] += int(event.get("prompt_tokens", 0))
        self.tokens[role, "completion"] += int(event.get("completion_tokens", 0))

    def spent(self, role: str, usage: Usage) -> None:
        """Calls made outside any request (the start-up capability probe), by role."""
        if usage.calls:
            self.calls[role] += usage.calls
            self.tokens[role, "prompt"] += usage.prompt_tokens
            self.tokens[role, "completion"] += usage.completion_tokens

    def render(self, gauges: dict[str, tuple[str, float]]) -> str:
        """The text exposition format (version 0.0.4); `gauges`: name → (help, value)."""
        out: list[str] = []

        def family(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")

        family(
            "ponder_requests_total",
            "counter",
            "Requests answered, by endpoint, strategy (none: passed through; -: refused "
            "before one was known) and HTTP status (499: the client went away).",
        )
        for (endpoint, strategy, status), n in sorted(self.requests.items()):
            labels = _labels(endpoint=endpoint, strategy=strategy, status=status)
            out.append(f"ponder_requests_total{labels} {n}")
        family(
            "ponder_request_duration_seconds",
            "histogram",
            "Seconds from a request's arrival to the end of its response (a stream's last "
            "chunk), by endpoint and strategy.",
        )
        for (endpoint, strategy), h in sorted(self.latency.items()):
            for bound, count in zip(BUCKETS, h.counts, strict=True):
                labels = _labels(endpoint=endpoint, strategy=strategy, le=_number(bound))
                out.append(f"ponder_request_duration_seconds_bucket{labels} {count}")
            labels = _labels(endpoint=endpoint, strategy=strategy, le="+Inf")
            out.append(f"ponder_request_duration_seconds_bucket{labels} {h.total}")
            labels = _labels(endpoint=endpoint, strategy=strategy)
            out.append(f"ponder_request_duration_seconds_sum{labels} {_number(h.sum)}")
            out.append(f"ponder_request_duration_seconds_count{labels} {h.total}")
        family(
            "ponder_tokens_total",
            "counter",
            "Tokens charged for backend calls, by role (policy, verifier, tool) and kind "
            "(prompt, completion); a cancelled request's calls included.",
        )
        for (role, kind), n in sorted(self.tokens.items()):
            out.append(f"ponder_tokens_total{_labels(role=role, kind=kind)} {n}")
        family("ponder_backend_calls_total", "counter", "Backend calls charged, by role.")
        for role, n in sorted(self.calls.items()):
            out.append(f"ponder_backend_calls_total{_labels(role=role)} {n}")
        for name, (help_, value) in gauges.items():
            family(name, "gauge", help_)
            out.append(f"{name} {_number(value)}")
        return "\n".join(out) + "\n"


def _number(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


def _labels(**labels: str) -> str:
    def escape(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


class Accounting:
    """Times and counts every request (`Metrics.request`) and logs one line for it."""

    def __init__(self, app: ASGIApp, metrics: Metrics, clock: Callable[[], float] = time.monotonic):
        self.app = app
        self.metrics = metrics
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.clock()
        status = 500  # (an app that fails before it answers is answered 500 by the server)

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            seconds = self.clock() - started
            path = str(scope.get("path", ""))
            endpoint = path if path in ENDPOINTS else "other"
            served = scope.get("state", {}).get("served")
            strategy = served.strategy if isinstance(served, Served) else "-"
            if isinstance(served, Served) and served.gone:
                status = CLIENT_GONE
            self.metrics.request(endpoint, strategy, status, seconds)
            if endpoint not in ("/health", "/metrics"):
                self._log(scope, path, status, seconds, served)

    @staticmethod
    def _log(scope: Scope, path: str, status: int, seconds: float, served: object) -> None:
        client = scope.get("client")
        who = f"{client[0]}:{client[1]}" if client else "-"
        line = (
            f"{REQUEST_ID.get()} {who} {scope.get('method', '-')} {path} {status} {seconds:.3f} s"
        )
        if isinstance(served, Served):
            s = served.spent
            line += (
                f" key={served.key} model={served.model} calls={s.get('calls', 0)} "
                f"prompt_tokens={s.get('prompt_tokens', 0)} "
                f"completion_tokens={s.get('completion_tokens', 0)}"
            )
        log.info("%s", line)
