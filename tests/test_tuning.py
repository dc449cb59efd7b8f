"""Stopping settings chosen on a train pool and judged on a test pool (ponder.bench.tuning): the
choice is the cheapest setting within tolerance on train, never looks at test, and a looser
tolerance never costs more tokens."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from helpers import no_sleep, scripted_engine
from ponder.bench.analysis import load_groups, points
from ponder.bench.confidence import PoolSignals, aligned, load_signals, replay_fixed
from ponder.bench.harness import Harness, plan
from ponder.bench.store import Store
from ponder.bench.tuning import (
    Reference,
    fixed_votes,
    grid,
    selection_grid,
    tune_selection,
    tune_stopping,
)
from ponder.consensus import PriceStop
from ponder.errors import UsageError
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.runtime.strategy import make_strategy
from ponder.types import GenRequest, Problem
from router_world import case_of, pool_store, problems
from router_world import reply as world_reply


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


async def test_a_fixed_vote_replays_as_the_reports_vote_at_k(tmp_path: Path) -> None:
    train, _ = await _pools(tmp_path)
    vote = {p.k: p for p in points(train.group) if p.method == "vote"}
    for k in (1, 4, 8):
        got = replay_fixed(train, k)
        assert got.point.accuracy == pytest.approx(vote[k].accuracy)
        assert (got.samples == k).all()
        np.testing.assert_allclose(got.generated, k * train.completion.mean(axis=1))
    assert [s.fixed for s in fixed_votes(3)] == [1, 2, 3]


def sharp_reply(req: GenRequest, index: int, rng: random.Random) -> str:
    """The world's problems, where a sampler at T=0.3 (standing in for tool-integrated
    samples) gets a contested problem right 85% of the time, against 40% at T=0.7."""
    _, kind, right = case_of(req)
    if req.temperature < 0.5 and kind == "contested":
        answer = right if rng.random() < 0.85 else right + 1 + rng.randrange(6)
        return f"step step step so the answer is \\boxed{{{answer}}}"
    return world_reply(req, index, rng)


async def _paired_pools(path: Path, first: int) -> tuple[PoolSignals, PoolSignals]:
    """One store: the plain pool of 8 on 24 problems, and the sharp one (T=0.3) of 8 on the
    first 18 of them."""
    engine, _ = scripted_engine(sharp_reply)
    store = Store(path)
    harness = Harness(engine, store)
    items = problems(24, start=first)
    for strategy, on in (
        (make_strategy("vote", n=8), items),
        (make_strategy("vote", n=8, temperature=0.3), items[:18]),
    ):
        for p in plan([strategy]):
            await harness.execute("world", on, p, seed=first)
    groups = {g.label: g for g in load_groups(store)}
    plain = next(g for label, g in groups.items() if "T=0.7" in label)
    sharp = next(g for label, g in groups.items() if "T=0.3" in label)
    return load_signals(store, sharp, stats=True), load_signals(store, plain, stats=True)


async def test_settings_on_one_pool_are_chosen_and_judged_against_another_pools_vote(
    tmp_path: Path,
) -> None:
    train, train_plain = await _paired_pools(tmp_path / "train.sqlite", 0)
    test, test_plain = await _paired_pools(tmp_path / "test.sqlite", 24)
    settings = fixed_votes(8) + [s for s in grid(waves=(2,)) if s.family == "beta"]
    t = tune_stopping(
        train,
        test,
        tolerance=0.0,
        orders=4,
        settings=settings,
        reference=Reference(train_plain, test_plain),
    )
    assert t.vote_n == 8 and t.reference == train_plain.group.label
    # every number on the 18 problems both pools have, paired problem by problem
    assert t.train_vote.point.problems == t.test_vote.point.problems == 18
    assert all(r.point.problems == 18 for _, r in t.tried)
    floor = t.train_vote.point.accuracy
    fixed = next(c for c in t.chosen if c.setting.family == "fixed vote")
    kept = [r for s, r in t.tried if s.family == "fixed vote" and r.point.accuracy >= floor]
    assert fixed.train.generated.mean() == min(r.generated.mean() for r in kept)
    # the sharper sampler matches the plain pool's majority@8 with fewer samples
    assert fixed.setting.fixed is not None and fixed.setting.fixed < 8
    assert fixed.test.generated.mean() < t.test_vote.generated
    d, lo, hi = fixed.difference(t.test_vote)
    assert lo <= d <= hi
    np.testing.assert_array_equal(fixed.test.point.pids, t.test_vote.point.pids)


async def test_pools_with_no_full_problem_in_common_are_refused(tmp_path: Path) -> None:
    sharp, plain = await _paired_pools(tmp_path / "s.sqlite", 0)
    a, b = aligned(sharp, 8, plain, 8)
    np.testing.assert_array_equal(a.group.pids, b.group.pids)
    assert len(a.group.pids) == 18 and a.completion.shape == (18, 8)
    with pytest.raises(UsageError, match="no problem has 9 samples"):
        aligned(sharp, 9, plain, 8)
    with pytest.raises(UsageError, match="same pool"):
        tune_stopping(sharp, plain, reference=Reference(plain, plain))


def test_the_grid_reaches_below_each_rules_default() -> None:
    settings = grid()
    families = {s.family for s in settings}
    rules = {"esc", "beta", "agreement", "weighted"}
    assert families == rules | {f"{r}+give-up" for r in rules} | {"deepconf", "price"}
    give_ups = {s.rule.give_up_after for s in settings if s.family.endswith("+give-up")}  # type: ignore[union-attr]
    assert give_ups == {4, 6}
    betas = [s.rule.threshold for s in settings if s.family == "beta"]  # type: ignore[union-attr]
    assert min(betas) < 0.95 <= max(betas)
    prices = [s.rule.price for s in settings if s.family == "price"]  # type: ignore[union-attr]
    assert min(prices) < PriceStop().price < max(prices)
    assert len({s.label for s in settings}) == len(settings)
    # the price rule also one sample at a time (its point: stopping after one), the others in
    # waves of 2 or 4
    assert np.all([s.wave in (2, 4) for s in settings if s.family != "price"])
    assert {s.wave for s in settings if s.family == "price"} == {1, 2, 4}


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
