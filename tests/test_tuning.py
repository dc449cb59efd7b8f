"""Stopping settings chosen on a train pool and judged on a test pool (ponder.bench.tuning): the
choice is the cheapest setting within tolerance on train, never looks at test, and a looser
tolerance never costs more tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import no_sleep
from ponder.bench.analysis import load_groups
from ponder.bench.confidence import PoolSignals, load_signals
from ponder.bench.harness import Harness, plan
from ponder.bench.store import Store
from ponder.bench.tuning import grid, selection_grid, tune_selection, tune_stopping
from ponder.errors import UsageError
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.runtime.strategy import make_strategy
from ponder.types import Problem
from router_world import pool_store, problems


async def _pools(tmp_path: Path) -> tuple[PoolSignals, PoolSignals]:
    train = await pool_store(tmp_path / "train.sqlite", problems(24), n=8)
    test = await pool_store(tmp_path / "test.sqlite", problems(24, start=24), n=8)
    out = []
    for path in (train, test):
        store = Store(path, create=False)
        (g,) = load_groups(store)
        out.append(load_signals(store, g, stats=True))
    return out[0], out[1]


async def test_each_family_gets_its_cheapest_setting_within_tolerance_on_train(
    tmp_path: Path,
) -> None:
    train, test = await _pools(tmp_path)
    settings = [s for s in grid(waves=(2,)) if s.family in ("esc", "beta", "agreement")]
    t = tune_stopping(train, test, tolerance=0.05, orders=4, settings=settings)
    assert t.n == 8 and {c.setting.family for c in t.chosen} == {"esc", "beta", "agreement"}
    floor = t.train_vote.point.accuracy - 0.05
    for c in t.chosen:
        mine = [r for s, r in t.tried if s.family == c.setting.family]
        kept = [r for r in mine if r.point.accuracy >= floor]
        assert c.kept == len(kept) > 0
        assert c.train.point.accuracy >= floor
        assert c.train.generated.mean() == min(r.generated.mean() for r in kept)
        # judged on the test pool: never more than the budget, and the easy third of the
        # problems (whose samples agree) stops early, so fewer tokens than majority@8
        assert (c.test.samples <= 8).all()
        assert c.test.generated.mean() < t.test_vote.generated
        d, lo, hi = c.difference(t.test_vote)
        assert lo <= d <= hi


async def test_a_looser_tolerance_never_chooses_a_costlier_setting(tmp_path: Path) -> None:
    train, test = await _pools(tmp_path)
    settings = [s for s in grid(waves=(2,)) if s.family == "beta"]
    costs = []
    for tolerance in (0.0, 0.05, 0.3):
        (c,) = tune_stopping(train, test, tolerance=tolerance, orders=4, settings=settings).chosen
        costs.append(float(c.train.generated.mean()))
    assert costs == sorted(costs, reverse=True)


async def test_with_nothing_within_tolerance_the_most_accurate_setting_is_chosen(
    tmp_path: Path,
) -> None:
    train, test = await _pools(tmp_path)
    settings = [s for s in grid(waves=(2,)) if s.family == "esc"]
    t = tune_stopping(train, test, tolerance=0.0, orders=4, settings=settings)
    (c,) = t.chosen
    accuracies = [r.point.accuracy for _, r in t.tried]
    assert max(accuracies) < t.train_vote.point.accuracy  # the world makes early stops cost
    assert c.kept == 0 and c.train.point.accuracy == max(accuracies)


async def test_tuning_refuses_bad_settings(tmp_path: Path) -> None:
    train, test = await _pools(tmp_path)
    with pytest.raises(UsageError, match="tolerance"):
        tune_stopping(train, test, tolerance=1.5)
    with pytest.raises(UsageError, match="same pool"):
        tune_stopping(train, train)
    with pytest.raises(UsageError, match="16 samples"):
        tune_stopping(train, test, n=16)


def test_the_grid_reaches_below_each_rules_default() -> None:
    settings = grid()
    families = {s.family for s in settings}
    rules = {"esc", "beta", "agreement", "weighted"}
    assert families == rules | {f"{r}+give-up" for r in rules} | {"deepconf"}
    give_ups = {s.rule.give_up_after for s in settings if s.family.endswith("+give-up")}  # type: ignore[union-attr]
    assert give_ups == {4, 6}
    betas = [s.rule.threshold for s in settings if s.family == "beta"]  # type: ignore[union-attr]
    assert min(betas) < 0.95 <= max(betas)
    assert len({s.label for s in settings}) == len(settings)
    assert np.all([s.wave in (2, 4) for s in settings])


# -- selection ---------------------------------------------------------------------------------
async def _signal_pools(tmp_path: Path) -> tuple[PoolSignals, PoolSignals]:
    """Pools whose samples carry a confidence that works (right answers sure, wrong ones not)."""
    from test_confidence_report import reply, token_logprobs

    out = []
    for name, first in (("train", 0), ("test", 12)):
        lm = ScriptedLM(
            reply,
            capabilities=Capabilities(slots=8, n_with_stop=True, stream=True),
            token_logprobs=token_logprobs,
        )
        engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
        items = [
            Problem(question=f"q{i}: 6 * 7?", gold="42", kind="number", id=f"p{i}")
            for i in range(first, first + 12)
        ]
        store = Store(tmp_path / f"{name}.sqlite")
        for p in plan([make_strategy("vote", n=8)]):
            await Harness(engine, store).execute("t", items, p, seed=first)
        (g,) = load_groups(store)
        out.append(load_signals(store, g, stats=True))
    return out[0], out[1]


async def test_each_family_gets_its_most_accurate_selector_on_train(tmp_path: Path) -> None:
    train, test = await _signal_pools(tmp_path)
    selectors = [s for s in selection_grid() if s.signal in ("tail", "length")]
    chosen = tune_selection(train, test, ks=(4, 8), selectors=selectors)
    assert {(c.k, c.selector.family) for c in chosen} == {
        (k, f) for k in (4, 8) for f in ("cisc", "borda", "deepconf")
    }
    for c in chosen:
        mine = [s for s in selectors if s.family == c.selector.family]
        assert c.train.accuracy == max(s.at(train, c.k).accuracy for s in mine)
        assert c.test.problems == c.test_vote.problems == 12
        d, lo, hi = c.difference()
        assert lo <= d <= hi
        # the signal separates right from wrong here, so weighing by it never loses to the vote
        assert c.test.accuracy >= c.test_vote.accuracy
        if c.k == 4:  # where the vote is often split, it wins outright
            assert c.test.accuracy > c.test_vote.accuracy + 0.1


async def test_selection_tuning_refuses_pools_it_cannot_use(tmp_path: Path) -> None:
    train, test = await _signal_pools(tmp_path)
    with pytest.raises(UsageError, match="k = 16"):
        tune_selection(train, test, ks=(16,))
    plain, other = await _pools(tmp_path / "plain")
    with pytest.raises(UsageError, match="confidence signals"):
        tune_selection(plain, other)
