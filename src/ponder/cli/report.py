"""`ponder report`: scaling curves with confidence intervals from a store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ponder.bench.html import write_html_report
from ponder.bench.report import write_report
from ponder.bench.store import Store
from ponder.cli.common import app, err, out
from ponder.errors import UsageError, no_file
from ponder.extras import has_extra
from ponder.lm import Price


@app.command()
def report(
    store: Annotated[Path, typer.Argument(help="A store written by `ponder bench`")],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for report.md, CSVs, PNGs (and report.html) [default: STORE's name "
            "+ -report]",
        ),
    ] = None,
    as_html: Annotated[
        bool,
        typer.Option(
            "--html",
            help="Also write report.html: one self-contained file (plots, tables, paired "
            "comparisons, every problem's samples, search trees kept by --keep-trees)",
        ),
    ] = False,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw PNG plots")] = True,
    price: Annotated[
        str | None,
        typer.Option(
            "--price",
            help="Price the stored tokens: PROMPT,COMPLETION[,CACHED] $ per million tokens",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (the report is written too)")
    ] = False,
) -> None:
    """Scaling curves with confidence intervals from a store: markdown, CSV tables, PNG plots;
    with --html, a self-contained HTML report that also browses samples and search trees."""
    if not store.is_file():
        raise UsageError(no_file(store, "store"))
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
    target = out_dir or store.with_name(store.stem + "-report")
    db = Store(store, readonly=True)
    try:
        if target.is_dir() and any(target.iterdir()) and not report_folder(target):
            raise UsageError(
                f"--out {target}: a folder holding other files (the report writes report.md, "
                "CSVs and plots, over any of the same name); give a new folder or an earlier "
                "report's"
            )
        try:  # the folder before the analysis: a bad --out fails first, not last
            target.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(
                f"--out {target}: cannot make the report folder ({e.strerror})"
            ) from None
        if as_html:
            page, path, summary = write_html_report(db, target, plots=plots, price=price_)
        else:
            path, summary = write_report(db, target, plots=plots, price=price_)
    finally:
        db.close()
    if as_json:
        print(json.dumps({"report": str(path), "summary": summary.rows}, indent=2))
        return
    out.print(summary)
    out.print(f"report: {path}")
    if as_html:
        out.print(f"html: {page}")


def report_folder(folder: Path) -> bool:
    """Whether `folder` holds an earlier report (written over by this one, as asked)."""
    return (folder / "report.md").is_file() or (folder / "report.html").is_file()
