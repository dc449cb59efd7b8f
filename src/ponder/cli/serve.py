"""`ponder serve`: OpenAI's API, a strategy per model name."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from ponder.cli.common import (
    BackendOpt,
    BackendOptionOpt,
    CtxSizeOpt,
    ModelOpt,
    ParamsOpt,
    PriceOpt,
    RayOpt,
    RouterOpt,
    SlotsOpt,
    SystemOpt,
    ThinkBudgetOpt,
    ThinkMinOpt,
    ThreadsOpt,
    TimeoutOpt,
    app,
    backend_config,
    err,
    open_engine,
    prompting,
)
from ponder.errors import UsageError
from ponder.extras import require_extra
from ponder.lm import BackendConfig
from ponder.plugins import parse_options
from ponder.runtime.engine import Engine
from ponder.runtime.prompting import Prompting
from ponder.runtime.scheduler import Scheduler


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on")] = 8000,
    model: ModelOpt = None,
    upstream: Annotated[
        list[str] | None,
        typer.Option(
            "--upstream",
            help="An OpenAI-compatible server to add strategies on top of; repeat it for "
            "replicas of one model (requests routed by prefix affinity, with failover)",
        ),
    ] = None,
    backend: BackendOpt = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            metavar="KEY",
            help="A key clients must send (Authorization: Bearer KEY), as vLLM's --api-key; "
            "repeat it for several (with --api-key-file, the file's keys work too)",
        ),
    ] = None,
    upstream_api_key: Annotated[
        str | None,
        typer.Option(
            "--upstream-api-key",
            metavar="KEY",
            envvar="PONDER_UPSTREAM_API_KEY",
            help="The bearer key this server sends to --upstream (each replica)",
        ),
    ] = None,
    timeout: TimeoutOpt = None,
    system: SystemOpt = None,
    think_budget: ThinkBudgetOpt = None,
    think_min: ThinkMinOpt = 0,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            "--api-key-file",
            help="Keys clients must send, one per line, optionally with that key's own "
            "limits (max_n= max_tokens= max_budget_tokens= max_prompt_tokens= "
            "max_concurrent= max_rpm=); or set PONDER_SERVE_API_KEYS=key1,key2",
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
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            "--max-body-bytes",
            min=1,
            help="Largest request body; larger ones get 413 before they are read in full "
            "[default: 64 bytes a context token, at least 1 MiB]",
        ),
    ] = None,
    max_prompt_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-prompt-tokens",
            min=1,
            help="Default per-key limit on a request's prompt tokens (413), counted by the "
            "model's tokenizer, or bounded by the prompt's bytes where the backend has none "
            "(--upstream) [default: the model's context length]",
        ),
    ] = None,
    max_concurrent: Annotated[
        int | None,
        typer.Option(
            "--max-concurrent",
            min=1,
            help="Default per-key limit on requests at once (429) [default: 64 with keys; "
            "without keys --max-in-flight]",
        ),
    ] = None,
    max_rpm: Annotated[
        int | None,
        typer.Option(
            "--max-rpm",
            min=1,
            help="Default per-key limit on requests a minute (429 with Retry-After) "
            "[default: none]",
        ),
    ] = None,
    slots: SlotsOpt = 8,
    ctx_size: CtxSizeOpt = 2048,
    price: PriceOpt = None,
    parameters: ParamsOpt = None,
    router: RouterOpt = None,
    threads: ThreadsOpt = None,
    backend_option: BackendOptionOpt = None,
    ray: RayOpt = None,
    replicas: Annotated[
        int | None,
        typer.Option(
            "--replicas",
            min=1,
            help="With --ray: Ray actors each holding the backend, served as replicas [default: 2]",
        ),
    ] = None,
    check_every: Annotated[
        float,
        typer.Option(
            "--check-every", min=0.0, help="Seconds between replicas' health checks (0: never)"
        ),
    ] = 5.0,
    log_requests: Annotated[
        bool,
        typer.Option(
            "--log-requests/--no-log-requests",
            help="A line on stderr per request: its id, client, status, seconds, key, model "
            "and tokens",
        ),
    ] = True,
) -> None:
    """Serve OpenAI's API: a model named STRATEGY[-N]/MODEL, such as vote-8/qwen2.5-coder-0.5b, runs
    that strategy; the plain model name passes straight through."""
    require_extra("serve", "ponder serve")
    import uvicorn

    from ponder.runtime.settings import tune_gc_for_serving
    from ponder.serve import Keys, Limits, create_app

    tune_gc_for_serving()  # requests leave cyclic garbage (runtime/settings.py)

    limits = Limits(
        max_n=max_n,
        max_tokens=max_request_tokens,
        max_budget_tokens=max_budget_tokens,
        max_prompt_tokens=max_prompt_tokens,
        max_concurrent=max_concurrent,
        max_rpm=max_rpm,
    )
    keys = Keys([])
    if api_key_file is not None or api_key:
        if api_key_file is not None:
            keys = Keys.from_file(api_key_file, limits)
        keys = keys.plus(Keys.from_list(api_key or [], limits, "--api-key"))
    elif os.environ.get("PONDER_SERVE_API_KEYS"):
        keys = Keys.from_env(os.environ["PONDER_SERVE_API_KEYS"], limits)
    if not host or any(c.isspace() for c in host):
        raise UsageError(f"--host {host!r}: not a host name or address")
    if host.startswith("[") and host.endswith("]"):  # an IPv6 address as URLs write it
        host = host[1:-1]
    name, colon, maybe_port = host.rpartition(":")
    if colon and name.count(":") == 0 and maybe_port.isdigit():  # (an IPv6 address has more)
        raise UsageError(f"--host {host}: give the host alone and the port with --port")
    if not keys and not loopback(host):
        raise UsageError(
            f"--host {host} exposes the server beyond this machine: give --api-key or "
            "--api-key-file, or set PONDER_SERVE_API_KEYS"
        )
    if router is not None:  # a bad router file fails before the model loads
        from ponder.search.auto import router_for

        router_for(str(router))
    urls: list[str | None] = list(upstream or [])
    if replicas is not None and ray is None:
        raise UsageError("--replicas: the number of Ray replicas goes with --ray")
    if ray is not None and len(urls) > 1:
        raise UsageError("--ray: replicas are Ray actors or --upstream servers, not both")
    configs = [
        backend_config(
            model=model,
            base_url=url,
            backend=backend,
            api_key=upstream_api_key,
            slots=slots,
            ctx_size=ctx_size,
            price=price,
            parameters=parameters,
            timeout=timeout,
            cancellable=True,  # a disconnected client's generation stops on the backend too
            threads=threads,
            options=parse_options(backend_option or [], "--backend-option"),
            flags={"base_url": "--upstream", "api_key": "--upstream-api-key"},
        )
        for url in (urls or [None])
    ]
    asked = prompting(max_tokens, system, think_budget, think_min)
    sock = listening_socket(host, port)  # before the model loads: a taken port fails at once
    if ray is not None or len(configs) > 1:
        engine = open_replicas(configs, asked, ray=ray, replicas=replicas or 2, every=check_every)
    else:
        engine = open_engine(configs[0], asked)
    app_ = create_app(
        engine,
        keys=keys,
        limits=limits,
        max_in_flight=max_in_flight,
        max_tokens=max_tokens,
        max_body_bytes=max_body_bytes,
        close_engine=True,
        router=None if router is None else str(router),
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    served_log = logging.getLogger("ponder.serve")
    served_log.addHandler(handler)
    served_log.setLevel(logging.INFO)
    served_log.propagate = False
    if not log_requests:
        logging.getLogger("ponder.serve.requests").setLevel(logging.WARNING)
    port = sock.getsockname()[1]  # the one bound: --port 0 asks the system for a free one
    where = f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"
    err.print(f"ponder serve: {where} ({'API keys required' if keys else 'no auth'})")
    config = uvicorn.Config(app_, host=host, port=port, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


def loopback(host: str) -> bool:
    """Whether `host` is this machine only: localhost (any case), 127.0.0.0/8, ::1 (bracketed
    or not)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port`, or a usage error naming both (a port in use, a host
    that is not this machine's)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        raise UsageError(
            f"--host {host} --port {port}: cannot listen there ({e.strerror or e})"
        ) from None
    return sock


def open_replicas(
    configs: list[BackendConfig],
    asked: Prompting,
    *,
    ray: str | None,
    replicas: int,
    every: float,
) -> Engine:
    """An engine over several replicas of one model: the servers `configs` name, or
    `replicas` Ray actors each holding the one backend `configs` names."""
    from ponder.lm import open_backend
    from ponder.lm.replicas import Replica, ReplicaLM, http_check

    def warn(message: str) -> None:
        err.print(f"[yellow]warning: {message}[/yellow]")

    members: list[Replica] = []
    if ray is not None:
        from ponder.lm.remote import remote_replicas

        with err.status(f"starting {replicas} Ray replicas…"):
            for lm in remote_replicas(configs[0], replicas, ray):
                members.append(Replica(lm.name, lm, lm.ping))
    else:
        for config in configs:
            assert config.base_url is not None
            members.append(
                Replica(config.base_url, open_backend(config), http_check(config.base_url))
            )
    router = ReplicaLM(members, check_every=every, warn=warn)
    return Engine(
        router, prompting=asked, scheduler=Scheduler(request_timeout_s=configs[0].timeout)
    )
