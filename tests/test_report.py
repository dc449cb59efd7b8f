"""From a store to numbers and files: the report's estimates agree with what the strategies
themselves would pick on the same samples, costs add up, and the files are written."""

from __future__ import annotations

import math
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from bench_worker import engine_for
from ponder.bench.analysis import load_groups, points, verifier_quality
from ponder.bench.harness import Harness, plan
from ponder.bench.report import equal_compute, summary_table, write_report
from ponder.bench.store import Store
from ponder.runtime.strategy import make_strategy
from ponder.search import tally
from ponder.tasks.registry import get_task
from ponder.types import Candidate, GenRequest, Problem
from ponder.verify.quality import selection_quality


async def filled_store(tmp_path: Path, n: int = 6, limit: int = 12) -> Store:
    problems = get_task("gsm8k").load(limit=limit)
    engine = engine_for({p.question: p.gold for p in problems}, 0.0)
    store = Store(tmp_path / "s.sqlite")
    harness = Harness(engine, store)
    strategies = [
        make_strategy("greedy"),
        make_strategy("weighted_vote", n=n, verifier="self_judge"),
    ]
    for p in plan(strategies):
        for seed in (0, 1):
            await harness.execute("gsm8k", problems, p, seed=seed)
    return store


async def test_vote_at_full_pool_equals_the_vote_over_the_stored_samples(tmp_path: Path) -> None:
    store = await filled_store(tmp_path)
    (pool,) = [g for g in load_groups(store) if g.kind == "pool"]
    assert pool.sizes.tolist() == [12] * 12  # two seeds of 6 samples make one pool of 12
    pts = {(p.method, p.k): p for p in points(pool, resamples=200)}
    assert sorted(k for m, k in pts if m == "vote") == [1, 2, 4, 8, 12]
    # k = pool size: one subset, the whole pool, voted as `vote` votes
    rows = store.db.execute(
        "SELECT pid, u.unit, c.answer, c.correct, c.score FROM units u JOIN candidates c"
        " USING (rid, pid, unit) JOIN runs r USING (rid) WHERE r.kind = 'pool'"
        " ORDER BY pid, r.seed, u.unit"
    ).fetchall()
    by_problem: dict[int, list[tuple[str | None, bool, float | None]]] = {}
    for pid, _, answer, ok, score in rows:
        by_problem.setdefault(pid, []).append((answer, bool(ok), score))
    want_vote, want_weighted = [], []
    for samples in by_problem.values():
        cands = [Candidate(text="", answer=a, score=s) for a, _, s in samples]
        right = {a: ok for a, ok, _ in samples}
        top, _, _ = tally(cands, [1.0] * len(cands), "number")
        want_vote.append(right.get(top, False))
        top_w, _, _ = tally(cands, [s or 0.0 for s in (c.score for c in cands)], "number")
        want_weighted.append(right.get(top_w, False))
    assert pts[("vote", 12)].accuracy == pytest.approx(np.mean(want_vote))
    assert pts[("weighted_vote", 12)].accuracy == pytest.approx(np.mean(want_weighted))
    # pass@1 is the mean correctness of a sample
    mean_ok = np.mean([ok for s in by_problem.values() for _, ok, _ in s])
    assert pts[("pass@k", 1)].accuracy == pytest.approx(mean_ok)
    # costs: k samples cost k times the mean sample, and tokens include the verifier's
    per_sample = store.db.execute(
        "SELECT AVG(policy_prompt - policy_cached + policy_completion + verifier_prompt"
        " - verifier_cached + verifier_completion) FROM units JOIN runs USING (rid)"
        " WHERE kind = 'pool'"
    ).fetchone()[0]
    assert pts[("vote", 4)].tokens == pytest.approx(4 * per_sample)
    assert pts[("vote", 1)].low <= pts[("vote", 1)].accuracy <= pts[("vote", 1)].high


async def test_direct_runs_average_over_seeds_and_seconds_add_up(tmp_path: Path) -> None:
    store = await filled_store(tmp_path)
    (greedy,) = [g for g in load_groups(store) if g.kind == "direct"]
    (point,) = points(greedy, resamples=200)
    right = store.db.execute(
        "SELECT AVG(correct) FROM units JOIN runs USING (rid) WHERE kind = 'direct'"
    ).fetchone()[0]
    assert point.accuracy == pytest.approx(right) and point.problems == 12
    # wall seconds: every unit's share of its segment; over all units, the segments' wall time
    groups = load_groups(store)
    attributed = sum(float((g.cost["seconds"] * g.sizes).sum()) for g in groups)
    wall = store.db.execute("SELECT SUM(ended - started) FROM segments").fetchone()[0]
    assert attributed == pytest.approx(wall, rel=1e-6)


async def test_verifier_quality_matches_the_scalar_definition(tmp_path: Path) -> None:
    store = await filled_store(tmp_path)
    (pool,) = [g for g in load_groups(store) if g.kind == "pool"]
    q = verifier_quality(pool)
    pools = [
        [
            (None if math.isnan(s) else float(s), bool(c))
            for s, c, k in zip(ss, cs, ks, strict=True)
            if k >= -1
        ]
        for ss, cs, ks in zip(pool.scores, pool.correct, pool.classes, strict=True)
    ]
    want = selection_quality(pools)
    assert q.auroc == pytest.approx(want.auroc)
    assert q.false_positive_rate == pytest.approx(want.false_positive_rate)
    assert (q.missed, q.coverage) == (want.missed, want.coverage)


async def test_report_writes_markdown_csvs_and_plots(tmp_path: Path) -> None:
    store = await filled_store(tmp_path)
    path, _ = write_report(store, tmp_path / "rep")
    text = path.read_text()
    for needle in (
        "## gsm8k · scripted",
        "Accuracy at equal compute",
        "Verifier quality",
        "By difficulty",
        "| weighted_vote | 12 | 12 |",
    ):
        assert needle in text, needle
    names = {p.name for p in (tmp_path / "rep").iterdir()}
    assert {"points.csv", "verifier.csv", "difficulty.csv", "runs.csv"} <= names
    assert "scaling_gsm8k_scripted_tokens.png" in names
    assert "scaling_gsm8k_scripted_dollars.png" not in names  # no prices: nothing to draw
    table = summary_table(store, [r.rid for r in store.runs()])
    assert table.table.row_count == len(table.rows) == 2 * 4 + 1  # k=1 and 12 of 4 rules, greedy


async def test_difficulty_uses_levels_when_the_data_has_them(tmp_path: Path) -> None:
    problems = [
        Problem(question=f"q{i}", id=f"m/{i}", gold="1", kind="number", meta={"level": 1 + i % 2})
        for i in range(6)
    ]

    def reply(req: GenRequest, index: int, rng: random.Random) -> str:
        q = req.messages[-1].content if req.messages else ""
        return "\\boxed{1}" if q in ("q0", "q2", "q4") else "\\boxed{2}"

    from helpers import scripted_engine

    engine, _ = scripted_engine(reply)
    store = Store(tmp_path / "s.sqlite")
    (greedy,) = plan([make_strategy("greedy")])
    await Harness(engine, store).execute("levels", problems, greedy)
    path, _ = write_report(store, tmp_path / "rep", plots=False)
    rows = sorted(
        (r.split(",")[4], r.split(",")[6])
        for r in (tmp_path / "rep" / "difficulty.csv").read_text().splitlines()[1:]
    )
    assert rows == [("level 1", "1.0"), ("level 2", "0.0")]
    assert "| level 1 | greedy | 1 | 3 | 100.0%" in path.read_text()


async def test_equal_compute_takes_each_methods_best_point_within_budget(tmp_path: Path) -> None:
    store = await filled_store(tmp_path)
    pts = [p for g in load_groups(store) for p in points(g, resamples=100)]
    lines: dict[str, list] = {}  # type: ignore[type-arg]
    for p in pts:
        lines.setdefault(p.method, []).append(p)
    budget = min(p.tokens for p in lines["vote"]) * 4.5
    best = equal_compute(lines, budget)
    assert best["vote"] is not None and best["vote"].tokens <= budget
    assert best["vote"].accuracy == max(p.accuracy for p in lines["vote"] if p.tokens <= budget)
    assert equal_compute(lines, 1.0)["vote"] is None


def test_report_sql_reads_only_what_it_needs(tmp_path: Path) -> None:
    # a store with no units gives an empty report, not an error
    store = Store(tmp_path / "empty.sqlite")
    path, _ = write_report(store, tmp_path / "rep")
    assert "# ponder report" in path.read_text()
    assert sqlite3.connect(tmp_path / "empty.sqlite").execute(
        "SELECT COUNT(*) FROM units"
    ).fetchone() == (0,)


async def test_price_at_report_time_prices_every_stored_token(tmp_path: Path) -> None:
    from ponder.lm import Price

    store = await filled_store(tmp_path)
    path, _ = write_report(
        store, tmp_path / "rep", price=Price(prompt=1.0, completion=3.0, cached=0.5)
    )
    assert "scaling_gsm8k_scripted_dollars.png" in {p.name for p in (tmp_path / "rep").iterdir()}
    assert "priced at report time" in path.read_text()
    p, c, k = store.db.execute(
        "SELECT AVG(policy_prompt + verifier_prompt - policy_cached - verifier_cached),"
        " AVG(policy_cached + verifier_cached), AVG(policy_completion + verifier_completion)"
        " FROM units JOIN runs USING (rid) WHERE kind = 'direct'"
    ).fetchone()
    (greedy,) = [
        g
        for g in load_groups(store, Price(prompt=1.0, completion=3.0, cached=0.5))
        if g.kind == "direct"
    ]
    (point,) = points(greedy, resamples=50)
    assert point.dollars == pytest.approx((p * 1.0 + c * 0.5 + k * 3.0) / 1e6)
    assert point.dollars > 0
