"""The FastAPI app: OpenAI's routes over an Engine, strategies chosen per request.

Every request runs as one task: a strategy through `Engine.solve`, or a plain request
straight through the scheduler. A streamed request sends its first chunk at once, then a
chunk per progress event as the work reports it (`ponder` field, ignored by stock clients)
and, for a plain request on a backend that streams, each token as it is written; then the
rest of the answer, a usage chunk if `stream_options.include_usage` asks for one, and
`[DONE]`. A client that goes away, streaming or not, cancels the task, which releases its
backend slots.

Before any work: the body-size limit (middleware, before the body is parsed), the key, its
requests a minute, the request's own limits (n, max_tokens, budget, prompt tokens), then a
place among the requests in flight (the server's and the key's). See guards.py. Every
request is counted and logged (metrics.py: `/metrics`, `ponder.serve.requests`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from ponder import __version__
from ponder.errors import BackendError, BudgetExceeded, UsageError
from ponder.lm.protocol import Watch, probe_usage
from ponder.runtime.budget import Ledger
from ponder.runtime.engine import Engine, charged
from ponder.serve.auth import ApiKey, Keys, Limits
from ponder.serve.guards import (
    REQUEST_ID,
    BodyLimit,
    Gate,
    RateLimiter,
    RequestIds,
    Ticket,
    check_prompt,
    spent_tally,
    until_disconnected,
)
from ponder.serve.metrics import CLIENT_GONE, Accounting, Metrics, Served
from ponder.serve.protocol import (
    ApiError,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    Sampling,
    bill,
    chat_logprobs,
    chosen_text,
    error_body,
    new_id,
    now,
    ponder_usage,
    sse,
    text_logprobs,
    usage_body,
)
from ponder.serve.routing import Route, resolve, served_models
from ponder.types import (
    Completion,
    Generation,
    GenRequest,
    Message,
    Problem,
    TokenLogprob,
    blank,
)

log = logging.getLogger("ponder.serve")
Observer = Callable[[dict[str, Any]], None]
# Told of each token of a streamed plain request as it is written: (choice index, token).
Tokens = Callable[[int, TokenLogprob], None]
Kind = Literal["chat", "text"]


@dataclass
class Outcome:
    """What a request produced: its choices (text, finish reason, log-probabilities), and
    its usage."""

    choices: list[Completion]
    usage: dict[str, Any]


# A request's work: told of progress events, and (a stream's) of tokens as they come.
Work = Callable[[Observer, Tokens | None], Coroutine[Any, Any, Outcome]]


@dataclass(frozen=True)
class Shape:
    """How a response is written: chat or text, the model it names, the top alternatives
    asked for with each token's log-probability (None: no log-probabilities), and whether
    a stream ends with a usage chunk."""

    kind: Kind
    model: str
    logprobs: int | None = None
    usage_chunk: bool = False


# Seconds a client is told to wait (Retry-After) when the backend is down.
RETRY_DOWN_S = 5.0
# Each key's requests in flight at once unless its limits say (a server with keys).
DEFAULT_MAX_CONCURRENT = 64


def default_body_bytes(context_length: int) -> int:
    """Room for a prompt that fills the model's context: 64 bytes a context token (JSON that
    escapes every character as \\uXXXX takes 6 to 12 bytes for one), at least 1 MiB."""
    return max(1 << 20, 64 * context_length)


@dataclass
class State:
    engine: Engine
    keys: Keys
    limits: Limits
    gate: Gate
    max_tokens: int
    context_length: int
    max_body_bytes: int
    router: str | None = None  # the router file `auto/MODEL` reads
    rate: RateLimiter = field(default_factory=RateLimiter)
    metrics: Metrics = field(default_factory=Metrics)
    served: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def in_flight(self) -> int:
        return self.gate.in_flight

    def prompt_limit(self, key: ApiKey) -> int:
        return key.limits.max_prompt_tokens or self.context_length

    def concurrency_limit(self, key: ApiKey) -> int:
        if key.limits.max_concurrent is not None:
            return key.limits.max_concurrent
        return DEFAULT_MAX_CONCURRENT if self.keys else self.gate.max_in_flight


def create_app(
    engine: Engine,
    *,
    keys: Keys | None = None,
    limits: Limits | None = None,
    max_in_flight: int = 512,
    max_tokens: int = 512,
    max_body_bytes: int | None = None,
    served: str | None = None,
    close_engine: bool = False,
    router: str | None = None,
) -> FastAPI:
    """The app over `engine` (closed at shutdown if `close_engine`, else the caller's to
    close). `served` names the backend's model; by default the backend's own name, learnt at
    start-up.

    Limits: `max_body_bytes` per request body (413 before it is parsed; by default
    `default_body_bytes` of the model's context length); `max_in_flight` requests at once in
    all (429); `limits` for a server without keys, and each key's unless its line in the keys
    file sets its own: n, max_tokens, budget, prompt tokens (413; by default the model's
    context length), requests at once (by default 64 a key; a server without keys has one
    caller, limited by `max_in_flight` alone) and a minute (429 with Retry-After)."""
    context_length = engine.policy.capabilities.context_length
    state = State(
        engine,
        keys or Keys([]),
        limits or Limits(),
        Gate(max_in_flight),
        max_tokens,
        context_length,
        max_body_bytes or default_body_bytes(context_length),
        router=router,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await engine.policy.prepare()
        except BackendError as e:  # the server still starts; requests get 503 until it is up
            log.warning("backend not ready at start-up: %s", e)
        state.metrics.spent("probe", probe_usage(engine.policy))  # no request's: /metrics
        state.served = served or engine.policy.info.name
        yield
        if close_engine:
            await engine.aclose()

    app = FastAPI(
        title="ponder",
        version=__version__,
        summary="OpenAI-compatible inference-time scaling: a strategy per model name",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=state.max_body_bytes)
    app.add_middleware(Accounting, metrics=state.metrics)  # (a body refused is counted too)
    app.add_middleware(RequestIds)  # outermost of ours: every response gets its id

    app.state.ponder = state

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Up, with the requests in flight and the backend's slots in use (units: sequences
        the scheduler lets the backend hold; busy: held now; waiting: asked for), how step
        strategies continue a partial solution on the backend (a server's probe), and each
        replica's state when there are several."""
        units = engine.scheduler.slots_for(engine.policy)
        out: dict[str, Any] = {
            "status": "ok",
            "model": state.served,
            "in_flight": state.in_flight,
            "in_flight_peak": state.gate.peak,
            "slots": {
                "units": units.units,
                "busy": units.units - units.free,
                "waiting": units.waiting,
            },
            "continuation": state.engine.policy.capabilities.continuation,
            "uptime_s": round(time.monotonic() - state.started, 1),
        }
        stats = getattr(state.engine.policy, "stats", None)
        if callable(stats):  # several replicas (ponder.lm.replicas): each one's state
            out["replicas"] = stats()
        return out

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus' text format: requests by endpoint, strategy and status; their
        latency; tokens and calls by role; requests in flight and backend slots in use."""
        units = engine.scheduler.slots_for(engine.policy)
        gauges = {
            "ponder_requests_in_flight": ("Requests being answered now.", state.in_flight),
            "ponder_requests_in_flight_peak": (
                "The most requests answered at once since the server started.",
                state.gate.peak,
            ),
            "ponder_max_in_flight": ("Requests at once past which 429.", state.gate.max_in_flight),
            "ponder_backend_slot_units": (
                "Sequences the backend may hold at once (its slots x the queue factor).",
                units.units,
            ),
            "ponder_backend_slot_units_busy": ("Of those, held now.", units.units - units.free),
            "ponder_backend_slot_units_waiting": ("Asked for and waiting.", units.waiting),
            "ponder_uptime_seconds": ("Seconds since start-up.", time.monotonic() - state.started),
        }
        return PlainTextResponse(
            state.metrics.render(gauges), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/v1/models")
    async def models(key: Caller) -> dict[str, Any]:
        created = now()
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": created, "owned_by": "ponder"}
                for m in served_models(state.served)
            ],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatRequest, key: Caller, request: Request) -> Any:
        route = routed(state, body, key)
        shape, extra, limit = shaped(state, body, route, key.limits, "chat")
        prompt = "\n".join(m.text() for m in body.messages)
        await check_prompt(engine.policy, prompt, state.prompt_limit(key), "messages")
        if route.strategy is None:
            req = GenRequest(
                messages=[plain(m) for m in body.messages],
                **sampling(body, limit, shape.logprobs),
                extra=extra,
            )
            return await respond(
                state, key, request, route, shape, body.stream, passthrough_of(state, req, route)
            )
        problem = problem_of(body.messages)
        return await respond(
            state,
            key,
            request,
            route,
            shape,
            body.stream,
            lambda obs, _: solve(state, problem, route, body, limit, obs),
        )

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, key: Caller, request: Request) -> Any:
        route = routed(state, body, key)
        shape, extra, limit = shaped(state, body, route, key.limits, "text")
        text = body.text()
        await check_prompt(engine.policy, text, state.prompt_limit(key), "prompt")
        if route.strategy is None:
            if not state.engine.policy.capabilities.raw_prefix:
                raise ApiError(400, "prompt: this backend takes no raw prompts", param="prompt")
            req = GenRequest(prompt=text, **sampling(body, limit, shape.logprobs), extra=extra)
            return await respond(
                state, key, request, route, shape, body.stream, passthrough_of(state, req, route)
            )
        if blank(text):
            raise ApiError(400, "prompt: the question is empty", param="prompt")
        problem = Problem(question=text)
        return await respond(
            state,
            key,
            request,
            route,
            shape,
            body.stream,
            lambda obs, _: solve(state, problem, route, body, limit, obs),
        )

    return app


async def auth(request: Request) -> ApiKey:
    """The caller's key (a 401 without a valid one), when the server has keys; each key's
    requests a minute counted (429 past its `max_rpm`). (async: on the event loop, not in a
    worker thread, so the counts need no lock)"""
    state: State = request.app.state.ponder
    if not state.keys:
        key: ApiKey | None = ApiKey("anonymous", "", state.limits)
    else:
        key = state.keys.check(request.headers.get("authorization"))
    if key is None:
        raise ApiError(
            401,
            "Incorrect or missing API key: send 'Authorization: Bearer <key>'",
            code="invalid_api_key",
        )
    state.rate.check(key.name, key.limits.max_rpm)
    return key


Caller = Annotated[ApiKey, Depends(auth)]


def routed(state: State, body: Sampling, key: ApiKey) -> Route:
    limit = state.prompt_limit(key)
    route = resolve(body, state.served, key.limits, prompt_tokens=limit, router=state.router)
    strategy, asking = route.strategy, state.engine.prompting
    if strategy is not None and (why := strategy.thinking_unkept(asking)) is not None:
        # the server's --think-budget would be ignored by what this request chose
        field = "model" if strategy.answer_with == "reasoning" else "ponder.options.answer_with"
        raise ApiError(
            400,
            f"this server thinks within --think-budget {asking.think_budget}: {why}",
            param=field,
        )
    return route


# -- the work ------------------------------------------------------------------------------


def passthrough_of(state: State, req: GenRequest, route: Route) -> Work:
    return lambda observer, tokens: passthrough(state, req, route, observer, tokens)


async def passthrough(
    state: State, req: GenRequest, route: Route, observer: Observer, tokens: Tokens | None
) -> Outcome:
    """One request straight to the backend, through the scheduler (which bills it); with
    `tokens`, streamed token by token."""
    engine = state.engine
    ledger = Ledger(route.budget, on_charge=charged(observer))
    try:
        if tokens is None:
            gen = await engine.scheduler.generate(engine.policy, req, ledger)
        else:
            gen = await streamed(engine, req, ledger, tokens)
    except BudgetExceeded as e:
        raise ApiError(413, f"ponder.budget: {e}", param="ponder.budget") from None
    except BackendError as e:
        log.warning("%s: the backend failed: %s", REQUEST_ID.get(), e)
        raise backend_failed(e) from None
    ponder = {"strategy": None, **bill(ledger.by_role(), ledger.elapsed())}
    return Outcome(list(gen.choices), usage_body(ledger.spent, ponder))


async def streamed(engine: Engine, req: GenRequest, ledger: Ledger, tokens: Tokens) -> Generation:
    """Each choice's tokens told to `tokens` as the backend writes them, where it streams
    (n choices: n single requests, seeds seed, seed + 1, …, streamed side by side); on a
    backend that cannot, the whole choices once written (the stream sends them then)."""
    caps = await engine.scheduler.prepared(engine.policy, ledger)
    if not caps.stream:
        return await engine.scheduler.generate(engine.policy, req, ledger)
    singles = [
        replace(req, n=1, seed=None if req.seed is None else req.seed + i) for i in range(req.n)
    ]
    calls = [
        asyncio.create_task(
            engine.scheduler.generate(engine.policy, one, ledger, watch=relay(i, tokens))
        )
        for i, one in enumerate(singles)
    ]
    try:
        gens = await asyncio.gather(*calls)
    except BaseException:
        for call in calls:  # one failed (or the client went away): stop the others
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        raise
    return Generation(
        choices=[g.choices[0] for g in gens],
        prompt_tokens=sum(g.prompt_tokens for g in gens),
        cached_tokens=sum(g.cached_tokens for g in gens),
        reasoning_tokens=sum(g.reasoning_tokens for g in gens),
    )


def relay(index: int, tokens: Tokens) -> Callable[[], Watch]:
    """Watches (one per attempt) that hand choice `index`'s tokens on as they come. A failed
    attempt after tokens were sent is not retried: the client has them, and a new attempt
    would write another text after them."""
    sent = 0

    def fresh() -> Watch:
        if sent:
            raise BackendError(
                f"the backend's stream broke after {sent} tokens were sent; a retry would "
                "send another text after them",
                failure="unavailable",
            )

        def watch(token: TokenLogprob) -> bool:
            nonlocal sent
            sent += 1
            tokens(index, token)
            return False

        return watch

    return fresh


async def solve(
    state: State, problem: Problem, route: Route, body: Sampling, limit: int, observer: Observer
) -> Outcome:
    engine = state.engine
    assert route.strategy is not None
    stop = body.stops()
    prompting = engine.prompting.model_copy(
        update={"max_tokens": limit, "stop": [*engine.prompting.stop, *stop]}
    )
    try:
        result = await engine.solve(
            problem,
            route.strategy,
            seed=body.seed,
            budget=route.budget,
            observer=observer,
            prompting=prompting,
        )
    except UsageError as e:
        raise ApiError(400, str(e)) from None
    if result.error is not None and not result.candidates:
        log.warning("%s: the backend failed: %s", REQUEST_ID.get(), result.error)
        raise backend_down(BackendError(result.error))
    text, score = chosen_text(result)
    finish = "length" if result.stopped == "budget" else "stop"
    answer = Completion(text=text, completion_tokens=0, finish_reason=finish)
    return Outcome([answer], usage_body(result.total, ponder_usage(result, score)))


# An upstream's address in a backend error's message ("http://10.0.0.5:8000/v1/chat/…: "):
# logged with the request's id, never shown to the client.
_WHERE = re.compile(r"\bhttps?://\S+?: ")


def public(e: BackendError | str) -> str:
    """A backend failure as a client may read it: without the upstream's address."""
    return _WHERE.sub("", str(e))


def backend_down(e: BackendError) -> ApiError:
    return ApiError(
        503,
        f"the backend failed: {public(e)}",
        kind="server_error",
        code="backend_unavailable",
        retry_after=e.retry_after or RETRY_DOWN_S,
    )


def backend_failed(e: BackendError) -> ApiError:
    """A pass-through request's failure as its client gets it: an upstream's refusal (4xx)
    with the upstream's own status and error object; its 429 as 429 (with its Retry-After);
    502 for an upstream that failed (a 5xx other than 503 / 504), answered something that is
    not a response, or refused this server's own credentials (401 / 403: not the client's
    fault); 503 with Retry-After for one that is down (connection refused or dropped, or its
    own 503) and for any other backend failure; 504 for one that did not answer in time."""
    up = e.upstream or {}
    message = str(up.get("message") or public(e))
    param = up.get("param") if isinstance(up.get("param"), str) else None
    code = up.get("code") if isinstance(up.get("code"), str) else None
    if e.status == 429:
        return ApiError(
            429,
            message,
            kind=str(up.get("type") or "rate_limit_error"),
            code=code,
            retry_after=e.retry_after or 1,
        )
    if e.failure == "refused" and e.status in (401, 403, 407):
        return ApiError(
            502,
            f"the upstream refused this server's credentials (HTTP {e.status}): {message}",
            kind="server_error",
            code="upstream_auth_failed",
        )
    if e.failure == "refused":
        status = e.status if e.status is not None and 400 <= e.status < 500 else 400
        kind = str(up.get("type") or "invalid_request_error")
        return ApiError(status, message, param=param, kind=kind, code=code)
    if e.failure == "timeout" or e.status == 504:
        return ApiError(
            504,
            f"the backend did not answer in time: {public(e)}",
            kind="server_error",
            code="upstream_timeout",
        )
    if e.failure == "bad_response" or (e.failure == "server_error" and e.status != 503):
        return ApiError(
            502,
            f"the backend answered badly: {public(e)}",
            kind="server_error",
            code="bad_upstream_response",
        )
    return backend_down(e)


# -- responses -----------------------------------------------------------------------------


async def respond(
    state: State,
    key: ApiKey,
    request: Request,
    route: Route,
    shape: Shape,
    stream: bool,
    work: Work,
) -> Any:
    """Run `work` as one task once it has a place in flight (429 if none): a JSON response,
    or a stream. The place is given back when the work ends, however it ends."""
    spent, tally = spent_tally()
    served = request.state.served = Served(key.name, shape.model, route.name or "none", spent)
    ticket = state.gate.admit(key.name, state.concurrency_limit(key))

    def observe(event: dict[str, Any]) -> None:
        tally(event)
        state.metrics.charge(event)

    if stream:
        return Admitted(ticket, events(shape, work, observe, served))
    try:
        return await whole(request, shape, work, observe, spent)
    finally:
        ticket.release()


async def whole(
    request: Request, shape: Shape, work: Work, observe: Observer, spent: dict[str, int]
) -> Any:
    """The work's answer as one JSON response; a client that goes away before it is ready
    (watched for beside the work) cancels the work, whose calls then free their slots."""
    task = asyncio.create_task(work(observe, None))
    gone = asyncio.create_task(until_disconnected(request.receive))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            await asyncio.wait((task,))  # its calls cancelled and their slots given back
            log.info(
                "%s: the client went away; its work is cancelled (%d calls charged: %d prompt "
                "+ %d completion tokens)",
                REQUEST_ID.get(),
                spent["calls"],
                spent["prompt_tokens"],
                spent["completion_tokens"],
            )
            if not task.cancelled():
                task.exception()  # (finished as it was cancelled: retrieved, not raised)
            return JSONResponse(
                error_body("the client went away", "invalid_request_error"), CLIENT_GONE
            )
        outcome = task.result()
    finally:
        for t in (task, gone):
            t.cancel()
    created, rid = now(), new_id(shape.kind)
    choices: list[dict[str, Any]] = []
    for i, c in enumerate(outcome.choices):
        lps = logprobs_of(shape, c.logprobs)
        if shape.kind == "chat":
            message = {"role": "assistant", "content": c.text}
            choices.append(
                {"index": i, "message": message, "finish_reason": c.finish_reason, "logprobs": lps}
            )
        else:
            choices.append(
                {"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": lps}
            )
    return {
        "id": rid,
        "object": "chat.completion" if shape.kind == "chat" else "text_completion",
        "created": created,
        "model": shape.model,
        "choices": choices,
        "usage": outcome.usage,
    }


def logprobs_of(
    shape: Shape, tokens: list[TokenLogprob] | None, offset: int = 0
) -> dict[str, Any] | None:
    """A choice's (or a stream chunk's) `logprobs`, when the request asked for them."""
    if shape.logprobs is None or tokens is None:
        return None
    if shape.kind == "chat":
        return chat_logprobs(tokens, shape.logprobs)
    return text_logprobs(tokens, shape.logprobs, offset)


class Admitted(StreamingResponse):
    """A stream that gives its place in flight back when it ends, even if it never began."""

    def __init__(self, ticket: Ticket, content: AsyncGenerator[bytes, None]) -> None:
        super().__init__(content, media_type="text/event-stream")
        self.headers["Cache-Control"] = "no-cache"
        self.ticket = ticket
        self.content = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # a stream cut short while a chunk was being sent is closed now, not whenever it
            # is collected: its work stops, and it is counted as gone before it is logged
            await self.content.aclose()
            self.ticket.release()


# What a stream's work puts in its queue: a progress event, a token (choice index, token),
# or None when the work has ended.
Item = dict[str, Any] | tuple[int, TokenLogprob] | None


async def events(
    shape: Shape, work: Work, observe: Observer, served: Served
) -> AsyncGenerator[bytes, None]:
    """The stream: the work starts when the response does (a client gone before that starts
    nothing), and the first chunk goes out at once. A client that goes away mid-stream
    cancels the work, and the request is counted as gone (`served.gone`: 499)."""
    created, rid = now(), new_id(shape.kind)
    obj = "chat.completion.chunk" if shape.kind == "chat" else "text_completion"

    def chunk(
        index: int = 0,
        content: str | None = None,
        finish: str | None = None,
        *,
        role: bool = False,
        logprobs: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        if shape.kind == "chat":
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if content is not None:
                delta["content"] = content
            choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": index, "text": content or "", "finish_reason": finish}
        choice["logprobs"] = logprobs
        return {
            "id": rid,
            "object": obj,
            "created": created,
            "model": shape.model,
            "choices": [choice],
            **extra,
        }

    queue: asyncio.Queue[Item] = asyncio.Queue()

    def progress(event: dict[str, Any]) -> None:
        observe(event)
        queue.put_nowait(event)

    def token(index: int, t: TokenLogprob) -> None:
        queue.put_nowait((index, t))

    written: dict[int, str] = {}  # each choice's text sent so far
    opened = {0}  # choices whose assistant message has begun (chat)

    def content(index: int, text: str, tokens: list[TokenLogprob] | None = None) -> bytes:
        begun = index in opened
        opened.add(index)
        offset = len(written.get(index, ""))
        written[index] = written.get(index, "") + text
        lps = logprobs_of(shape, tokens, offset)
        return sse(chunk(index, text, role=not begun, logprobs=lps))

    task = asyncio.create_task(work(progress, token))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        yield sse(chunk(content="", role=True))  # at once: the work has started
        while (item := await queue.get()) is not None:
            if isinstance(item, tuple):
                index, t = item
                yield content(index, t.token, [t])
            else:
                yield sse(chunk(ponder=item))
        try:
            outcome = task.result()
        except ApiError as e:
            yield sse(e.body())
            yield sse("[DONE]")
            return
        except Exception:
            log.exception("%s: request failed", REQUEST_ID.get())
            yield sse(error_body("internal error while answering", "server_error"))
            yield sse("[DONE]")
            return
        for i, c in enumerate(outcome.choices):
            sent = written.get(i, "")
            if c.text.startswith(sent):
                if c.text[len(sent) :] or i not in opened:
                    yield content(i, c.text[len(sent) :])  # what no token brought
            else:  # (the backend's tokens did not add up to its text: what was sent stands)
                log.warning(
                    "%s: choice %d's streamed tokens differ from its text", REQUEST_ID.get(), i
                )
            yield sse(chunk(i, None, c.finish_reason))
        if shape.usage_chunk:
            last = chunk(usage=outcome.usage)
            last["choices"] = []
            yield sse(last)
        yield sse("[DONE]")
    except (asyncio.CancelledError, GeneratorExit):  # (cancelled waiting, or closed at a chunk)
        served.gone = True
        raise
    finally:
        if not task.done():
            task.cancel()  # the client went away: stop the work, free its slots
            log.info(
                "%s: the client went away mid-stream; its work is cancelled (%d calls charged)",
                REQUEST_ID.get(),
                served.spent["calls"],
            )


# -- request pieces ------------------------------------------------------------------------


def shaped(
    state: State, body: Sampling, route: Route, limits: Limits, kind: Kind
) -> tuple[Shape, dict[str, Any] | None, int]:
    """How the response is written, the request's fields passed to the backend as given,
    and its completion-token limit; a 400 naming a field that cannot be honoured."""
    caps = state.engine.policy.capabilities
    strategy = route.strategy is not None
    extra = body.passed_fields(caps.request_fields, strategy) or None
    k = body.logprobs_asked()
    if k is not None and strategy:
        raise ApiError(
            400,
            "logprobs: a strategy's answer comes without log-probabilities; ask the plain "
            f"model '{state.served}' for them",
            param="logprobs",
        )
    if k is not None and not caps.logprobs:
        raise ApiError(400, "logprobs: this backend gives no log-probabilities", param="logprobs")
    shape = Shape(kind, body.model, k, body.usage_chunk())
    return shape, extra, completion_limit(body, limits, state.max_tokens)


def completion_limit(body: Sampling, limits: Limits, default: int) -> int:
    asked, name = body.completion_limit()
    cap = limits.max_tokens
    if asked is not None and asked > cap:
        raise ApiError(
            413, f"{name} {asked} exceeds this key's limit {cap} (max_tokens)", param=name
        )
    return asked or min(default, cap)


def sampling(body: Sampling, limit: int, logprobs: int | None) -> dict[str, Any]:
    """A plain request's sampling, with OpenAI's defaults (temperature 1, top_p 1); asked
    log-probabilities come with at least one alternative (the backends' way of asking)."""
    return {
        "n": body.n,
        "max_tokens": limit,
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "stop": body.stops(),
        "seed": body.seed,
        "top_logprobs": 0 if logprobs is None else max(1, logprobs),
    }


def plain(m: ChatMessage) -> Message:
    return Message(role="system" if m.role == "developer" else m.role, content=m.text())


def problem_of(messages: list[ChatMessage]) -> Problem:
    """A strategy answers one question: an optional system message and one user message."""
    system = [m.text() for m in messages if m.role in ("system", "developer")]
    rest = [m for m in messages if m.role not in ("system", "developer")]
    if len(rest) != 1 or rest[0].role != "user":
        raise ApiError(
            400,
            "messages: a strategy answers one question, so give (at most) a system message "
            "and one user message; whole conversations pass through with the plain model name",
            param="messages",
        )
    question = rest[0].text()
    if blank(question):
        raise ApiError(400, "messages: the user message is empty", param="messages")
    return Problem(question=question, system="\n\n".join(system) or None)


def _union_branch(part: object) -> bool:
    return isinstance(part, str) and (part in ("str", "int", "float", "bool") or "[" in part)


def install_error_handlers(app: FastAPI) -> None:
    """Every error in OpenAI's format; never a stack trace to the client."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers())

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        # the deepest error is the most telling: of a union's branches, the one that got
        # furthest into the value (a list of parts, not "should be a string")
        first: dict[str, Any] = max(e.errors(), key=lambda x: len(x.get("loc", ())), default={})
        loc = tuple(first.get("loc", ()))
        if first.get("type") == "json_invalid":  # (its loc is the character where it broke)
            why = (first.get("ctx") or {}).get("error", "JSON decode error")
            at = f" (at character {loc[-1]})" if len(loc) > 1 else ""
            message = f"the body is not valid JSON: {why}{at}"
            return JSONResponse(error_body(message, "invalid_request_error"), 400)
        if loc == ("body",):  # none, or JSON that is not an object
            message = "the body must be a JSON object of the request's fields"
            sent = request.headers.get("content-type", "")
            if "json" not in sent:  # (FastAPI reads JSON only when the header says so)
                header = repr(sent) if sent else "missing"
                message += f", sent as application/json (its Content-Type is {header})"
            return JSONResponse(error_body(message, "invalid_request_error"), 400)
        # (a union's branch, such as content.str, is pydantic's word, not a field)
        fields = [x for x in loc if x != "body" and not _union_branch(x)]
        param = ".".join(str(x) for x in fields) or None
        msg = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        where = f"{param}: " if param else ""
        return JSONResponse(error_body(f"{where}{msg}", "invalid_request_error", param), 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(e.detail), "invalid_request_error"),
            status_code=e.status_code,
            headers=getattr(e, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        # (answered outside the middlewares, so the request id is put back here)
        rid = getattr(request.state, "request_id", "-")
        log.exception("%s: unexpected error on %s", rid, request.url.path)
        return JSONResponse(
            error_body("internal server error", "server_error"),
            500,
            headers={"x-request-id": rid},
        )
