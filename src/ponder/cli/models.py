"""`ponder models`: the registered models, fetched and verified."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from ponder.cli.common import ApiKeyOpt, TimeoutOpt, app, err, out, pull_progress
from ponder.errors import UsageError
from ponder.lm.registry import DEFAULT_MODEL, Registry

models_app = typer.Typer(no_args_is_help=True, help="List and fetch models.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list() -> None:
    """Registered models and whether each is cached."""
    reg = Registry()
    for name, spec in reg.models.items():
        sources = ["local dirs ($PONDER_MODEL_DIRS)"]
        if spec.hub_repo:
            sources.append(f"hub {spec.hub_repo}")
        if spec.pypi_parts:
            p = spec.pypi_parts
            sources.append(f"PyPI {p.package_prefix}1..{p.count}=={p.version}")
        default = " (default)" if name == DEFAULT_MODEL else ""
        cached = "cached" if reg.is_verified(spec) else "not cached"
        out.print(
            f"[bold]{name}[/bold]{default}: {spec.parameters / 1e9:.2f} B parameters, "
            f"{spec.size / 2**20:,.0f} MiB, {cached}",
            soft_wrap=True,
        )
        out.print(f"  sha256 {spec.sha256}", soft_wrap=True)
        out.print(f"  chat template: {spec.chat_template}", soft_wrap=True)
        out.print(f"  sources: {'; '.join(sources)}", soft_wrap=True)
    out.print(f"[dim]cache: {reg.root}[/dim]", soft_wrap=True)


@models_app.command("pull")
def models_pull(name: Annotated[str, typer.Argument(help="A registered model name")]) -> None:
    """Fetch a model, verify its sha256, and cache it."""
    reg = Registry()
    spec = reg.spec(name, paths_too=False)  # (a .gguf of your own needs no fetching)
    with pull_progress() as progress:
        path = reg.pull(spec, progress)
    out.print(f"{name}: {path} (sha256 verified)")


@models_app.command("probe")
def models_probe(
    url: Annotated[str, typer.Argument(help="An OpenAI-compatible server's base URL")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="The server's model [default: its first]")
    ] = None,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was found as JSON")] = False,
) -> None:
    """What a server supports: n, logprobs, streaming, raw completions, slots, and how a step
    search continues a partial solution there (each method tried, and what it saw)."""
    from ponder.lm.config import server_url
    from ponder.lm.openai import DEFAULT_TIMEOUT_S, OpenAILM

    try:
        server_url(url)  # as --base-url is checked: not a network failure later
    except ValueError as e:
        raise UsageError(f"URL {e}") from None

    async def go() -> dict[str, Any]:
        lm = OpenAILM(url, model=model, api_key=api_key, timeout_s=timeout or DEFAULT_TIMEOUT_S)
        try:
            with err.status(f"probing {lm.base_url}…"):
                await lm.prepare()
            spent = lm.take_probe_usage()
            keys = ("calls", "prompt_tokens", "completion_tokens", "seconds")
            return lm.report() | {"spent": spent.model_dump(include=set(keys))}
        finally:
            await lm.aclose()

    found = asyncio.run(go())
    if as_json:
        print(json.dumps(found, indent=2))
        return
    yes = {True: "yes", False: "no"}
    out.print(f"[bold]{found['server']}[/bold] model {found['model'] or '(none named)'}")
    native = " (used: each choice counted from its logprobs)" if found["native_n"] else ""
    if found["n"] and not found["native_n"]:
        native = " (not used: no per-choice logprobs to count by; requests fan out)"
    out.print(f"  n > 1 in one request: {yes[found['n']]}{native}")
    out.print(f"  logprobs: {yes[found['logprobs']]}; streaming: {yes[found['stream']]}")
    out.print(f"  raw completions (/v1/completions): {yes[found['raw_completions']]}")
    pin = " (requests pinned to slots: id_slot, cache_prompt)" if found["pin_slots"] else ""
    out.print(f"  slots: {found['slots']}{pin}; context per slot: {found['context_length']}")
    if found["continuation"]:
        out.print(
            f"  continuation: [bold]{found['continuation']}[/bold]: {found['continuation_how']}"
        )
    else:
        out.print("  continuation: [bold]none[/bold]: step search cannot run on this server")
    for attempt in found["tried"]:
        mark = "ok" if attempt["ok"] else "no"
        out.print(f"    tried {attempt['method']}: {mark} ({attempt['detail']})", markup=False)
    spent = found["spent"]
    out.print(
        f"  the probe spent: {spent['calls']} calls · {spent['completion_tokens']} completion + "
        f"{spent['prompt_tokens']} prompt tokens · {spent['seconds']:.1f} s"
    )
