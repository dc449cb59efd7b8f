"""Compute-optimal allocation on scripted data: the probe's features, the greedy allocation,
a router fitted from a store and read back from its file, `auto` live, workload budgets that
are never exceeded and beat uniform allocation where difficulty is learnable, and the errors
a person meets (another version, a strategy this install lacks, too little data, training
problems used for evaluation)."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import router_world as world
from helpers import ponder_async, run_benchmark, run_ponder, scripted_engine
from ponder.allocation import (
    FEATURES,
    Probe,
    RouterError,
    allocate,
    features,
    fingerprint,
    load_router,
    probe_features,
    question_features,
)
from ponder.bench.confidence import load_signals
from ponder.bench.harness import Harness, plan
from ponder.bench.router import (
    PRICE_ARMS,
    build_table,
    compare,
    continued,
    fit_router,
    fixed_options,
    opened_pool,
    routed,
    snell_curves,
    split_halves,
)
from ponder.bench.store import Store
from ponder.bench.workload import (
    DAMPING,
    GREEDY_PROBE,
    Workload,
    _gain,
    _State,
    anytime,
    replay,
    run_workload,
    stored_pool,
)
from ponder.consensus import Observation, PriceStop
from ponder.consensus import replay as replay_rule
from ponder.errors import BackendError, UsageError
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.prompting import Prompting
from ponder.runtime.strategy import make_strategy
from ponder.types import AnswerWith, Generation, GenRequest, Problem

# -- the probe's features -------------------------------------------------------------------


def test_question_features_count_numbers_and_their_kinds() -> None:
    f = question_features("Tom has 1,200 apples and gives half, 12.5% of 3/4 of them. How many?")
    assert f["q_numbers"] == 4  # 1200, 12.5, 3, 4
    assert f["q_decimals"] == 1 and f["q_percent"] == 1 and f["q_fractions"] == 2
    assert f["q_log_max_number"] == pytest.approx(np.log10(1201))


def test_probe_features_read_agreement_and_missing_confidence_as_unknown() -> None:
    p = probe_features(Probe([0, 0, 1, None], [10, 20, 30, 40], [None] * 4))
    assert p["p_leader_share"] == 0.5 and p["p_answered"] == 0.75 and p["p_distinct"] == 0.5
    assert 0 < p["p_leader_stays"] < 1
    assert np.isnan(p["s_tail"])  # no log-probabilities: the model fills in its mean
    sure = {"tail": 5.0}
    q = probe_features(Probe([0, 0, 1], [5, 5, 5], [sure, sure, {"tail": 1.0}]))
    assert q["s_tail"] == pytest.approx(11 / 3) and q["s_tail_leader_gap"] == pytest.approx(4.0)
    assert features("What is 1 + 2?", Probe([0], [3], [None])).shape == (len(FEATURES),)


# -- greedy allocation -----------------------------------------------------------------------
curve = st.lists(st.floats(0, 1), min_size=1, max_size=5)


@settings(max_examples=80)
@given(st.lists(curve, min_size=1, max_size=4), st.floats(0, 40))
# (found by hypothesis in CI: points on one line, the hull kept only the ends, and the one
# upgrade left, from cost 1 to 4, did not fit a budget of 3 that cost 3 would have)
@example([[0.0, 0.25, 0.5, 1.0]], 3.0)
def test_allocation_stays_within_budget_and_matches_the_concave_optimum(
    values: list[list[float]], budget: float
) -> None:
    """Within the budget whenever the cheapest options fit, and (for concave curves) as good
    as the best of every combination that fits."""
    curves = [np.maximum.accumulate(np.array(v)) for v in values]  # more samples never hurt
    curves = [
        np.concatenate([[c[0]], c[0] + np.cumsum(np.minimum.accumulate(np.diff(c)))])
        for c in curves
    ]
    costs = [np.arange(1, len(c) + 1, dtype=float) for c in curves]
    chosen, spent = allocate(curves, costs, budget)
    cheapest = len(curves)
    if cheapest <= budget:
        assert spent <= budget + 1e-9
        best = max(
            sum(c[j] for c, j in zip(curves, combo, strict=True))
            for combo in itertools.product(*(range(len(c)) for c in curves))
            if sum(j + 1 for j in combo) <= budget + 1e-9
        )
        got = sum(c[j] for c, j in zip(curves, chosen, strict=True))
        # the greedy is exact up to the last upgrade that did not fit (one segment's worth)
        assert got >= best - max(float(np.max(np.diff(c), initial=0)) for c in curves) - 1e-9


# -- fitting, the file, and the errors ------------------------------------------------------
@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("router")
    train = asyncio.run(world.pool_store(base / "train.sqlite", world.problems(60)))
    test = asyncio.run(
        world.pool_store(base / "test.sqlite", world.problems(30, start=100), task="world-test")
    )
    return train, test


@pytest.fixture(scope="module")
def router_file(stores: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    fitted = fit_router(build_table([stores[0]]))
    path = tmp_path_factory.mktemp("fitted") / "router.json"
    path.write_text(fitted.router.model_dump_json(indent=1))
    return path


def test_the_router_file_is_readable_and_predicts_as_fitted(
    stores: tuple[Path, Path], router_file: Path
) -> None:
    data = json.loads(router_file.read_text())
    assert data["format"] == "ponder-router" and data["version"] == 1
    assert data["summary"][0].startswith("Trained on 60 problems of world")
    assert data["training"]["problems"] == 60 and len(data["training"]["fingerprints"]) == 60
    vote = next(a for a in data["arms"] if a["name"] == "vote@16")
    assert set(vote["accuracy"]["coef"]) == set(data["features"])  # a weight per named feature
    assert vote["accuracy"]["calibration"] is not None
    assert data["validation"]["router"]["accuracy"] > 0 and "best_fixed" in data["validation"]
    router = load_router(router_file)
    table = build_table([stores[1]])
    acc, _ = router.predict(table.x[:, 0, [FEATURES.index(n) for n in router.features]], 1.0, 1.0)
    assert acc.shape == (table.problems, len(router.arms)) and ((acc >= 0) & (acc <= 1)).all()


def test_auto_beats_uniform_at_equal_tokens_on_unseen_problems(
    stores: tuple[Path, Path], router_file: Path
) -> None:
    router = load_router(router_file)
    train, test = build_table([stores[0]]), build_table([stores[1]])
    c = compare(router, test)
    uniform = {k: v for k, v in c.fixed.items() if k.startswith("vote@")}
    within = max(a for a, t in uniform.values() if t <= c.auto[1])
    assert c.auto[0] >= within
    names = [cu.name for cu in snell_curves(router, train, test)]
    assert names[0].startswith("uniform") and "oracle" in names[1] and "predicted" in names[2]


def test_the_router_is_set_against_the_price_rule_not_among_the_fixed_strategies(
    stores: tuple[Path, Path], router_file: Path
) -> None:
    """The price rule is among the router's arms (after the probe, at three prices), not among
    the "fixed" strategies; the router is set against the rule alone (`auto` without a
    router, replayed from the first sample in the same orders) at equal tokens, paired."""
    test = build_table([stores[1]])
    priced = [a for a in test.arms if a.options.get("rule") == "price"]
    assert [a.options["price"] for a in priced] == list(PRICE_ARMS)
    assert all(a.options["wave"] == 1 and a.options["fill"] is False for a in priced)
    assert not {a.name for a in priced} & set(fixed_options(test))
    # the rule alone, by hand: each problem's samples in the table's stored order (order 0)
    n = test.pool_size
    with opened_pool(stores[1], None, None) as (store, _, group):
        completion = load_signals(store, group).completion
        for row, r in enumerate(np.flatnonzero(group.sizes >= n)):
            obs = [
                Observation(None if c < 0 else int(c), int(t))
                for c, t in zip(group.classes[r, :n], completion[r, :n], strict=True)
            ]
            right = {o.answer for o, ok in zip(obs, group.correct[r, :n], strict=True) if ok}
            for k, price in enumerate(PRICE_ARMS):
                alone = replay_rule(PriceStop(price=price), obs, n, 1)
                assert test.alone_tokens[row, 0, k] == alone.tokens
                assert test.alone_correct[row, 0, k] == float(
                    alone.answer is not None and alone.answer in right
                )
    router = load_router(router_file)
    c = compare(router, test)
    assert [v.price for v in c.versus_rule] == list(PRICE_ARMS)
    for k, v in enumerate(c.versus_rule):
        assert v.accuracy == pytest.approx(test.alone_correct[:, :, k].mean())
        assert v.tokens == pytest.approx(test.alone_tokens[:, :, k].mean())
        if v.router_price is None:
            continue
        acc, tokens = routed(router, test, v.router_price)
        assert v.router_tokens == pytest.approx(tokens.mean()) and tokens.mean() <= v.tokens
        assert v.router_accuracy == pytest.approx(acc.mean())
        d, lo, hi = v.difference
        assert d == pytest.approx(v.router_accuracy - v.accuracy) and lo <= d <= hi


@settings(max_examples=200, deadline=None)
@given(
    answers=st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=1, max_size=12),
    lengths=st.lists(st.integers(1, 900), min_size=12, max_size=12),
    price=st.sampled_from(PRICE_ARMS),
)
def test_a_price_arm_after_a_probe_of_one_is_the_price_rule_as_auto_runs_it(
    answers: list[int | None], lengths: list[int], price: float
) -> None:
    """With a probe of one sample the router's price arm is `auto` without a router: the
    router's continuation and the live rule's replay stop at the same sample, with the same
    leader and tokens."""
    pool = [Observation(a, t) for a, t in zip(answers, lengths, strict=False)]
    rule = PriceStop(price=price)
    leader, launched, tokens = continued(rule, pool, 1, len(pool), 1)
    live = replay_rule(rule, pool, len(pool), 1)
    assert (leader, launched, tokens) == (live.answer, live.samples, live.tokens)


def test_evaluating_on_training_problems_is_refused(
    stores: tuple[Path, Path], router_file: Path
) -> None:
    router = load_router(router_file)
    with pytest.raises(RouterError, match="60 of 60 problems are in this router's training set"):
        compare(router, build_table([stores[0]]))
    with pytest.raises(RouterError, match="never saw"):
        make_strategy("auto", router=str(router_file)).check_unseen(world.problems(3))  # type: ignore[attr-defined]


def test_a_router_fitted_on_tool_integrated_samples_makes_auto_sample_so(
    tmp_path: Path,
) -> None:
    path = tmp_path / "modes.sqlite"
    items = world.problems(30)
    asyncio.run(world.pool_store(path, items, n=8))
    asyncio.run(world.pool_store(path, items, n=6, answer_with="tir"))
    assert build_table([path]).answer_with == "reasoning"  # the largest pool unless asked
    table = build_table([path], answer_with="tir")
    assert (table.answer_with, table.pool_size, table.problems) == ("tir", 6, 30)
    with pytest.raises(UsageError, match="no pool of samples answered with program"):
        build_table([path], answer_with="program")
    only_tir = asyncio.run(
        world.pool_store(tmp_path / "tir.sqlite", world.problems(6, start=40), 8, answer_with="tir")
    )
    with pytest.raises(UsageError, match="answer modes"):  # chains of thought beside TIR
        build_table([path, only_tir])
    router = fit_router(table).router
    assert router.answer_with == "tir" and "Samples answer with tir" in " ".join(router.summary)
    file = tmp_path / "router.json"
    file.write_text(router.model_dump_json())
    assert load_router(file).answer_with == "tir"
    auto = make_strategy("auto", router=str(file))
    assert auto.answer_with == "tir" and auto.config()["answer_with"] == "tir"
    with pytest.raises(RouterError, match="answered with tir, not reasoning"):
        make_strategy("auto", router=str(file), answer_with="reasoning")
    engine, lm = scripted_engine(world.reply)
    easy = world.problems(1, start=501)[0]
    r = asyncio.run(engine.solve(easy, "auto", router=str(file), seed=0))
    assert r.answer == "1501" and len(r.candidates) >= router.probe
    tir_system = Prompting().tir_system
    assert lm.calls and all(tir_system in c.input_text() for c in lm.calls)


def test_too_little_training_data_says_how_much_is_needed(stores: tuple[Path, Path]) -> None:
    small, _ = split_halves(build_table([stores[1]]))  # 15 problems
    with pytest.raises(UsageError, match=r"15 problems .* needs at least 20"):
        fit_router(small)


def test_fitting_without_scikit_learn_names_the_extra(
    stores: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.isotonic", None)
    with pytest.raises(UsageError, match=r"pip install 'ponder\[router\]'"):
        fit_router(build_table([stores[0]]))


def test_a_router_file_of_another_version_or_strategy_is_refused(
    router_file: Path, tmp_path: Path
) -> None:
    data = json.loads(router_file.read_text())
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(RouterError, match=r"router file version 99 .* reads version 1"):
        load_router(old)
    alien = tmp_path / "alien.json"
    data["arms"][0]["strategy"] = "quantum_search"
    alien.write_text(json.dumps(data))
    with pytest.raises(RouterError, match="'quantum_search', which this install does not have"):
        make_strategy("auto", router=str(alien))
    for field, value in (("arms", []), ("probe", 0)):  # hand-edited: named, not a crash later
        edited = tmp_path / f"{field}.json"
        edited.write_text(json.dumps({**json.loads(router_file.read_text()), field: value}))
        with pytest.raises(RouterError, match=rf"a malformed router file \({field}: "):
            load_router(edited)
    with pytest.raises(UsageError, match="n 2 is below the router's probe of 4"):
        make_strategy("auto", router=str(router_file), n=2)
    with pytest.raises(UsageError, match="temperature: a router samples at its pool's"):
        make_strategy("auto", router=str(router_file), temperature=0.2)
    with pytest.raises(UsageError, match="without a router the price rule needs a price > 0"):
        make_strategy("auto", price=0.0)
    with pytest.raises(RouterError, match="no such router file"):
        make_strategy("auto", router=str(tmp_path / "missing.json"))


def test_a_hand_edited_router_file_is_refused_when_loaded_not_when_used(
    router_file: Path, tmp_path: Path
) -> None:
    """Each of these loaded and then crashed `-s auto` after its probe had spent tokens."""
    data = json.loads(router_file.read_text())
    feature = data["features"][0]
    arm = data["arms"][0]["accuracy"]
    edits = {
        "unknown feature": ({"features": [*data["features"], "moon_phase"]}, "moon_phase"),
        "no scale": (
            {"scale": {k: v for k, v in data["scale"].items() if k != feature}},
            f"scale: no mean and spread for {feature}",
        ),
        "calibration": (
            {"difficulty": {**data["difficulty"], "calibration": [[0.1, 0.5], [0.2]]}},
            "calibration: 2 x and 1 y values",
        ),
        "empty calibration": (
            {"arms": [{**data["arms"][0], "accuracy": {**arm, "calibration": [[], []]}}]},
            "calibration: 0 x and 0 y values",
        ),
        "temperature": ({"temperature": -1}, "temperature: Input should be greater than"),
        "price": ({"price": float("inf")}, "price: Input should be a finite number"),
    }
    for name, (update, says) in edits.items():
        edited = tmp_path / f"{name}.json"
        edited.write_text(json.dumps({**data, **update}))
        with pytest.raises(RouterError, match="a malformed router file") as e:
            load_router(edited)
        assert says in str(e.value), (name, str(e.value))
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({**data, "version": "1"}))
    with pytest.raises(RouterError, match=r"router file version '1' "):
        load_router(odd)


# -- auto, live -------------------------------------------------------------------------------
async def test_auto_probes_then_runs_the_arm_it_picks(router_file: Path) -> None:
    eng, _ = scripted_engine(world.reply)
    easy, contested, _ = world.problems(3, start=300)
    r = await eng.solve(easy, "auto", router=str(router_file), seed=1)
    assert r.answer == easy.gold and r.info["route"]["arm"]
    assert len(r.candidates) >= 4  # the probe votes too
    routes = []
    for p in world.problems(12, start=300):
        got = await eng.solve(p, "auto", router=str(router_file), seed=2)
        routes.append((p.question.split("(")[1].split(")")[0], len(got.candidates)))
    spent = {kind: np.mean([n for k, n in routes if k == kind]) for kind in world.KINDS}
    # settled probes stop early; contested ones get more samples
    assert spent["contested"] > spent["easy"]
    # n caps the arms: none drawing more than n is chosen
    capped = await eng.solve(contested, "auto", router=str(router_file), n=5, seed=2)
    assert len(capped.candidates) <= 5 < max(n for _, n in routes)


async def test_auto_without_a_router_samples_while_a_sample_is_worth_its_price() -> None:
    """The price rule, one sample at a time: problems whose samples agree stop early, contested
    ones get more; a higher price spends less; every sample drawn is charged and voted."""
    eng, _ = scripted_engine(world.reply)
    spent: dict[str, list[int]] = {kind: [] for kind in world.KINDS}
    for p in world.problems(12, start=300):
        got = await eng.solve(p, "auto", n=12, seed=3)
        assert got.info["route"] == {"policy": "price", "price": PriceStop().price}
        assert got.info["samples"] == len(got.candidates)  # one at a time: none cut or late
        assert got.total.completion_tokens == sum(c.completion_tokens for c in got.candidates)
        spent[p.question.split("(")[1].split(")")[0]].append(len(got.candidates))
        if p.question.startswith(f"Case {300 + 0} "):
            assert got.answer == p.gold
    assert np.mean(spent["contested"]) > np.mean(spent["easy"]) > 1
    assert max(max(v) for v in spent.values()) <= 12
    easy = world.problems(1, start=300)[0]
    cheap = await eng.solve(easy, "auto", n=12, price=1e-2, seed=3)
    dear = await eng.solve(easy, "auto", n=12, price=1e-7, seed=3)
    assert len(cheap.candidates) < len(dear.candidates) == 12


# -- workload budgets -------------------------------------------------------------------------
def store_tokens(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        (total,) = db.execute(
            "SELECT COALESCE(SUM(policy_prompt + policy_completion + verifier_prompt"
            " + verifier_completion), 0) FROM units"
        ).fetchone()
        return int(total)
    finally:
        db.close()


class Counted:
    """What a scripted model read and wrote (prompt + completion tokens), counted at the model."""

    def __init__(self, lm: ScriptedLM) -> None:
        self.tokens = 0
        generate = lm.generate

        async def counted(req: GenRequest) -> Generation:
            out: Generation = await generate(req)
            self.tokens += out.prompt_tokens + out.completion_tokens
            return out

        lm.generate = counted  # type: ignore[method-assign]


def calls_python_first(req: GenRequest, index: int, rng: random.Random) -> str:
    """The world's replies, after one Python block in a tool-integrated sample's first round."""
    written = (req.prompt or "").split("<assistant>", 1)[-1]
    if req.prompt is not None and "```output" not in written:
        return "Let me count.\n```python\nprint(6 * 7)\n```\n"
    return world.reply(req, index, rng)


@settings(max_examples=15)
@given(
    st.integers(1, 4000),
    st.integers(1, 8),
    st.integers(1, 6),
    st.integers(0, 3),
    st.sampled_from(["reasoning", "tir"]),
)
def test_a_workload_never_exceeds_its_budget(
    budget: int, count: int, max_n: int, seed: int, answer_with: AnswerWith
) -> None:
    async def go(path: Path, before: int) -> int:
        store = Store(path)
        eng, lm = scripted_engine(calls_python_first)
        written = 0  # what the model was really asked to read and write
        generate = lm.generate

        async def counted(req: GenRequest) -> Generation:
            nonlocal written
            out = await generate(req)
            written += out.prompt_tokens + out.completion_tokens
            return out

        lm.generate = counted  # type: ignore[method-assign]
        harness = Harness(eng, store)
        w = Workload(tokens_total=budget, max_n=max_n, probe=2, answer_with=answer_with)
        done = await run_workload(harness, "world", world.problems(count), w, seed=seed)
        store.close()
        # every token the model wrote is counted, a tool-integrated sample's later rounds
        # too (also when the budget refused a round after earlier ones were written)
        assert done.progress.spent - before == written and done.progress.spent <= budget
        if answer_with == "tir" and lm.calls:
            assert all(c.prompt is not None for c in lm.calls)  # rendered tool-loop rounds
        return done.progress.spent

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "w.sqlite"
        spent = asyncio.run(go(path, 0))
        assert store_tokens(path) == spent <= budget
        # resumed with the same budget: nothing more fits than what is left
        again = asyncio.run(go(path, spent))
        assert store_tokens(path) == again <= budget


async def test_a_tool_integrated_sample_the_budget_cuts_midway_is_counted_and_stored(
    tmp_path: Path,
) -> None:
    """Each round of a TIR sample pays its whole prompt again, so a budget can admit the
    first round and refuse the next: what the first wrote is spent, stored and resumed."""
    cut = 0
    for budget in range(850, 1300, 25):  # from one first round to one whole sample
        eng, lm = scripted_engine(calls_python_first)
        model = Counted(lm)
        path = tmp_path / f"w{budget}.sqlite"
        store = Store(path)
        w = Workload(tokens_total=budget, max_n=1, probe=1, answer_with="tir")
        done = await run_workload(Harness(eng, store), "world", world.problems(1), w)
        store.close()
        assert done.progress.spent == model.tokens == store_tokens(path) <= budget
        cut += int(model.tokens > 0 and len(lm.calls) == 1)  # a first round, its next refused
    assert cut > 0  # the window was met


async def test_a_workload_whose_samples_all_fail_ends_instead_of_retrying_forever(
    tmp_path: Path,
) -> None:
    eng, lm = scripted_engine(world.reply, fail=lambda call, req: BackendError("down"))
    store = Store(tmp_path / "w.sqlite")
    w = Workload(tokens_total=10_000, max_n=4, probe=2)
    done = await asyncio.wait_for(
        run_workload(Harness(eng, store), "world", world.problems(3), w), timeout=60
    )
    store.close()
    assert done.progress.done == 0 and done.progress.spent == 0
    assert 0 < len(lm.calls) <= 3 * 2  # one batch tried (retries included), then it stops


async def test_a_sample_failing_after_its_first_round_reports_what_it_was_charged(
    tmp_path: Path,
) -> None:
    """Not stored (a re-run retries it), but its first round was spent: the progress counts
    the failure and the tokens the model read and wrote for it."""

    def second_round_fails(call: int, req: GenRequest) -> Exception | None:
        written = (req.prompt or "").split("<assistant>", 1)[-1]
        return BackendError("down") if "```output" in written else None

    eng, lm = scripted_engine(calls_python_first, fail=second_round_fails)
    model = Counted(lm)
    store = Store(tmp_path / "w.sqlite")
    w = Workload(tokens_total=50_000, max_n=2, probe=1, answer_with="tir")
    done = await asyncio.wait_for(
        run_workload(Harness(eng, store), "world", world.problems(2), w), timeout=60
    )
    store.close()
    assert done.progress.done == 0 and done.progress.spent == 0
    assert done.progress.failed >= 2
    assert done.progress.lost == model.tokens > 0


async def test_a_workload_is_at_least_uniform_at_its_budget(tmp_path: Path) -> None:
    items = world.problems(30, start=500)
    # uniform: 8 samples per problem (the same samples: units are seeded alike)
    uniform_store = await world.pool_store(tmp_path / "u.sqlite", items, n=8, task="w")
    per_problem = store_tokens(uniform_store) / len(items)
    budget = int(per_problem * len(items))
    db = sqlite3.connect(uniform_store)
    rows = db.execute("SELECT pid, unit, class, correct FROM units ORDER BY pid, unit").fetchall()
    db.close()
    uniform_right = 0
    for _, group in itertools.groupby(rows, key=lambda r: r[0]):
        votes: dict[int, list[int]] = {}
        for _, unit, cls, ok in group:
            if cls >= 0:
                votes.setdefault(cls, [0, ok, unit])[0] += 1
        if votes:
            lead = max(votes.values(), key=lambda v: (v[0], -v[2]))
            uniform_right += lead[1]
    store = Store(tmp_path / "w.sqlite")
    eng, _ = scripted_engine(world.reply)
    w = Workload(tokens_total=budget, max_n=16)
    done = await run_workload(Harness(eng, store), "w", items, w)
    assert done.progress.spent <= budget
    assert done.progress.correct >= uniform_right
    curve = anytime(store, [done.run.rid], len(items))
    assert curve[-1] == (done.progress.spent, done.progress.correct / len(items))
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(curve))
    store.close()


async def test_a_workload_replayed_on_its_pool_buys_what_the_live_run_bought(
    tmp_path: Path,
) -> None:
    """A pool's unit u is drawn with the seed a workload gives a problem's u-th sample, so on
    a deterministic backend replaying the workload's picks on the pool must spend the same
    tokens on the same samples and end with the same votes, whatever the settings."""
    items = world.problems(18, start=900)
    pool = stored_pool(await world.pool_store(tmp_path / "pool.sqlite", items, n=8, task="w"))
    whole = sum(s.cost for samples in pool.samples for s in samples)
    assert [p.id for p in pool.problems] == [
        p.id for p in items
    ] and pool.answer_with == "reasoning"
    settings = ((0.3, GREEDY_PROBE, DAMPING), (0.3, 3, 0.0), (0.7, GREEDY_PROBE, 1.0))
    for i, (share, probe, damping) in enumerate(settings):
        w = Workload(tokens_total=int(share * whole), max_n=8, probe=probe, damping=damping)
        path = tmp_path / f"live{i}.sqlite"
        store = Store(path)
        harness = Harness(world.engine(), store)
        done = await run_workload(harness, "w", items, w)
        store.close()
        db = sqlite3.connect(path)
        bought = dict(db.execute("SELECT pid, COUNT(*) FROM units GROUP BY pid").fetchall())
        db.close()
        again = replay(pool, w, window=harness.window_for_pool())
        assert again.spent == done.progress.spent <= w.tokens_total
        assert sum(again.right) == done.progress.correct
        assert again.samples == [bought.get(pid, 0) for pid in range(1, len(items) + 1)]
        assert min(again.samples) > 0 and max(again.samples) > min(again.samples)
        bought_texts = zip(pool.samples, again.samples, strict=True)
        assert sum(again.generated) == sum(s.completion for row, k in bought_texts for s in row[:k])


def test_the_workload_gain_is_the_unsettled_chance_per_token_damped_by_samples() -> None:
    """gain = (1 − P(leader stays)) / (mean tokens · samples^damping), by hand: one vote each
    for two answers → P(stays) = 1 − I₀.₅(2, 2) = 0.5."""
    state = _State(Problem(question="q"), 0)
    state.add(1, True, 100)
    state.add(2, False, 300)
    w = Workload(tokens_total=1)
    assert _gain(state, w) == pytest.approx(0.5 / (200 * 2**0.5))
    assert _gain(state, w.model_copy(update={"damping": 0.0})) == pytest.approx(0.5 / 200)
    # three alike: P(stays) = 1 − 0.5⁴ → gain (1/16) / (tokens · √3); an unanswered sample
    # votes for nothing but counts among the samples
    settled = _State(Problem(question="q"), 1)
    for _ in range(3):
        settled.add(7, True, 50)
    assert _gain(settled, w) == pytest.approx((1 / 16) / (50 * 3**0.5))
    settled.add(None, False, 50)
    assert _gain(settled, w) == pytest.approx((1 / 16) / (50 * 4**0.5))


def test_fingerprints_ignore_spacing_and_case() -> None:
    assert fingerprint("What is  2+2?") == fingerprint("what is 2+2? ")


# -- the command line --------------------------------------------------------------------------
def test_router_fit_show_and_errors_on_the_command_line(
    stores: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    r = run_ponder("router", "fit", str(stores[0]), "--out", str(out), timeout=180)
    assert r.returncode == 0, r.stderr
    assert "Trained on 60 problems" in r.stdout and out.is_file()
    r = run_ponder("router", "show", str(out), "--json")
    assert json.loads(r.stdout)["training"]["fingerprints"] == "60 problems"
    r = run_ponder("router", "fit", str(stores[0]), "--answer-with", "code", "--out", str(out))
    assert r.returncode == 2 and "--answer-with code: not one of reasoning" in r.stderr
    # --out never writes over what it was not: the store read, a folder, another file
    size = stores[0].stat().st_size
    for where, says in (
        (stores[0], "that is the input"),
        (tmp_path, "a folder; give a file to write"),
        (stores[1], "exists and is not a file this command wrote"),
    ):
        r = run_ponder("router", "fit", str(stores[0]), "--out", str(where))
        assert r.returncode == 2 and says in r.stderr, r.stderr
    assert stores[0].stat().st_size == size
    r = run_ponder("router", "fit", str(stores[0]), "--price", "inf", "--out", str(out))
    assert r.returncode == 2 and "--price inf: not a finite number" in r.stderr
    r = run_ponder("router", "fit", str(stores[0]), "--task", "nosuch", "--out", str(out))
    assert r.returncode == 2 and "no runs of task 'nosuch' (--task; this store has: " in r.stderr
    r = run_ponder("router", "fit", str(stores[0]), "--answer-with", "tir", "--out", str(out))
    assert r.returncode == 2 and "no pool of samples answered with tir" in r.stderr
    r = run_ponder("router", "eval", str(out), str(stores[0]))
    assert r.returncode == 2 and r.stderr.startswith("error: 60 of 60 problems are in this")
    r = run_ponder("router", "eval", str(out), str(stores[1]), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["problems"] == 30
    r = run_ponder("solve", "What is 2+2?", "-s", "auto", "--router", str(tmp_path / "no.json"))
    assert r.returncode == 2 and "no such router file" in r.stderr
    r = run_ponder("solve", "What is 2+2?", "-s", "vote", "--router", str(out))
    assert r.returncode == 2 and "--router is read by -s auto" in r.stderr
    r = run_ponder(
        *("bench", "gsm8k", "--budget-tokens-total", "5000", "--router", str(out)),
        *("--answer-with", "tir", "--store", str(tmp_path / "w.sqlite")),
    )
    assert r.returncode == 2 and "--answer-with tir: the router" in r.stderr
    assert "answered with reasoning" in r.stderr


# -- serving auto/MODEL ----------------------------------------------------------------------
def test_auto_is_served_as_a_model_name_with_or_without_a_router(router_file: Path) -> None:
    import openai

    from ponder.serve import create_app
    from serving import running

    engine, _ = scripted_engine(world.reply)
    question = [{"role": "user", "content": world.problems(1, start=700)[0].question}]
    with running(create_app(engine, router=str(router_file))) as url:
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
        r = client.chat.completions.create(model="auto/scripted", messages=question, seed=1)  # type: ignore[arg-type]
        assert "1700" in (r.choices[0].message.content or "")
        # a client's temperature does not override the router's (its pool's)
        r = client.chat.completions.create(
            model="auto/scripted",
            messages=question,  # type: ignore[arg-type]
            seed=1,
            temperature=0.3,
        )
        assert "1700" in (r.choices[0].message.content or "")
    with running(create_app(scripted_engine(world.reply)[0])) as url:
        # without a router the server's auto is the price rule
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
        r = client.chat.completions.create(model="auto/scripted", messages=question, seed=1)  # type: ignore[arg-type]
        assert "1700" in (r.choices[0].message.content or "")


# -- a workload from the command line, and the report -------------------------------------
async def test_a_workload_from_the_command_line_stays_within_budget_and_is_reported(
    tmp_path: Path,
) -> None:
    from fake_server import FakeOpenAIServer

    store = tmp_path / "w.sqlite"
    async with FakeOpenAIServer() as server:
        args = ["bench", "gsm8k", "--base-url", server.url, "--model", "fake-model", "--limit", "4"]
        args += ["--budget-tokens-total", "5000", "-n", "6", "--store", str(store), "--json"]
        code, out, err = await ponder_async(*args)
        assert code == 0, err

        def sampled() -> int:
            return sum(path.endswith("completions") for path, _ in server.requests)

        bought = sampled()
        # -s auto with a set budget is the same workload: it resumes the run, buying nothing
        again, auto_out, auto_err = await ponder_async(*args, "-s", "auto")
        assert again == 0, auto_err
        assert sampled() == bought > 0
    summary = json.loads(out)["workload"]
    assert summary["budget"] == 5000 and 0 < summary["spent"] <= 5000
    assert store_tokens(store) == summary["spent"]
    assert json.loads(auto_out)["workload"] == summary
    # stderr is a pipe: plain progress lines, the last one at the whole spend
    lines = [line for line in err.splitlines() if line.startswith("gsm8k workload: ")]
    assert lines and f"{summary['spent']:,}/5,000 tokens" in lines[-1]
    r = run_ponder("report", str(store), "--out", str(tmp_path / "rep"), timeout=120)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "### Workload budget" in text and "workload (vote per problem)" in text
    assert list((tmp_path / "rep").glob("workload_*.png"))
    r = run_ponder("bench", "gsm8k", "--budget-tokens-total", "10", "-s", "greedy")
    assert r.returncode == 2 and "-s vote" in r.stderr


async def test_samples_the_backend_refuses_are_reported_by_the_command_line(
    tmp_path: Path,
) -> None:
    """Failed samples are not stored (a re-run retries them) but the command says how many
    failed and what they were charged, in its line and in --json."""
    from fake_server import FakeOpenAIServer

    def odd_seeds_refused(i: int, path: str, body: dict[str, object]) -> str:
        seed = body.get("seed")
        return "422" if isinstance(seed, int) and seed % 2 else "ok"

    store = tmp_path / "w.sqlite"
    async with FakeOpenAIServer(odd_seeds_refused) as server:
        args = ["bench", "gsm8k", "--base-url", server.url, "--model", "fake-model", "--limit", "4"]
        args += ["--budget-tokens-total", "3000", "-n", "4", "--store", str(store), "--json"]
        code, out, err = await ponder_async(*args)
        refused = sum(
            odd_seeds_refused(0, path, body) == "422"
            for path, body in server.requests
            if path.endswith("completions")
        )
    assert code == 0, err
    summary = json.loads(out)["workload"]
    assert refused > 0 and summary["failed"] == refused  # a refusal is not retried
    assert summary["lost"] == 0  # refused before anything was generated
    assert summary["spent"] == store_tokens(store) > 0  # the others were stored
    said = " ".join(err.split())
    assert f"{refused} samples failed on the backend, charged 0 tokens besides the spend" in said


def test_the_report_draws_snells_figure_from_a_pool(
    stores: tuple[Path, Path], tmp_path: Path
) -> None:
    from ponder.bench.report import write_report

    store = Store(stores[0], create=False)
    try:
        path, _ = write_report(store, tmp_path / "rep")
    finally:
        store.close()
    text = path.read_text()
    assert "### Compute-optimal allocation (Snell et al.)" in text
    for name in ("uniform (vote@k)", "oracle difficulty", "predicted difficulty"):
        assert f"| {name} |" in text
    assert list((tmp_path / "rep").glob("allocation_*.png"))


async def test_bench_runs_auto_per_problem_and_refuses_its_training_problems(
    router_file: Path, tmp_path: Path
) -> None:
    from ponder.bench.harness import plan
    from ponder.bench.sweep import StrategySpec, Sweep, TaskSpec, prepare_sweep

    auto = make_strategy("auto", router=str(router_file))
    (p,) = plan([auto])
    assert p.kind == "direct" and p.unit["router_sha256"]
    store = Store(tmp_path / "auto.sqlite")
    eng, _ = scripted_engine(world.reply)
    done = await Harness(eng, store).execute("w", world.problems(6, start=900), p)
    assert done.progress.done == 6
    (routes,) = store.db.execute(
        "SELECT COUNT(*) FROM units WHERE info LIKE '%\"arm\"%'"
    ).fetchone()
    assert routes == 6
    store.close()
    data = tmp_path / "seen.jsonl"
    data.write_text(
        "\n".join(json.dumps({"question": q.question, "answer": q.gold}) for q in world.problems(3))
    )
    sweep = Sweep(
        tasks=[TaskSpec(data=str(data))],
        strategies=[StrategySpec(name="auto", router=str(router_file))],
    )
    with pytest.raises(RouterError, match="3 of 3 problems are in this router's training set"):
        prepare_sweep(sweep, tmp_path)


@pytest.fixture(scope="module")
def leveled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pool whose problems carry MATH-style levels (the world's kind: easy 1, contested 3,
    hopeless 5)."""
    items = world.problems(60)
    for p in items:
        kind = p.question.split("(", 1)[1].split(")", 1)[0]
        p.meta["level"] = {"easy": 1, "contested": 3, "hopeless": 5}[kind]
    path = tmp_path_factory.mktemp("levels") / "levels.sqlite"
    return asyncio.run(world.pool_store(path, items))


def test_snells_figure_allocates_by_the_data_sets_own_levels_where_it_has_them(
    stores: tuple[Path, Path], leveled: Path
) -> None:
    """The data set's levels become a curve of their own; a set without levels draws none."""
    from ponder.bench.analysis import load_groups
    from ponder.bench.router import has_levels, pool_table, snell_crossfit

    def figure(path: Path) -> dict[str, list[tuple[float, float]]]:
        store = Store(path, create=False)
        try:
            groups = load_groups(store)
            (g,) = [g for g in groups if g.kind == "pool"]
            table = pool_table(store, g, groups)
        finally:
            store.close()
        assert has_levels(table) == (path == leveled)
        curves, _ = snell_crossfit(table)
        return {c.name: c.points for c in curves}

    with_levels = figure(leveled)
    assert "given level (the data set's)" not in figure(stores[0])
    level = with_levels["given level (the data set's)"]
    uniform = with_levels["uniform (vote@k)"]
    # knowing which problems are hopeless or easy, the level allocation spends the budget on
    # the contested ones: vote@12's accuracy everywhere at about half its tokens
    t12, a12 = uniform[11]
    assert min(t for t, a in level if a >= a12) <= 0.6 * t12


def test_stored_levels_read_as_numbers() -> None:
    from ponder.tasks.registry import level_number

    assert [level_number(v) for v in ("3", "Level 5", None, "Level ?", "hard", 4, True)] == [
        3, 5, None, None, None, 4, None,
    ]  # fmt: skip


def test_the_router_benchmark_tables_every_allocation(leveled: Path, tmp_path: Path) -> None:
    """benchmarks/router.py's Snell table: uniform, oracle, the set's levels and predicted."""
    out = tmp_path / "out"
    r = run_benchmark("router.py", "--split-halves", str(leveled), "--out", str(out))
    assert r.returncode == 0, r.stderr
    text = (out / "router.md").read_text()
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| budget of |"))
    header = lines[at]
    for name in ("uniform", "oracle difficulty", "given level", "predicted difficulty"):
        assert name in header
    assert all(line.count("|") == header.count("|") for line in lines[at + 1 : at + 18])


def test_the_workload_benchmark_replays_every_allocation_within_uniforms_spend(
    stores: tuple[Path, Path], tmp_path: Path
) -> None:
    """benchmarks/workload.py: at each uniform vote@k's spend the workload spends no more; on
    the world (easy problems settle, contested ones gain from more samples) it beats uniform
    at vote@8's spend; each budget's best fixed strategy generates no more than the workload,
    and is the most accurate such among the fixed strategies the pool prices."""
    out = tmp_path / "out"
    args = ["--test", str(stores[1]), "--ks", "2", "4", "8"]
    r = run_benchmark("workload.py", *args, "--orders", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "workload.json").read_text())
    by = {(row["budget_of"], row["method"]): row for row in summary["rows"]}
    assert {m for _, m in by} == {"uniform", "leader"}
    for (k, _), row in by.items():
        assert row["tokens_per_problem"] <= by[(k, "uniform")]["tokens_per_problem"]
    assert by[("vote@8", "leader")]["accuracy"] > by[("vote@8", "uniform")]["accuracy"]
    fixed = {
        name: (acc.mean(), tokens.mean())
        for name, (acc, tokens) in fixed_options(build_table([stores[1]])).items()
    }
    for k in ("vote@2", "vote@4", "vote@8"):
        leader = by[(k, "leader")]
        best = leader["versus_fixed"]
        within = [a for a, t in fixed.values() if t <= leader["generated_per_problem"] + 1e-6]
        assert best["accuracy"] == pytest.approx(max(within))
        assert fixed[best["name"]][1] <= leader["generated_per_problem"] + 1e-6
    top = summary["most_accurate_fixed"]
    assert top["accuracy"] == pytest.approx(max(a for a, _ in fixed.values()))
    # -s auto without a router, at each price: a higher price spends less; each comparison
    # is with a fixed strategy generating no more, each match no more accurate
    auto = sorted(summary["auto"], key=lambda r: r["price"])
    assert summary["default_price"] in [r["price"] for r in auto]
    spent = [r["generated_per_problem"] for r in auto]
    assert spent == sorted(spent, reverse=True) and spent[0] > spent[-1]
    for point in auto:
        if point["versus_fixed"]["name"]:
            cheaper = fixed[point["versus_fixed"]["name"]]
            assert cheaper[1] <= point["generated_per_problem"] + 1e-6
        assert fixed[point["matches"]["name"]][0] <= point["accuracy"] + 1e-9
    assert (out / "workload.png").is_file() and "| vote@8 | leader |" in r.stdout
    # a live run beside its replay: the scripted backend draws the same text from a seed
    live = tmp_path / "live.sqlite"
    store = Store(live)
    w = Workload(tokens_total=2500, max_n=8)
    items = world.problems(12, start=100)
    done = asyncio.run(run_workload(Harness(world.engine(), store), "world-test", items, w))
    store.close()
    r = run_benchmark("workload.py", "--test", str(stores[1]), "--live", str(live))
    assert r.returncode == 0, r.stderr
    live_row = next(line for line in r.stdout.splitlines() if line.startswith("| live |"))
    again_row = next(
        line for line in r.stdout.splitlines() if line.startswith("| replay (stored order) |")
    )
    spent = f"{done.progress.spent:,}"
    assert live_row.split("|")[2:6] == again_row.split("|")[2:6]
    assert live_row.split("|")[2].strip() == spent
    assert live_row.split("|")[3].strip() == str(done.progress.correct)
    assert f"{done.progress.done} of the {done.progress.done} samples" in r.stdout
    assert "## Together: 12 problems, against uniform vote@" in r.stdout
    assert "| leader rule replayed |" in r.stdout
    # a live `-s auto` (the price rule) beside its replay
    auto_store = tmp_path / "auto.sqlite"
    store = Store(auto_store)
    (unit,) = plan([make_strategy("auto", n=8)])
    for seed in (0, 1):  # two live runs: each, and together
        asyncio.run(Harness(world.engine(), store).execute("world-test", items, unit, seed=seed))
    store.close()
    db = sqlite3.connect(auto_store)
    right, generated = db.execute(
        "SELECT AVG(correct), AVG(policy_completion) FROM units WHERE rid = 1"
    ).fetchone()
    both = db.execute("SELECT AVG(correct) FROM units").fetchone()[0]
    db.close()
    r = run_benchmark("workload.py", "--test", str(stores[1]), "--live-auto", str(auto_store))
    assert r.returncode == 0, r.stderr
    assert "`-s auto` (price 0.0007, n 8) live on 12 problems" in r.stdout
    live_row = next(line for line in r.stdout.splitlines() if line.startswith("| live, seed 0 |"))
    cells = [c.strip() for c in live_row.split("|")]
    assert cells[2].startswith(f"{100 * right:.1f}% [") and cells[3] == f"{generated:,.0f}"
    assert any(
        line.startswith("| replayed (8 orders, at most 8) |") for line in r.stdout.splitlines()
    )
    together = next(line for line in r.stdout.splitlines() if line.startswith("| live, 2 runs |"))
    assert together.split("|")[2].strip().startswith(f"{100 * both:.1f}% [")
    # beside a live uniform vote drawn on the same problems: vote@j over its first j samples
    vote_store = tmp_path / "vote.sqlite"
    store = Store(vote_store)
    (unit,) = plan([make_strategy("vote", n=4)])
    asyncio.run(Harness(world.engine(), store).execute("world-test", items, unit, seed=2))
    store.close()
    # `-s vote -n 4` is stored as a pool: 4 one-sample units per problem; vote@j by hand
    db = sqlite3.connect(vote_store)
    per: dict[int, list[tuple[int, int, int]]] = {}
    for pid, cls, ok, tokens in db.execute(
        "SELECT pid, class, correct, completion_tokens FROM candidates ORDER BY pid, unit"
    ):
        per.setdefault(pid, []).append((cls, ok, tokens))
    db.close()
    r = run_benchmark(
        "workload.py",
        "--test",
        str(stores[1]),
        "--live-auto",
        str(auto_store),
        "--live-vote",
        str(vote_store),
    )
    assert r.returncode == 0, r.stderr
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]]
        for line in r.stdout.splitlines()
        if line.startswith(f"| {vote_store}, seed 2: vote@")
    }
    assert list(rows) == [f"{vote_store}, seed 2: vote@{j}" for j in (1, 2, 3, 4)]
    for j in (1, 2, 3, 4):
        right = []
        for samples in per.values():
            counts = Counter(c for c, _, _ in samples[:j] if c >= 0)
            top = max(counts.values(), default=0)
            lead = next((c for c, _, _ in samples[:j] if c >= 0 and counts[c] == top), None)
            right.append(any(c == lead and ok for c, ok, _ in samples))
        tokens = sum(t for samples in per.values() for _, _, t in samples[:j]) / len(per)
        accuracy, spent, delta = rows[f"{vote_store}, seed 2: vote@{j}"]
        assert accuracy.startswith(f"{100 * np.mean(right):.1f}% [") and spent == f"{tokens:,.0f}"
        assert delta.startswith(f"{100 * (both - np.mean(right)):+.1f} [")
    lone = run_benchmark("workload.py", "--test", str(stores[1]), "--live-vote", str(vote_store))
    assert lone.returncode == 2 and "--live-vote: give the live auto runs" in lone.stderr
    # several stores, even of one file name: each run named by its store, all together
    more = tmp_path / "more" / "auto.sqlite"
    store = Store(more)
    (unit,) = plan([make_strategy("auto", n=8)])
    asyncio.run(Harness(world.engine(), store).execute("world-test", items, unit, seed=3))
    store.close()
    r = run_benchmark(
        "workload.py", "--test", str(stores[1]), "--live-auto", str(auto_store), str(more)
    )
    assert r.returncode == 0, r.stderr
    names = [line.split("|")[1].strip() for line in r.stdout.splitlines() if "| live, " in line]
    assert names == [
        f"live, {auto_store}, seed 0",
        f"live, {auto_store}, seed 1",
        f"live, {more}, seed 3",
        "live, 3 runs",
    ]
    twice = run_benchmark(
        "workload.py", "--test", str(stores[1]), "--live-auto", str(auto_store), str(auto_store)
    )
    assert twice.returncode == 1 and "a store is given twice" in twice.stderr
    # another price is another setting: not averaged with the default's runs
    other = tmp_path / "other.sqlite"
    store = Store(other)
    (unit,) = plan([make_strategy("auto", n=8, price=0.002)])
    asyncio.run(Harness(world.engine(), store).execute("world-test", items, unit, seed=0))
    store.close()
    mixed = run_benchmark(
        "workload.py", "--test", str(stores[1]), "--live-auto", str(auto_store), str(other)
    )
    assert mixed.returncode == 1 and "differ in task, model or settings" in mixed.stderr
    # a live n above the pool's size: the replay is capped at the pool, and says so
    wide = tmp_path / "wide.sqlite"
    store = Store(wide)
    (unit,) = plan([make_strategy("auto", n=20)])
    asyncio.run(Harness(world.engine(), store).execute("world-test", items, unit, seed=0))
    store.close()
    capped = run_benchmark("workload.py", "--test", str(stores[1]), "--live-auto", str(wide))
    assert capped.returncode == 0, capped.stderr
    assert "| replayed (8 orders, at most 16) |" in capped.stdout
    assert "pool's 16 samples a problem; the live runs could draw up to 20" in capped.stdout
