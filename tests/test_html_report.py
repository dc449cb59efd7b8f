"""`ponder report --html` and `ponder bench --keep-trees`: traces and Python calls kept in the
store, short legend labels with a key, paired comparisons, and the one-file HTML report opened
in a real browser (headless Chromium over the DevTools protocol): no console errors, the plots
decode, the tree viewer unfolds, and a sample holding markup shows as text."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from browser import Browser, chromium
from fake_server import FakeOpenAIServer
from helpers import no_sleep, ponder_async, run_ponder, schema_2_store
from ponder.bench.analysis import Point
from ponder.bench.harness import Harness, plan
from ponder.bench.html import write_html_report
from ponder.bench.report import LABEL_WIDTH, legend_labels, paired_sections
from ponder.bench.store import Store, unpack_trace
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.runtime.strategy import make_strategy
from ponder.types import GenRequest, Problem

RIGHT = ["3 + 4 = 7.", "7 + 5 = 12.", "12 + 6 = 18.", "So the answer is \\boxed{18}."]
WRONG = ["3 + 4 = 8.", "8 + 5 = 14.", "14 + 6 = 21.", "So the answer is \\boxed{21}."]
# model output that is markup: it must show as these characters, never run
HOSTILE = (
    'Look: <script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> '
    "</script><!-- so \\boxed{5}"
)
PROBLEMS = [
    Problem(question="What is 3 + 4 + 5 + 6?", id="sum", gold="18", kind="number"),
    Problem(question="What is 6 * 7?", id="mul", gold="42", kind="number"),
    Problem(question="Add <b>2</b> and 3. What is it?", id="xss", gold="5", kind="number"),
]


def _text(req: GenRequest) -> str:
    return req.prompt or "\n".join(m.content for m in req.messages or [])


def pool_reply(req: GenRequest, i: int, rng: random.Random) -> str:
    text = _text(req)
    if "<b>2</b>" in text:
        return HOSTILE
    gold = "18" if "3 + 4 + 5" in text else "42"
    return f"Some thinking.\n\\boxed{{{gold if rng.random() < 0.5 else rng.randint(1, 9)}}}"


def step_reply(req: GenRequest, i: int, rng: random.Random) -> str:
    """Step k right with probability 0.4 at T > 0 while the path is right; wrong stays wrong."""
    if req.role == "verifier":
        return "Yes"
    body = _text(req).split("<assistant>", 1)[-1]
    done = [s for s in body.split("\n\n") if s.strip()]
    if len(done) >= len(RIGHT):
        return ""
    on_track = all(s in RIGHT for s in done)
    right = on_track and (req.temperature == 0 or rng.random() < 0.4)
    return (RIGHT if right else WRONG)[len(done)] + "\n\n"


def judge(req: GenRequest, i: int, rng: random.Random) -> dict[str, float]:
    body = _text(req).split("<assistant>", 1)[-1]
    steps = [s for s in body.split("\n\n") if s.strip()]
    p = 0.9 if steps and any(steps[-1].startswith(r) for r in RIGHT) else 0.2
    return {"Yes": math.log(p), "No": math.log(1 - p)}


def tir_reply(req: GenRequest, i: int, rng: random.Random) -> str:
    so_far = _text(req).split("<assistant>", 1)[-1]
    if "```output" in so_far:
        return "So the answer is \\boxed{42}."
    return "Let me compute.\n```python\nprint(6 * 7)\n```\n```output\n(made up)\n```"


def tutor(req: GenRequest, i: int, rng: random.Random) -> str:
    """Refine: 41 first; told it is wrong, 42."""
    msgs = req.messages or []
    last = msgs[-1].content if msgs else ""
    if last.startswith("Check the solution"):
        return "No, that is not it." if "{41}" in msgs[-2].content else "Yes."
    if last.startswith("Here is feedback"):
        return "Right: \\boxed{42}."
    return "I think \\boxed{41}."


def tutor_judge(req: GenRequest, i: int, rng: random.Random) -> dict[str, float]:
    msgs = req.messages or []
    p = 0.1 if len(msgs) >= 2 and "{41}" in msgs[-2].content else 0.9
    return {"Yes": math.log(p), "No": math.log(1 - p)}


def engine(reply: object, **kw: object) -> Engine:
    caps = Capabilities(slots=4, n_with_stop=True, raw_prefix=True)
    lm = ScriptedLM(reply, capabilities=caps, **kw)  # type: ignore[arg-type]
    return Engine(lm, scheduler=Scheduler(sleep=no_sleep))


async def build_store(path: Path, *, keep_trees: bool = True) -> Store:
    """A pool (vote, n=4), beam over steps, refine and tool-integrated greedy, one store."""
    store = Store(path)
    runs = [
        (engine(pool_reply), make_strategy("vote", n=4, temperature=0.8)),
        (
            engine(step_reply, logprobs=judge),
            make_strategy("beam", n=2, m=2, temperature=0.7, verifier="self_judge"),
        ),
        (engine(tutor, logprobs=tutor_judge), make_strategy("refine", rounds=2)),
        (engine(tir_reply), make_strategy("greedy", answer_with="tir")),
    ]
    for eng, strategy in runs:
        async with eng:
            harness = Harness(eng, store, keep_trees=keep_trees)
            for p in plan([strategy]):
                await harness.execute("toy", PROBLEMS, p, seed=0)
    return store


# -- the store ------------------------------------------------------------------------------
async def test_keep_trees_keeps_each_search_tree_and_revisions_compressed(tmp_path: Path) -> None:
    store = await build_store(tmp_path / "kept.sqlite")
    runs = {r.strategy: r.rid for r in store.runs()}
    beam = store.traces(runs["beam"])
    assert len(beam) == len(PROBLEMS)
    tree = beam[(1, 0)]["tree"]
    assert tree[0]["parent"] is None and any(n["terminal"] and n["selected"] for n in tree)
    assert all(n["id"] == i for i, n in enumerate(tree))
    refine = store.traces(runs["refine"])
    assert [v["accepted"] for v in refine[(1, 0)]["revisions"]] == [False, True]
    # compressed, and not also in units.info
    raw = store.db.execute("SELECT data FROM traces WHERE rid = ?", (runs["beam"],)).fetchone()[0]
    assert unpack_trace(raw)["tree"] and len(raw) < len(json.dumps(unpack_trace(raw)))
    infos = [json.loads(i) for (i,) in store.db.execute("SELECT info FROM units")]
    assert not any("tree" in i or "revisions" in i for i in infos)
    # without the flag: no trace, and units.info stays small
    plain = await build_store(tmp_path / "plain.sqlite", keep_trees=False)
    assert plain.db.execute("SELECT COUNT(*) FROM traces").fetchone() == (0,)
    assert all(plain.traces(r.rid) == {} for r in plain.runs())


async def test_python_calls_are_stored_with_their_sample(tmp_path: Path) -> None:
    store = await build_store(tmp_path / "s.sqlite", keep_trees=False)
    (rid,) = [r.rid for r in store.runs() if r.strategy == "greedy"]
    rows = store.db.execute(
        "SELECT tool_calls FROM candidates WHERE rid = ? ORDER BY pid", (rid,)
    ).fetchall()
    calls = [json.loads(r[0]) for r in rows]
    assert all(c[0]["code"] == "print(6 * 7)" and c[0]["output"] == "42" for c in calls)
    assert all(c[0]["ok"] and c[0]["seconds"] > 0 for c in calls)
    # samples that made no call have none stored
    (pool,) = [r.rid for r in store.runs() if r.strategy == "sample"]
    assert store.db.execute(
        "SELECT COUNT(*) FROM candidates WHERE rid = ? AND tool_calls IS NOT NULL", (pool,)
    ).fetchone() == (0,)


def test_a_schema_2_store_migrates_and_keeps_the_trees_it_held(tmp_path: Path) -> None:
    """Stores written before schema 3 kept every search tree in units.info: they open,
    gain the new column and table, and their trees are still found."""
    path = tmp_path / "old.sqlite"
    schema_2_store(
        path,
        "INSERT INTO units VALUES (1, 1, 0, 1, '18', 0, 1, NULL, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0,"
        ' 0, NULL, NULL, \'{"tree": [{"id": 0, "parent": null, "step": ""}], '
        '"votes": 1}\');',
    )
    store = Store(path)
    assert store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
        "3",
    )
    columns = [r[1] for r in store.db.execute("PRAGMA table_info(candidates)")]
    assert columns[-1] == "tool_calls"
    assert store.traces(1) == {(1, 0): {"tree": [{"id": 0, "parent": None, "step": ""}]}}


# -- labels and paired comparisons ------------------------------------------------------------
def test_legend_labels_are_short_distinct_and_keep_what_fits() -> None:
    verifier = "verifier={'aggregate': 'min', 'clip': None, 'name': 'self_judge'}"
    names = [
        "vote",
        "pass@k (oracle)",
        f"beam(m=2, max_step_tokens=256, n=2, {verifier})",
        f"particles(ess_threshold=0.5, n=4, {verifier})",
        f"mcts(c_puct=1.0, iterations=10, {verifier})",
        f"mcts(c_puct=2.0, iterations=10, {verifier})",
        "deepconf_filter · tail",
        "deepconf_filter(keep=0.1) · tail",
        "adaptive(rule=agreement) (replayed)",
        "adaptive(rule=weighted) (replayed)",
    ]
    labels = legend_labels(names)
    assert set(labels) == set(names)
    assert len(set(labels.values())) == len(names)
    assert all(len(v) <= LABEL_WIDTH for v in labels.values())
    assert labels["vote"] == "vote" and labels["deepconf_filter · tail"] == "deepconf_filter · tail"
    assert labels[names[2]] == "beam" and labels[names[3]] == "particles"
    # two of one strategy: cut where they still differ, with an ellipsis
    assert labels[names[4]] == "mcts(c_puct=1.0, iterations…"
    assert labels[names[5]] == "mcts(c_puct=2.0, iterations…"
    assert labels["deepconf_filter(keep=0.1) · tail"].startswith("deepconf_filter(keep=0.1)")

    # alike even when cut, beside a curve named like their strategy: numbered
    alike = ["beam", f"beam(n=2, {verifier}, x=1)", f"beam(n=2, {verifier}, x=2)"]
    assert legend_labels(alike) == {alike[0]: "beam", alike[1]: "beam #1", alike[2]: "beam #2"}


def _point(method: str, k: int, per_problem: list[float]) -> Point:
    values = np.array(per_problem, dtype=float)
    return Point(
        task="t",
        model="m",
        method=method,
        group=method,
        k=k,
        problems=len(values),
        accuracy=float(values.mean()),
        low=0.0,
        high=1.0,
        tokens=100.0 * k,
        flops=0.0,
        dollars=0.0,
        seconds=0.0,
        per_problem=values,
        pids=np.arange(len(values)),
    )


def test_paired_comparisons_are_antisymmetric_and_mark_clear_differences() -> None:
    rng = np.random.default_rng(0)
    good = (rng.random(200) < 0.8).astype(float)
    bad = (rng.random(200) < 0.3).astype(float)
    lines = {
        "vote": [_point("vote", 1, list(good * 0 + bad)), _point("vote", 4, list(good))],
        "greedy": [_point("greedy", 1, list(bad))],
        "pass@k": [_point("pass@k", 4, [1.0] * 200)],  # the oracle is left out
    }
    largest, equal_k = paired_sections(lines, {n: n for n in lines})
    assert largest.headers == ["row − column", "greedy @ 1", "vote @ 4"]
    (greedy_row, vote_row) = largest.rows
    assert greedy_row[1] == "" and vote_row[2] == ""
    up, down = vote_row[1], greedy_row[2]
    assert getattr(up, "tone", "") == "up" and getattr(down, "tone", "") == "down"
    d = float(str(up).split()[0])
    assert d == pytest.approx(100 * (good.mean() - bad.mean()), abs=0.05)
    assert float(str(down).split()[0]) == -d
    # at equal k: greedy and vote share k=1 only, where vote's samples are greedy's
    assert [[str(c) for c in r[:3]] for r in equal_k.rows] == [["greedy", "vote", "1"]]
    assert str(equal_k.rows[0][5]).startswith("+0.0 [+0.0, +0.0]")


# -- the HTML file --------------------------------------------------------------------------
async def test_the_html_report_is_one_file_that_asks_for_nothing_outside(tmp_path: Path) -> None:
    store = await build_store(tmp_path / "s.sqlite")
    page, md, _ = write_html_report(store, tmp_path / "rep")
    text = page.read_text()
    assert md.name == "report.md" and page.name == "report.html"
    # nothing fetched: no external address in any src/href, and a policy that allows none
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)
    assert "default-src 'none'" in text and "@import" not in text and "url(" not in text
    assert text.count("data:image/png;base64,") >= 3
    # stored text cannot close the data block: every '<' in it is escaped
    data = text.split('<script id="ponder-data" type="application/json">', 1)[1]
    data = data.split("</script>", 1)[0]
    assert "<" not in data and "\\u003cscript>window.__xss" in data
    payload = json.loads(data)
    assert {g["label"] for g in payload["groups"]} >= {"beam", "refine", "greedy(answer_with=tir)"}
    # the key maps each short label to the full configuration
    assert "beam(m=2" in text and "<h3>Key</h3>" in text
    assert "Paired comparisons at each method" in text


def test_report_html_from_the_command_line(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    asyncio.run(build_store(store))
    done = run_ponder("report", str(store), "--html", "--no-plots", "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r" / "report.html").stat().st_size > 10_000
    assert "html: " in done.stdout


async def test_bench_keep_trees_from_the_command_line(tmp_path: Path) -> None:
    async with FakeOpenAIServer() as server:
        base = ["bench", "gsm8k", "--base-url", server.url, "--model", "fake-model"]
        base += ["-s", "refine", "--limit", "2"]
        for keep, name in ((True, "kept"), (False, "plain")):
            args = [*base, "--store", str(tmp_path / f"{name}.sqlite")]
            code, _, err = await ponder_async(*args, *(["--keep-trees"] if keep else []))
            assert code == 0, err
    kept = sqlite3.connect(tmp_path / "kept.sqlite")
    plain = sqlite3.connect(tmp_path / "plain.sqlite")
    assert kept.execute("SELECT COUNT(*) FROM traces").fetchone() == (2,)
    assert plain.execute("SELECT COUNT(*) FROM traces").fetchone() == (0,)


# -- in a real browser ----------------------------------------------------------------------
def _browser_or_skip() -> None:
    if chromium() is not None:
        return
    if os.environ.get("PONDER_REQUIRE_BROWSER") == "1":
        pytest.fail(
            "PONDER_REQUIRE_BROWSER=1 but no chromium is installed (apt-get install chromium)"
        )
    pytest.skip("no chromium on PATH: the browser test needs Debian's chromium package")


async def test_the_report_opens_in_headless_chromium(tmp_path: Path) -> None:
    _browser_or_skip()
    store = await build_store(tmp_path / "s.sqlite")
    page_path, _, _ = write_html_report(store, tmp_path / "rep")
    pids = dict(store.db.execute("SELECT problem_id, pid FROM problems").fetchall())
    groups = json.loads(
        page_path.read_text().split('type="application/json">', 1)[1].split("</script>", 1)[0]
    )["groups"]
    beam = next(i for i, g in enumerate(groups) if g["label"] == "beam")
    with Browser.start(tmp_path / "chromium") as browser:
        page = browser.open(page_path.as_uri())
        # the plots are decoded images
        sizes = page.evaluate("[...document.images].map((i) => [i.complete, i.naturalWidth])")
        assert len(sizes) >= 3 and all(done and width > 0 for done, width in sizes)
        assert page.evaluate("document.querySelectorAll('details.problem').length") == 3
        # the tree viewer: open the problem, its tree, then a node, by real clicks
        page.click(f"#p-{pids['sum']} > summary")
        page.click(f"#box-tree-{pids['sum']}-{beam}-0 > summary")
        tree = f"#view-tree-{pids['sum']}-{beam}-0"
        shown = page.evaluate(f"document.querySelectorAll('{tree} details.node').length")
        assert shown >= 2  # the root, open, and its children
        first = f"{tree} details.root > details.node:not(.leaf)"
        assert page.evaluate(f"document.querySelector('{first}').open") is False
        page.click(f"{first} > summary")
        assert page.evaluate(f"document.querySelector('{first}').open") is True
        more = page.evaluate(f"document.querySelectorAll('{tree} details.node').length")
        assert more > shown  # its children appeared
        step = page.evaluate(f"document.querySelector('{first} > .step').textContent")
        assert step.strip() in RIGHT + WRONG
        page.click(f"{tree} .treebar button")  # open the chosen path
        assert (
            page.evaluate(
                f"[...document.querySelectorAll('{tree} details.node[open] .b.end')].length"
            )
            >= 1
        )
        # a sample holding markup shows as text and runs nothing
        page.click(f"#p-{pids['xss']} > summary")
        page.click(f"#p-{pids['xss']} details.sample > summary")
        shown_text = page.evaluate(
            f"document.querySelector('#p-{pids['xss']} details.sample .text').textContent"
        )
        assert shown_text == HOSTILE
        assert page.evaluate("window.__xss === undefined")
        assert page.evaluate("document.querySelectorAll('#problems img').length") == 0
        assert page.evaluate("document.scripts.length") == 2  # the page's own two
        question = page.evaluate(
            f"document.querySelector('#p-{pids['xss']} .question').textContent"
        )
        assert question == "Add <b>2</b> and 3. What is it?"
        # a Python call: its code and its real output
        page.click(f"#p-{pids['mul']} > summary")
        page.evaluate(
            f"[...document.querySelectorAll('#p-{pids['mul']} details.sample > summary')]"
            ".find((s) => s.textContent.includes('python call')).parentElement.id = 'tir'"
        )
        page.click("#tir > summary")
        page.click("#tir details.tool > summary")
        code, output = page.evaluate(
            "[...document.querySelectorAll('#tir details.tool pre')].map((p) => p.textContent)"
        )
        assert (code, output) == ("print(6 * 7)", "42")
        assert page.evaluate("document.querySelector('#tir .text pre.out').textContent") == "42"
        assert page.errors() == []
        # a deep link (in a new tab) opens a tree along its chosen path
        linked = browser.open(page_path.as_uri() + f"#tree-{pids['sum']}-{beam}-0")
        linked.settle()
        assert (
            linked.evaluate(
                f"[...document.querySelectorAll('{tree} details.node[open] .b.end')].length"
            )
            >= 1
        )
        assert linked.errors() == []


async def test_the_problem_browser_carries_at_most_so_many_samples_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ponder.bench.html as page

    store = await build_store(tmp_path / "s.sqlite", keep_trees=False)
    from ponder.bench.report import gather

    monkeypatch.setattr(page, "MAX_SAMPLES", 2)
    payload = page.problems_payload(store, gather(store))
    pool = next(i for i, g in enumerate(payload["groups"]) if g["kind"] == "pool")
    for p in payload["problems"]:
        assert len(p["runs"][pool]) == 2 and p["by"][pool][1] == 4  # counted, not all shown
    assert payload["left_out"] == "6 samples are left out (at most 2 per pool and problem)."


def test_a_legend_too_wide_for_the_margin_narrows_the_axes_instead_of_being_cut() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ponder.bench.report import _fit_legend

    for label in ("vote", "x" * LABEL_WIDTH + " @ 16", "a much longer label " * 3):
        fig, ax = plt.subplots(figsize=(9.5, 4.8))
        ax.plot([1, 2], [1, 2], label=label)
        legend = ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        _fit_legend(fig, legend)
        fig.canvas.draw()
        assert legend.get_window_extent().x1 <= fig.bbox.width
        plt.close(fig)
