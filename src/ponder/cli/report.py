"""`ponder report`: scaling curves with confidence intervals from a store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ponder.bench.report import write_report
from ponder.bench.store import Store
from ponder.cli.common import app, err, out
from ponder.errors import UsageError
from ponder.extras import has_extra
from ponder.lm import Price


@app.command()
def report(
    store: Annotated[Path, typer.Argument(help="A store written by `ponder bench`")],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder for report.md, CSVs, PNGs [default: STORE's name + -report]"
        ),
    ] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw PNG plots")] = True,
    price: Annotated[
        str | None,
        typer.Option(
            "--price",
            help="Price the stored tokens: PROMPT,COMPLETION[,CACHED] $ per million tokens",
        ),
    ] = None,
) -> None:
    """Scaling curves with confidence intervals from a store: markdown, CSV tables, PNG plots."""
    if not store.is_file():
        raise UsageError(f"{store}: no such store")
    price_ = Price.parse(price) if price is not None else None
    if plots and not has_extra("report"):
        plots = False
        err.print(
            "note: no plots: they need the report extra: pip install 'ponder[report]' "
            "(the tables and CSVs are written)",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    db = Store(store, create=False)
    try:
        target = out_dir or store.with_name(store.stem + "-report")
        path, summary = write_report(db, target, plots=plots, price=price_)
        out.print(summary)
    finally:
        db.close()
    out.print(f"report: {path}")
