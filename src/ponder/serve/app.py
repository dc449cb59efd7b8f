"""The FastAPI app: OpenAI's routes over an Engine, strategies chosen per request.

Every request runs as one task: a strategy through `Engine.solve`, or a plain request
straight through the scheduler. A streamed request sends its first chunk at once, then a
chunk per progress event as the work reports it (`ponder` field, ignored by stock clients),
then the answer, the usage and `[DONE]`; a client that goes away cancels the task, which
releases its backend slots.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from ponder import __version__
from ponder.errors import BackendError, BudgetExceeded, UsageError
from ponder.runtime.budget import Ledger
from ponder.runtime.engine import Engine, charged
from ponder.serve.auth import ApiKey, Keys, Limits
from ponder.serve.protocol import (
    ApiError,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    Sampling,
    bill,
    chosen_text,
    error_body,
    new_id,
    now,
    ponder_usage,
    sse,
    usage_body,
)
from ponder.serve.routing import Route, resolve, served_models
from ponder.types import GenRequest, Message, Problem

log = logging.getLogger("ponder.serve")
Observer = Callable[[dict[str, Any]], None]
Kind = Literal["chat", "text"]


@dataclass
class Outcome:
    """What a request produced: one (text, finish reason) per choice, and its usage."""

    choices: list[tuple[str, str]]
    usage: dict[str, Any]


Work = Callable[[Observer], Coroutine[Any, Any, Outcome]]


@dataclass
class State:
    engine: Engine
    keys: Keys
    limits: Limits
    max_in_flight: int
    max_tokens: int
    router: str | None = None  # the router file `auto/MODEL` reads
    served: str = ""
    in_flight: int = 0
    started: float = field(default_factory=time.monotonic)


def create_app(
    engine: Engine,
    *,
    keys: Keys | None = None,
    limits: Limits | None = None,
    max_in_flight: int = 512,
    max_tokens: int = 512,
    served: str | None = None,
    close_engine: bool = False,
    router: str | None = None,
) -> FastAPI:
    """The app over `engine` (closed at shutdown if `close_engine`, else the caller's to
    close). `served` names the backend's model; by default the backend's own name, learnt at
    start-up."""
    state = State(
        engine, keys or Keys([]), limits or Limits(), max_in_flight, max_tokens, router=router
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await engine.policy.prepare()
        except BackendError as e:  # the server still starts; requests get 503 until it is up
            log.warning("backend not ready at start-up: %s", e)
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

    app.state.ponder = state

    @app.get("/health")
    async def health() -> dict[str, Any]:
        out = {
            "status": "ok",
            "model": state.served,
            "in_flight": state.in_flight,
            # how step strategies continue a partial solution on the backend (a server's probe)
            "continuation": state.engine.policy.capabilities.continuation,
            "uptime_s": round(time.monotonic() - state.started, 1),
        }
        stats = getattr(state.engine.policy, "stats", None)
        if callable(stats):  # several replicas (ponder.lm.replicas): each one's state
            out["replicas"] = stats()
        return out

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
    async def chat(body: ChatRequest, key: Caller) -> Any:
        route = resolve(body, state.served, key.limits, router=state.router)
        limit = completion_limit(body, key.limits, state.max_tokens)
        if route.strategy is None:
            req = GenRequest(messages=[plain(m) for m in body.messages], **sampling(body, limit))
            return await respond(
                state, "chat", body, lambda obs: passthrough(state, req, route, obs)
            )
        problem = problem_of(body.messages)
        return await respond(
            state, "chat", body, lambda obs: solve(state, problem, route, body, limit, obs)
        )

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, key: Caller) -> Any:
        route = resolve(body, state.served, key.limits, router=state.router)
        limit = completion_limit(body, key.limits, state.max_tokens)
        text = body.text()
        if route.strategy is None:
            if not state.engine.policy.capabilities.raw_prefix:
                raise ApiError(400, "prompt: this backend takes no raw prompts", param="prompt")
            req = GenRequest(prompt=text, **sampling(body, limit))
            return await respond(
                state, "text", body, lambda obs: passthrough(state, req, route, obs)
            )
        if not text.strip():
            raise ApiError(400, "prompt: the question is empty", param="prompt")
        problem = Problem(question=text)
        return await respond(
            state, "text", body, lambda obs: solve(state, problem, route, body, limit, obs)
        )

    return app


def auth(request: Request) -> ApiKey:
    """The caller's key (a 401 without a valid one), when the server has keys."""
    state: State = request.app.state.ponder
    if not state.keys:
        return ApiKey("no auth", "", state.limits)
    key = state.keys.check(request.headers.get("authorization"))
    if key is None:
        raise ApiError(
            401,
            "Incorrect or missing API key: send 'Authorization: Bearer <key>'",
            code="invalid_api_key",
        )
    return key


Caller = Annotated[ApiKey, Depends(auth)]


# -- the work ------------------------------------------------------------------------------


async def passthrough(state: State, req: GenRequest, route: Route, observer: Observer) -> Outcome:
    """One request straight to the backend, through the scheduler (which bills it)."""
    engine = state.engine
    ledger = Ledger(route.budget, on_charge=charged(observer))
    try:
        gen = await engine.scheduler.generate(engine.policy, req, ledger)
    except BudgetExceeded as e:
        raise ApiError(413, f"ponder.budget: {e}", param="ponder.budget") from None
    except BackendError as e:
        raise backend_down(e) from None
    ponder = {"strategy": None, **bill(ledger.by_role(), ledger.elapsed())}
    choices = [(c.text, c.finish_reason) for c in gen.choices]
    return Outcome(choices, usage_body(ledger.spent, ponder))


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
        raise backend_down(BackendError(result.error))
    text, score = chosen_text(result)
    finish = "length" if result.stopped == "budget" else "stop"
    return Outcome([(text, finish)], usage_body(result.total, ponder_usage(result, score)))


def backend_down(e: BackendError) -> ApiError:
    return ApiError(
        503, f"the backend failed: {e}", kind="server_error", code="backend_unavailable"
    )


# -- responses -----------------------------------------------------------------------------


async def respond(state: State, kind: Kind, body: Sampling, work: Work) -> Any:
    """Run `work` as one task under the in-flight limit: a JSON response, or a stream."""
    if state.in_flight >= state.max_in_flight:
        raise ApiError(
            429,
            f"the server is at its limit of {state.max_in_flight} requests in flight; retry",
            kind="rate_limit_error",
            code="queue_full",
        )
    if body.stream:
        return stream(state, kind, body.model, work)
    return await whole(state, kind, body.model, work)


async def whole(state: State, kind: Kind, model: str, work: Work) -> dict[str, Any]:
    state.in_flight += 1
    try:
        outcome = await work(lambda event: None)
    finally:
        state.in_flight -= 1
    created, rid = now(), new_id(kind)
    if kind == "chat":
        choices: list[dict[str, Any]] = [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": None,
            }
            for i, (text, finish) in enumerate(outcome.choices)
        ]
        obj = "chat.completion"
    else:
        choices = [
            {"index": i, "text": text, "finish_reason": finish, "logprobs": None}
            for i, (text, finish) in enumerate(outcome.choices)
        ]
        obj = "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": created,
        "model": model,
        "choices": choices,
        "usage": outcome.usage,
    }


def stream(state: State, kind: Kind, model: str, work: Work) -> StreamingResponse:
    """The work starts when the response does (a client gone before that starts nothing),
    and the first chunk goes out at once."""
    created, rid = now(), new_id(kind)
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

    def chunk(
        index: int = 0,
        content: str | None = None,
        finish: str | None = None,
        *,
        role: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        if kind == "chat":
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if content is not None:
                delta["content"] = content
            choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": index, "text": content or "", "finish_reason": finish}
        return {
            "id": rid,
            "object": obj,
            "created": created,
            "model": model,
            "choices": [choice],
            **extra,
        }

    async def events() -> AsyncIterator[bytes]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        task = asyncio.create_task(work(queue.put_nowait))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        state.in_flight += 1
        try:
            yield sse(chunk(content="", role=True))  # at once: the work has started
            while (event := await queue.get()) is not None:
                yield sse(chunk(ponder=event))
            try:
                outcome = task.result()
            except ApiError as e:
                yield sse(e.body())
                yield sse("[DONE]")
                return
            except Exception:
                log.exception("request failed")
                yield sse(error_body("internal error while answering", "server_error"))
                yield sse("[DONE]")
                return
            for i, (text, finish) in enumerate(outcome.choices):
                if i:
                    yield sse(chunk(i, "", role=True))
                yield sse(chunk(i, text))
                yield sse(chunk(i, None, finish))
            last = chunk(usage=outcome.usage)
            last["choices"] = []
            yield sse(last)
            yield sse("[DONE]")
        finally:
            if not task.done():
                task.cancel()  # the client went away: stop the work, free its slots
            state.in_flight -= 1

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


# -- request pieces ------------------------------------------------------------------------


def completion_limit(body: Sampling, limits: Limits, default: int) -> int:
    asked = body.completion_limit()
    if asked is not None and asked > limits.max_tokens:
        raise ApiError(
            413,
            f"max_tokens {asked} exceeds this key's limit {limits.max_tokens}",
            param="max_tokens",
        )
    return asked or min(default, limits.max_tokens)


def sampling(body: Sampling, limit: int) -> dict[str, Any]:
    """A plain request's sampling, with OpenAI's defaults (temperature 1, top_p 1)."""
    return {
        "n": body.n,
        "max_tokens": limit,
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "stop": body.stops(),
        "seed": body.seed,
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
    if not question.strip():
        raise ApiError(400, "messages: the user message is empty", param="messages")
    return Problem(question=question, system="\n\n".join(system) or None)


def install_error_handlers(app: FastAPI) -> None:
    """Every error in OpenAI's format; never a stack trace to the client."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        param = ".".join(loc) or None
        msg = first.get("msg", "invalid request")
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
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse(error_body("internal server error", "server_error"), 500)
