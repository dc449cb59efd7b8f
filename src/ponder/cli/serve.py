"""`ponder serve`: OpenAI's API, a strategy per model name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ponder.cli.common import (
    ApiKeyOpt,
    BackendOpt,
    CtxSizeOpt,
    ModelOpt,
    ParamsOpt,
    PriceOpt,
    SlotsOpt,
    SystemOpt,
    ThinkBudgetOpt,
    ThinkMinOpt,
    TimeoutOpt,
    app,
    backend_config,
    err,
    open_engine,
    prompting,
)
from ponder.errors import UsageError
from ponder.extras import require_extra


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    model: ModelOpt = None,
    upstream: Annotated[
        str | None,
        typer.Option("--upstream", help="An OpenAI-compatible server to add strategies on top of"),
    ] = None,
    backend: BackendOpt = None,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = None,
    system: SystemOpt = None,
    think_budget: ThinkBudgetOpt = None,
    think_min: ThinkMinOpt = 0,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            "--api-key-file",
            help="Keys clients must send, one per line (optionally with limits such as "
            "max_n=8); or set PONDER_SERVE_API_KEYS=key1,key2",
        ),
    ] = None,
    max_n: Annotated[int, typer.Option("--max-n", min=1, help="Default per-key limit on n")] = 64,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="Per sample, when a request gives none")
    ] = 512,
    max_request_tokens: Annotated[
        int, typer.Option("--max-request-tokens", min=1, help="Default per-key max_tokens limit")
    ] = 4096,
    max_budget_tokens: Annotated[
        int | None,
        typer.Option("--max-budget-tokens", min=1, help="Default per-key cap on a request's bill"),
    ] = None,
    max_in_flight: Annotated[
        int, typer.Option("--max-in-flight", min=1, help="Requests at once; more get 429")
    ] = 512,
    slots: SlotsOpt = 8,
    ctx_size: CtxSizeOpt = 2048,
    price: PriceOpt = None,
    parameters: ParamsOpt = None,
) -> None:
    """Serve OpenAI's API: the model STRATEGY[-N]/MODEL (e.g. vote-8/qwen2.5-coder-0.5b) runs
    that strategy; the plain model name passes straight through."""
    require_extra("serve", "ponder serve")
    import uvicorn

    from ponder.serve import Keys, Limits, create_app

    limits = Limits(max_n=max_n, max_tokens=max_request_tokens, max_budget_tokens=max_budget_tokens)
    keys = Keys([])
    if api_key_file is not None:
        keys = Keys.from_file(api_key_file, limits)
    elif os.environ.get("PONDER_SERVE_API_KEYS"):
        keys = Keys.from_env(os.environ["PONDER_SERVE_API_KEYS"], limits)
    if not keys and host not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError(
            f"--host {host} exposes the server beyond this machine: give --api-key-file "
            "or set PONDER_SERVE_API_KEYS"
        )
    config = backend_config(
        model=model,
        base_url=upstream,
        backend=backend,
        api_key=api_key,
        slots=slots,
        ctx_size=ctx_size,
        price=price,
        parameters=parameters,
        timeout=timeout,
        cancellable=True,  # a disconnected client's generation stops on the backend too
    )
    engine = open_engine(config, prompting(max_tokens, system, think_budget, think_min))
    app_ = create_app(
        engine,
        keys=keys,
        limits=limits,
        max_in_flight=max_in_flight,
        max_tokens=max_tokens,
        close_engine=True,
    )
    where = f"http://{host}:{port}/v1"
    err.print(f"ponder serve: {where} ({'API keys required' if keys else 'no auth'})")
    uvicorn.Server(uvicorn.Config(app_, host=host, port=port, log_level="warning")).run()
