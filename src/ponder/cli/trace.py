"""`ponder trace`: step-level preference pairs from search traces."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ponder.cli.common import app, err, output_file
from ponder.errors import DataError

trace_app = typer.Typer(no_args_is_help=True, help="Search traces: preference pairs.")
app.add_typer(trace_app, name="trace")


@trace_app.command("pairs")
def trace_pairs(
    trace: Annotated[Path, typer.Argument(help="A JSONL trace written by `ponder solve --trace`")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the pairs here [default: stdout]")
    ] = None,
    kind: Annotated[str, typer.Option("--kind", help="Answer kind for gold checks")] = "math",
    min_margin: Annotated[
        float, typer.Option("--min-margin", min=0.0, help="Score gap below which no pair")
    ] = 0.0,
) -> None:
    """Step-level preference pairs (same prefix; chosen step on a better path, rejected
    sibling) as JSONL for Step-DPO / MCTS-DPO style training."""
    from ponder.answers import equivalent
    from ponder.search.tree import Tree, preference_pairs
    from ponder.tasks.data import read_jsonl

    if out_file is not None:
        output_file(out_file, "--out", inputs=[trace])
    lines = []
    for lineno, record in read_jsonl(trace):
        try:
            tree = Tree.from_records(record["question"], record["nodes"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{trace}:{lineno}: not a search trace ({e})") from None
        gold_answer = record.get("gold")
        correct = (
            {
                n.id: equivalent(n.answer, gold_answer, kind)
                for n in tree.terminals()
                if n.answer is not None
            }
            if gold_answer is not None
            else {}
        )
        for pair in preference_pairs(tree, correct, min_margin=min_margin):
            lines.append(json.dumps({"trace_line": lineno, **pair}, ensure_ascii=False))
    text = "\n".join(lines) + ("\n" if lines else "")
    if out_file is None:
        sys.stdout.write(text)
    else:
        out_file.write_text(text, encoding="utf-8")
        err.print(f"{len(lines)} pairs: {out_file}")
