"""Confidence in the report: the vectorized selection rules equal the rules themselves over
every subset, replays price the stopping rules, and the report says what each signal is worth."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import group_of, no_sleep
from ponder.bench.analysis import load_groups
from ponder.bench.confidence import SELECTIONS, load_signals, replay_points, selected_at, weigher
from ponder.bench.harness import Harness, plan
from ponder.bench.report import write_report
from ponder.bench.store import Store
from ponder.consensus import Observation
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.runtime.strategy import make_strategy
from ponder.types import GenRequest, Problem

pool_rows = st.integers(4, 6).flatmap(
    lambda m: st.lists(
        st.tuples(
            st.lists(st.integers(-1, 2), min_size=m, max_size=m),
            st.lists(st.one_of(st.none(), st.floats(0.5, 9.0)), min_size=m, max_size=m),
            st.integers(0, 2),
        ),
        min_size=1,
        max_size=4,
    )
)


@settings(max_examples=40, deadline=None)
@given(pool_rows, st.integers(1, 4))
def test_vectorized_selection_equals_each_rule_over_every_subset(
    rows: list[tuple[list[int], list[float | None], int]], k: int
) -> None:
    m = len(rows[0][0])
    keys = [[-1 if c < 0 else c for c in r[0]] for r in rows]
    # first-seen class ids, as the store numbers them per problem
    keys = [
        [{c: i for i, c in enumerate(dict.fromkeys(x for x in r if x >= 0))}.get(c, -1) for c in r]
        for r in keys
    ]
    correct = [
        [c >= 0 and c == right for c in r] for r, (_, _, right) in zip(keys, rows, strict=True)
    ]
    conf = np.asarray([[np.nan if x is None else x for x in r[1]] for r in rows])
    g = group_of(keys, correct)
    for _, rule, _ in SELECTIONS:
        got = selected_at(g, conf, k, weigher(rule))
        for r in range(len(rows)):
            hits = []
            for subset in itertools.combinations(range(m), k):
                obs = [
                    Observation(
                        None if keys[r][j] < 0 else keys[r][j],
                        1,
                        None if math.isnan(conf[r, j]) else float(conf[r, j]),
                    )
                    for j in subset
                ]
                chosen = rule.select(obs).answer
                hits.append(
                    chosen is not None
                    and any(correct[r][j] for j in subset if keys[r][j] == chosen)
                )
            assert got[r] == np.mean(hits), (rule, r)


def token_logprobs(req: GenRequest, index: int, position: int, token: str) -> dict[str, float]:
    # right answers sure, wrong ones unsure: a signal that works
    sure = (req.seed or 0) % 2 == 0
    return {token: -0.01, "x": -8.0} if sure else {token: -0.6, "x": -0.8}


def reply(req: GenRequest, i: int, rng: random.Random) -> str:
    right = (req.seed or 0) % 2 == 0
    return (
        " ".join(["step"] * rng.randint(5, 40))
        + f" \\boxed{{{42 if right else rng.randint(1, 9)}}}"
    )


async def test_the_report_prices_signals_selection_and_replayed_stopping(tmp_path: Path) -> None:
    caps = Capabilities(slots=8, n_with_stop=True, stream=True)
    lm = ScriptedLM(reply, capabilities=caps, token_logprobs=token_logprobs)
    engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
    problems = [
        Problem(question=f"q{i}: 6 * 7?", gold="42", kind="number", id=f"p{i}") for i in range(12)
    ]
    store = Store(tmp_path / "s.sqlite")
    for p in plan([make_strategy("vote", n=8)]):
        await Harness(engine, store).execute("t", problems, p, seed=0)
    (g,) = load_groups(store)
    pool = load_signals(store, g, stats=True)
    assert pool.has_signals and all(s is not None for row in pool.stats for s in row)
    replayed = {r.label: r for r in replay_points(pool, orders=4)}
    assert set(replayed) >= {"adaptive(rule=beta)", "deepconf (online)"}
    for r in replayed.values():
        assert (r.samples <= 8).all() and (r.tokens > 0).all()
    path, _ = write_report(store, tmp_path / "rep", plots=False)
    text = path.read_text()
    assert "### Confidence signals" in text and "| tail |" in text
    assert "deepconf_filter · tail" in text and "adaptive(rule=beta)" in text
    signals = (tmp_path / "rep" / "signals.csv").read_text()
    assert "lowest_group" in signals


async def test_a_pool_smaller_than_deepconfs_warm_up_still_reports(tmp_path: Path) -> None:
    """`N=2 scripts/demo.sh`: a pool of 2 cannot replay DeepConf online (4 warm-up traces);
    the report leaves that replay out instead of failing."""
    caps = Capabilities(slots=8, n_with_stop=True, stream=True)
    lm = ScriptedLM(reply, capabilities=caps, token_logprobs=token_logprobs)
    engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
    problems = [
        Problem(question=f"q{i}: 6 * 7?", gold="42", kind="number", id=f"p{i}") for i in range(3)
    ]
    store = Store(tmp_path / "s.sqlite")
    for p in plan([make_strategy("vote", n=2)]):
        await Harness(engine, store).execute("t", problems, p, seed=0)
    (g,) = load_groups(store)
    replayed = {r.label for r in replay_points(load_signals(store, g, stats=True), orders=2)}
    assert "deepconf (online)" not in replayed and "adaptive(rule=beta)" in replayed
    path, _ = write_report(store, tmp_path / "rep", plots=False)
    assert "adaptive(rule=beta)" in path.read_text()
