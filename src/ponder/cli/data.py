"""`ponder data`: the benchmark data sets, where each is, and fetching the ones not here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ponder.cli.common import app, out, pull_progress
from ponder.errors import UsageError, no_folder
from ponder.tasks.catalog import SETS
from ponder.tasks.data import data_roots
from ponder.tasks.pull import data_set, pull, where_is

data_app = typer.Typer(
    no_args_is_help=True, help="Benchmark data: list the sets, fetch the ones not here."
)
app.add_typer(data_app, name="data")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


@data_app.command("list")
def data_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON")] = False,
) -> None:
    """Every data set: where it is (bundled, pulled, $PONDER_DATA_DIR, shared, or missing),
    its size and its license."""
    rows = []
    for ds in SETS.values():
        here = where_is(ds)
        rows.append(
            {
                "name": ds.name,
                "where": here.where,
                "folder": str(here.folder) if here.folder else None,
                "bytes": ds.size,
                "license": ds.license,
                "source": ds.source,
                "hub": bool(ds.hub),
            }
        )
    if as_json:
        print(json.dumps({"sets": rows, "lookup": [[w, str(p)] for w, p in data_roots()]}))
        return
    width = max(len(r["name"]) for r in rows)  # type: ignore[arg-type]
    for r in rows:
        where = r["where"]
        style = "red" if where == "missing" else "green"
        out.print(
            f"[bold]{r['name']:<{width}}[/bold]  [{style}]{where:<16}[/{style}]"
            f"{_size(r['bytes']):>9}  {escape(str(r['license']))}",  # type: ignore[arg-type]
            soft_wrap=True,
            highlight=False,
        )
    order = "; ".join(f"{what} {path}" for what, path in data_roots())
    hint = f"looked for in order: {order}. Fetch a missing set: ponder data pull NAME [--from DIR]"
    out.print(f"[dim]{escape(hint)}[/dim]", soft_wrap=True, highlight=False)


@data_app.command("pull")
def data_pull(
    names: Annotated[list[str], typer.Argument(help="Data sets to fetch (see `ponder data list`)")],
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="A folder holding a copy, laid out like the data folder (e.g. ../shared/data) "
            "[default: the Hugging Face hub]",
        ),
    ] = None,
    hub_repo: Annotated[
        str | None,
        typer.Option(
            "--hub-repo",
            envvar="PONDER_DATA_HUB_REPO",
            help="A hub dataset laid out like the data folder (<set>/<file>), tried after the "
            "known hub copies",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Fetch even where the set is already here")
    ] = False,
) -> None:
    """Fetch data sets into the user data folder, each file checked by sha256."""
    for name in names:
        data_set(name)  # an unknown name lists the known ones, before anything is fetched
    if source is not None and not source.is_dir():  # (even where no set needs it)
        raise UsageError(f"--from {no_folder(source)}")
    for name in names:
        with pull_progress("data") as progress:
            got = pull(name, folder=source, hub_repo=hub_repo, progress=progress, force=force)
        out.print(f"{name}: {got.where} ({got.folder})", soft_wrap=True, markup=False)
