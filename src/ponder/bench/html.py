"""`ponder report --html`: the report as one self-contained HTML file.

Everything is inside the file: the CSS and a small script inline, the plots as base64 PNGs, the
stored samples and search trees as JSON in a `<script type="application/json">` block (with
`<` escaped, so no stored text can end it). A Content-Security-Policy allows nothing from
outside (no network: fonts, scripts and images come from the file or the system), and the
script puts stored text on the page only as text (`textContent`), never as HTML: a model's
output that contains markup shows as the characters it is.

The page has the runs, and per task and model the plots, a key from each short label to its
method's full configuration, the tables, paired method-against-method comparisons, the
verifier and confidence sections; then a browser of the problems: each problem's question,
gold answer and every run's samples (answer, correctness, tokens, finish reason, text, Python
calls), and for runs kept with `ponder bench --keep-trees` the search tree (nodes fold and
unfold; each shows its step, score, and whether it was kept, ends the solution, and its
answer) and refine's revisions. `#p-PID` opens a problem; `#tree-PID-GROUP-UNIT` opens a tree
along its chosen path.
"""

from __future__ import annotations

import base64
import html
import json
import re
import time
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from ponder.bench.analysis import Group
from ponder.bench.report import (
    INTRO,
    Cell,
    ReportData,
    Section,
    Summary,
    curves,
    gather,
    priced_note,
    runs_section,
    sections,
    summary_of,
    write_files,
)
from ponder.bench.store import Store
from ponder.lm import Price

# What the problem browser carries, at most (the page says what it left out)
MAX_PROBLEMS = 500
MAX_SAMPLES = 64  # samples of one pool for one problem
MAX_TEXT = 12_000  # characters of one sample's text
MAX_STEP = 4_000  # characters of one tree node's step
MAX_NODES = 4_000  # nodes of one tree


def write_html_report(
    store: Store, out: Path, *, plots: bool = True, price: Price | None = None
) -> tuple[Path, Path, Summary]:
    """report.html beside report.md, the CSVs and the PNGs in `out`: (the HTML's path, the
    markdown's, the one-screen summary)."""
    data = gather(store, price)
    md, images = write_files(store, data, out, plots=plots, price=price)
    page = render(store, data, images, out, price=price)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path, md, summary_of(data.groups, data.by_group)


# -- the page ---------------------------------------------------------------------------------
def render(
    store: Store,
    data: ReportData,
    images: dict[tuple[str, str], list[str]],
    folder: Path,
    *,
    price: Price | None = None,
) -> str:
    """The whole page: static tables rendered here (escaped), samples and trees as JSON that
    the page's script lays out when a problem is opened."""
    e = html.escape
    name = store.path.name
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>ponder report: {e(name)}</title>",
        '<link rel="icon" href="data:,">',
        f"<style>{asset('report.css')}</style></head><body>",
        f"<header><h1>ponder report: {e(name)}</h1>",
        f'<p class="meta">Generated {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} '
        f"from <code>{e(str(store.path))}</code>. {_prose(INTRO)}"
        + (f" {_prose(priced_note(price))}" if price is not None else "")
        + "</p>",
        "<nav>",
    ]
    pairs = list(curves(data.points))
    for i, (task, model) in enumerate(pairs):
        parts.append(f'<a href="#tm-{i}">{e(task)} · {e(model)}</a>')
    parts.append('<a href="#runs">Runs</a><a href="#problems">Problems</a></nav></header><main>')
    for i, (task, model) in enumerate(pairs):
        parts.append(f'<section id="tm-{i}"><h2>{e(task)} · {e(model)}</h2>')
        files = images.get((task, model), [])
        if files:
            parts.append('<div class="plots">')
            for f in files:
                png = base64.b64encode((folder / f).read_bytes()).decode("ascii")
                parts.append(
                    f'<figure><img alt="{e(f)}" src="data:image/png;base64,{png}">'
                    f"<figcaption>{e(f)}</figcaption></figure>"
                )
            parts.append("</div>")
        else:
            parts.append('<p class="dim">No plots: written with --no-plots.</p>')
        for s in sections(data, task, model):
            parts.append(_section(s))
        parts.append("</section>")
    runs = runs_section(store, data.groups)
    parts.append(f'<section id="runs"><h2>Runs</h2>{_section(runs, heading=False)}</section>')
    payload = problems_payload(store, data)
    left = payload.pop("left_out")
    parts += [
        '<section id="problems"><h2>Problems</h2>',
        '<p class="dim">Each problem with every run\'s samples; open one to see them. Runs '
        "kept with <code>ponder bench --keep-trees</code> show their search tree: open a node "
        "to see its step and its children.</p>",
        f'<p class="dim">{e(left)}</p>' if left else "",
        '<div class="controls"><input id="filter" type="search" placeholder="filter: id or '
        'words of the question"> <select id="which"><option value="all">all problems</option>'
        '<option value="wrong">some run wrong</option><option value="none">no run right'
        '</option><option value="split">runs disagree</option></select> '
        '<span id="shown" class="dim"></span></div>',
        '<div id="problem-list"></div>',
        "<noscript>The problem browser needs JavaScript.</noscript></section></main>",
        '<script id="ponder-data" type="application/json">' + _json(payload) + "</script>",
        f"<script>{asset('report.js')}</script></body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _json(value: Any) -> str:
    """JSON safe inside a <script> element: no '<' can close it or open a comment."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def _prose(text: str) -> str:
    """Escaped text with markdown's `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _cell(c: str | Cell, tag: str = "td") -> str:
    if isinstance(c, Cell):
        attrs = (f' class="{c.tone}"' if c.tone else "") + (
            f' title="{html.escape(c.title)}"' if c.title else ""
        )
        return f"<{tag}{attrs}>{html.escape(c.text)}</{tag}>"
    return f"<{tag}>{html.escape(c)}</{tag}>"


def _section(s: Section, *, heading: bool = True) -> str:
    table = (
        "<table><thead><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in s.headers)
        + "</tr></thead><tbody>"
        + "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in s.rows)
        + "</tbody></table>"
    )
    intro = f"<p>{_prose(s.intro)}</p>" if s.intro else ""
    title = html.escape(s.title) if s.title else "Points"
    if s.collapsed:
        return (
            f'<details class="table"><summary>{title} ({len(s.rows)} rows)</summary>'
            f'{intro}<div class="scroll">{table}</div></details>'
        )
    head = f"<h3>{title}</h3>" if heading and s.title else ""
    return f'{head}{intro}<div class="scroll">{table}</div>'


# -- the problems' data -------------------------------------------------------------------------
def _short(data: ReportData, g: Group) -> str:
    """A group's short name: its curve's label (direct runs), its pool's label (pools)."""
    return data.labels.get((g.task, g.model), {}).get(g.label, g.label)


def _cap(text: str | None, limit: int) -> str:
    text = text or ""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… [{len(text) - limit:,} more characters not shown]"


def problems_payload(store: Store, data: ReportData) -> dict[str, Any]:
    """What the problem browser shows, as plain JSON-able data:

    groups: [{label, full, kind, task, model}]
    problems: [{pid, task, id, q, gold, level, by: {group: [right, units]},
                runs: {group: [unit...]}}]
    a unit: {seed, u, a, ok, tok, stop, err, c: [sample...], tree?, rev?}
    a sample: {t, a, ok, n, f, s, note, sig?, tc?}"""
    groups = [g for g in data.groups if len(g.pids)]
    payload: dict[str, Any] = {
        "groups": [
            {
                "label": _short(data, g),
                "full": g.label,
                "kind": g.kind,
                "task": g.task,
                "model": g.model,
            }
            for g in groups
        ]
    }
    rows = store.db.execute(
        "SELECT pid, task, problem_id, question, gold, level FROM problems"
        " WHERE pid IN (SELECT DISTINCT pid FROM units) ORDER BY task, position, pid"
    ).fetchall()
    left = []
    if len(rows) > MAX_PROBLEMS:
        left.append(f"{len(rows) - MAX_PROBLEMS:,} problems are left out of this page")
        rows = rows[:MAX_PROBLEMS]
    problems: dict[int, dict[str, Any]] = {
        pid: {
            "pid": pid,
            "task": task,
            "id": problem_id,
            "q": question,
            "gold": gold,
            "level": level,
            "by": {},
            "runs": {},
        }
        for pid, task, problem_id, question, gold, level in rows
    }
    store.db.execute("CREATE TEMP TABLE IF NOT EXISTS page_pids (pid INTEGER PRIMARY KEY)")
    store.db.execute("DELETE FROM temp.page_pids")
    store.db.executemany("INSERT INTO temp.page_pids VALUES (?)", [(pid,) for pid in problems])
    cut = 0
    for gi, g in enumerate(groups):
        cut += _add_group(store, gi, g, problems)
    if cut:
        left.append(f"{cut:,} samples are left out (at most {MAX_SAMPLES} per pool and problem)")
    payload["problems"] = list(problems.values())
    payload["left_out"] = "; ".join(left) + ("." if left else "")
    return payload


def _add_group(store: Store, gi: int, g: Group, problems: dict[int, dict[str, Any]]) -> int:
    """Add one group's units to the problems; the number of samples left out."""
    seeds = {r.rid: r.seed for r in g.runs}
    marks = ",".join("?" * len(seeds))
    # only the problems on the page (a temporary table of them), and for pools only the
    # first samples (unit numbers count up from 0 in each run)
    mine = f"rid IN ({marks}) AND pid IN (SELECT pid FROM temp.page_pids)"
    units: dict[tuple[int, int, int], dict[str, Any]] = {}
    per_problem: dict[int, int] = {}
    for pid, right, total in store.db.execute(
        f"SELECT pid, SUM(correct), COUNT(*) FROM units WHERE {mine} GROUP BY pid", list(seeds)
    ):
        problems[pid]["by"][gi] = (right, total)
    first = f" AND unit < {MAX_SAMPLES}" if g.kind == "pool" else ""
    for rid, pid, unit, answer, ok, stopped, error, tokens in store.db.execute(
        "SELECT rid, pid, unit, answer, correct, stopped, error, policy_prompt - policy_cached"
        " + policy_completion + verifier_prompt - verifier_cached + verifier_completion"
        f" FROM units WHERE {mine}{first} ORDER BY pid, rid, unit",
        list(seeds),
    ):
        problem = problems[pid]
        if g.kind == "pool" and per_problem.get(pid, 0) >= MAX_SAMPLES:
            continue
        per_problem[pid] = per_problem.get(pid, 0) + 1
        entry = {
            "seed": seeds[rid],
            "u": unit,
            "a": answer,
            "ok": bool(ok),
            "tok": tokens,
            "stop": stopped,
            "err": error,
            "c": [],
        }
        units[(rid, pid, unit)] = entry
        problem["runs"].setdefault(gi, []).append(entry)
    for (
        rid,
        pid,
        unit,
        text,
        answer,
        ok,
        score,
        n,
        finish,
        note,
        signals,
        tools,
    ) in store.db.execute(
        "SELECT rid, pid, unit, text, answer, correct, score, completion_tokens, finish_reason,"
        f" note, signals, tool_calls FROM candidates WHERE {mine}{first}"
        " ORDER BY pid, rid, unit, idx",
        list(seeds),
    ):
        owner = units.get((rid, pid, unit))
        if owner is None:
            continue
        sample: dict[str, Any] = {
            "t": _cap(text, MAX_TEXT),
            "a": answer,
            "ok": bool(ok),
            "n": n,
            "f": finish,
            "s": score,
            "note": note,
        }
        if signals:
            scores = json.loads(signals).get("scores") or {}
            if scores:
                sample["sig"] = {k: round(float(v), 4) for k, v in scores.items()}
        if tools:
            sample["tc"] = [
                {
                    "code": _cap(t.get("code"), MAX_TEXT),
                    "output": _cap(t.get("output"), MAX_TEXT),
                    "ok": bool(t.get("ok")),
                    "seconds": float(t.get("seconds") or 0.0),
                    "reason": t.get("reason"),
                }
                for t in json.loads(tools)
            ]
        owner["c"].append(sample)
    stored: int = sum(p["by"].get(gi, (0, 0))[1] for p in problems.values())
    cut = stored - len(units)
    if g.kind == "direct":
        for rid in seeds:
            for (pid, unit), trace in store.traces(rid, pids=list(problems)).items():
                kept = units.get((rid, pid, unit))
                if kept is None:
                    continue
                if isinstance(trace.get("tree"), list):
                    kept["tree"] = _tree(trace["tree"])
                if isinstance(trace.get("revisions"), list):
                    kept["rev"] = trace["revisions"]
    return cut


_NODE_KEYS = (
    "id",
    "parent",
    "step",
    "tokens",
    "finish_reason",
    "terminal",
    "answer",
    "score",
    "note",
    "selected",
    "rollout",
    "visits",
    "value_sum",
    "children",
)


def _tree(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The node records the viewer reads (ids are list positions, as Tree.records keeps
    them); a tree past MAX_NODES loses its later nodes, and the links to them."""
    nodes = []
    for r in records[:MAX_NODES]:
        node = {k: r.get(k) for k in _NODE_KEYS}
        node["step"] = _cap(node["step"], MAX_STEP)
        node["children"] = [c for c in (r.get("children") or []) if c < MAX_NODES]
        nodes.append(node)
    return nodes


@cache
def asset(name: str) -> str:
    """The page's CSS or script, shipped beside this module and inlined into every page."""
    text = files("ponder.bench").joinpath(name).read_text(encoding="utf-8")
    if "</" + ("style" if name.endswith(".css") else "script") in text.lower():
        raise RuntimeError(f"{name} would close its own element when inlined")
    return text
