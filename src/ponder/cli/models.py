"""`ponder models`: the registered models, fetched and verified."""

from __future__ import annotations

from typing import Annotated

import typer

from ponder.cli.common import app, out, pull_progress
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
    spec = reg.spec(name)
    with pull_progress() as progress:
        path = reg.pull(spec, progress)
    out.print(f"{name}: {path} (sha256 verified)")
