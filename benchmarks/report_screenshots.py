"""Screenshots of `ponder report --html` in headless Chromium: the top of the page (the plots)
and a search tree opened along its chosen path (by the page's own deep link). A page that
logs an error in the browser fails the script.

The store is copied first (SQLite's backup API: a store being written is copied consistently,
and the original is never opened by ponder, which would migrate it). The tree shown is the
first problem that the given direct run answered right, whose tree has 10 to 40 nodes.

    .venv/bin/python benchmarks/report_screenshots.py benchmarks/reports/search-100.sqlite \\
        --run beam --out benchmarks/reports
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

from ponder.bench.analysis import group_label
from ponder.bench.html import write_html_report
from ponder.bench.store import Store

# the tests' small DevTools client (Chromium over a pipe, standard library only)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser import Browser


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--run", default="beam", help="the direct run whose tree to show")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/reports"))
    ap.add_argument("--name", default="html-report")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / args.store.name
        src = sqlite3.connect(f"file:{args.store}?mode=ro", uri=True)
        dst = sqlite3.connect(copy)
        src.backup(dst)
        dst.close()
        src.close()
        store = Store(copy, create=False)
        page, _, _ = write_html_report(store, Path(tmp) / "report", plots=True)
        runs = [r for r in store.runs() if r.kind == "direct" and r.strategy == args.run]
        if not runs:
            sys.exit(f"no direct run '{args.run}' in {args.store}")
        run = runs[0]
        right = {
            pid
            for pid, ok in store.db.execute(
                "SELECT pid, correct FROM units WHERE rid = ? AND unit = 0", (run.rid,)
            )
            if ok
        }
        sizes = {pid: len(t.get("tree", [])) for (pid, _), t in store.traces(run.rid).items()}
        if not sizes:
            sys.exit(f"run '{args.run}' kept no trees (ponder bench --keep-trees)")
        fits = [pid for pid in sorted(sizes) if pid in right and 10 <= sizes[pid] <= 40]
        pick = fits[0] if fits else min(sizes)
        # the run's group as the page numbers them (its data block lists the groups)
        block = page.read_text().split('type="application/json">', 1)[1].split("</script>")[0]
        fulls = [g["full"] for g in json.loads(block)["groups"]]
        index = fulls.index(group_label(run))
        store.close()
        args.out.mkdir(parents=True, exist_ok=True)
        top = args.out / f"{args.name}.png"
        tree = args.out / f"{args.name}-tree.png"
        with Browser.start(Path(tmp)) as browser:
            for path, url in (
                (top, page.as_uri()),
                (tree, f"{page.as_uri()}#tree-{pick}-{index}-0"),
            ):
                tab = browser.open(url, width=1400, height=1400)
                tab.settle()
                if errors := tab.errors():
                    sys.exit(f"the page logged errors: {errors}")
                tab.screenshot(path)
        print(f"{top}\n{tree}  (problem pid {pick}, run '{args.run}')")


if __name__ == "__main__":
    main()
