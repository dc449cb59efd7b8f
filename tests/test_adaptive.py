"""Adaptive sampling and DeepConf online, live, on the scripted backend: when they stop, what
they charge, what a stopped trace costs, and what they say when the backend lacks a part."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import group_of, no_sleep, run_benchmark
from ponder.bench.harness import Harness, plan
from ponder.bench.store import Store
from ponder.consensus import BetaStop, Observation, PriceStop, StoppingRule, replay
from ponder.errors import UsageError
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM, count_tokens
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.runtime.strategy import make_strategy
from ponder.types import GenRequest, Problem

PROBLEM = Problem(question="What is 6 * 7?", kind="number")
SURE = {"x": -8.0, "y": -9.0}  # alternatives far below the chosen token: confidence ≈ 5.7
UNSURE = {"x": -0.9, "y": -1.2}  # close alternatives: confidence ≈ 0.9


def engine(
    reply: object,
    *,
    stream: bool = True,
    logprobs: bool = True,
    decode_s: float = 0.0,
    token_logprobs: object = None,
    slots: int = 8,
) -> tuple[Engine, ScriptedLM]:
    caps = Capabilities(slots=slots, n_with_stop=True, stream=stream, logprobs=logprobs)
    lm = ScriptedLM(
        reply,  # type: ignore[arg-type]
        capabilities=caps,
        decode_s=decode_s,
        token_logprobs=token_logprobs,  # type: ignore[arg-type]
    )
    return Engine(lm, scheduler=Scheduler(sleep=no_sleep)), lm


def sure(req: GenRequest, index: int, position: int, token: str) -> dict[str, float]:
    return {token: -0.01, **SURE}


async def test_beta_stops_after_four_agreeing_samples_and_charges_only_those() -> None:
    eng, lm = engine(["so the answer is \\boxed{42}"])
    r = await eng.solve(PROBLEM, "adaptive", n=16, seed=1, rule="beta")
    # (4, 0): 1 − I½(5, 1) = 1 − 1/32 = 0.969 ≥ 0.95; the first wave is 4 samples
    assert r.answer == "42" and r.info["samples"] == 4 and r.info["cut"] == 0
    assert r.info["reason"] == "P(leader stays) 0.969 ≥ 0.95"
    assert len(lm.calls) == 4
    assert r.total.completion_tokens == sum(c.completion_tokens for c in r.candidates)


async def test_split_answers_run_to_the_budget() -> None:
    eng, lm = engine(lambda req, i, rng: f"\\boxed{{{rng.choice([1, 2, 3, 4])}}}")
    r = await eng.solve(PROBLEM, "adaptive", n=10, seed=3, rule="esc", window=5)
    assert len(lm.calls) == 10 and r.info["reason"] == "budget of 10 reached"


async def test_samples_in_flight_stop_within_one_token_and_are_charged_exactly() -> None:
    """ESC with a window of 1 stops at the first finished sample; the three others of its wave
    are longer and are stopped at their next token: the tokens charged are exactly the
    tokens written, and no sample writes more than one token after the decision."""

    lengths = iter([3, 40, 60, 80])

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        return " ".join(["step"] * next(lengths)) + " \\boxed{42}"

    eng, lm = engine(reply, decode_s=0.001, token_logprobs=sure)
    r = await eng.solve(PROBLEM, "adaptive", n=8, seed=5, rule="esc", window=1, wave=4)
    finished = [c for c in r.candidates if c.finish_reason != "stopped"]
    cut = [c for c in r.candidates if c.finish_reason == "stopped"]
    assert len(finished) == 1 and len(cut) == 3
    assert all(c.note == "stopped: the answer was settled" for c in cut)
    assert (
        r.total.completion_tokens == lm.streamed == sum(c.completion_tokens for c in r.candidates)
    )
    shortest = finished[0].completion_tokens
    assert all(c.completion_tokens <= shortest + 1 for c in cut)  # stopped within one token
    assert lm.stopped == 3


async def test_a_backend_that_cannot_stream_writes_samples_whole_and_says_so() -> None:
    eng, lm = engine(["\\boxed{42}"], stream=False)
    r = await eng.solve(PROBLEM, "adaptive", n=16, seed=1, rule="beta", wave=8)
    # the first wave of 8 settles it (four would), but cannot be stopped: all 8 are written
    # whole, charged whole, and vote; no second wave is launched
    assert len(lm.calls) == 8 and r.info["streamed"] is False
    assert r.total.completion_tokens == sum(c.completion_tokens for c in r.candidates)
    assert r.info["samples"] == 4 and r.info["cut"] == 0 and len(r.candidates) == 8


async def test_weighted_consensus_without_logprobs_falls_back_to_counts_and_says_so() -> None:
    eng, _ = engine(["\\boxed{42}"], logprobs=False)
    r = await eng.solve(PROBLEM, "adaptive", n=8, seed=1, rule="weighted")
    assert r.answer == "42"
    assert "no confidence signal: plain counts" in r.info["reason"]


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 4000), st.integers(1, 12), st.sampled_from(["esc", "beta", "agreement", "price"])
)
async def test_no_rule_spends_past_its_budget(tokens: int, n: int, rule: str) -> None:
    eng, _ = engine(lambda req, i, rng: " ".join(["w"] * rng.randint(1, 60)) + " \\boxed{1}")
    r = await eng.solve(PROBLEM, "adaptive", n=n, seed=tokens, rule=rule, budget={"tokens": tokens})
    assert r.total.total_tokens <= tokens
    assert len([c for c in r.candidates if c.finish_reason != "error"]) <= n


def test_bad_options_name_the_option() -> None:
    from ponder.runtime.strategy import make_strategy

    with pytest.raises(UsageError, match=r"threshold: Input should be less than or equal to 1"):
        make_strategy("adaptive", threshold=1.5)
    with pytest.raises(UsageError, match=r"percentile: Input should be less than or equal to 100"):
        make_strategy("deepconf", percentile=150)
    with pytest.raises(UsageError, match="deepconf: warmup 8 exceeds n 4"):
        make_strategy("deepconf", n=4, warmup=8)
    # a count no run of n samples reaches would never act
    for key, rule in (("min_samples", "beta"), ("give_up_after", "beta"), ("window", "esc")):
        with pytest.raises(UsageError, match=f"{key} 9 exceeds n 8, the samples at most"):
            make_strategy("adaptive", n=8, rule=rule, **{key: 9})
        make_strategy("adaptive", n=9, rule=rule, **{key: 9})  # reached at the last sample
    make_strategy("adaptive", n=2, rule="esc")  # the default window is no choice made
    # a setting another rule reads was ignored silently (threshold and price were refused)
    with pytest.raises(UsageError, match="window is read by rule=esc, not rule=beta") as e:
        make_strategy("adaptive", rule="beta", window=2)
    assert e.value.option == "window"
    with pytest.raises(UsageError, match="signal is read by rule=weighted, not rule=esc"):
        make_strategy("adaptive", rule="esc", signal="length")
    # a stored config (every field set) is made again as it was
    for rule in ("esc", "beta", "weighted", "price"):
        made = make_strategy("adaptive", n=2, rule=rule)
        assert make_strategy("adaptive", **made.config()) == made


# -- DeepConf online ------------------------------------------------------------------------
def confident_unless_nine(
    req: GenRequest, index: int, position: int, token: str
) -> dict[str, float]:
    """Samples answering 9 are unsure from their start; the others sure."""
    return (
        {token: -0.7, **UNSURE}
        if req.seed is not None and req.seed % 3 == 0
        else {
            token: -0.01,
            **SURE,
        }
    )


def answer_by_seed(req: GenRequest, i: int, rng: random.Random) -> str:
    body = " ".join(["think"] * 40)
    return f"{body} \\boxed{{{9 if (req.seed or 0) % 3 == 0 else 42}}}"


async def test_deepconf_cuts_unsure_traces_and_votes_with_the_sure_ones() -> None:
    eng, lm = engine(answer_by_seed, token_logprobs=confident_unless_nine, decode_s=0.0005)
    r = await eng.solve(
        PROBLEM, "deepconf", n=16, seed=11, warmup=4, window=8, consensus=0.95, wave=4
    )
    cut = [c for c in r.candidates if c.note == "stopped: its confidence fell too low"]
    assert r.answer == "42"
    assert r.info["threshold"] is not None
    for c in cut:  # each was stopped as soon as its first group fell below the bar
        assert c.completion_tokens == 8
        assert "\\boxed" not in c.text
    assert (
        r.total.completion_tokens == lm.streamed == sum(c.completion_tokens for c in r.candidates)
    )


async def test_deepconf_without_logprobs_votes_plainly_and_says_so() -> None:
    eng, _ = engine(["\\boxed{42}"], logprobs=False)
    r = await eng.solve(PROBLEM, "deepconf", n=8, seed=1, warmup=2, consensus=0.9)
    assert r.answer == "42" and r.info["threshold"] is None
    assert any("no log-probabilities" in n for n in r.info["notes"])


async def test_adaptive_live_matches_its_replay_on_the_same_samples() -> None:
    """Samples of equal length finish in launch order, so the live strategy and the replay
    (ponder.consensus.replay) see the same samples in the same order and decide the same."""

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        return f"so it is \\boxed{{{rng.choice([42, 42, 42, 7])}}}"

    # (the strategy and its options, the rule and wave it runs): auto without a router is the
    # price rule one sample at a time; the price is one that stops some problems early here
    cases: list[tuple[str, dict[str, object], StoppingRule, int]] = [
        ("adaptive", {"rule": "beta", "wave": 3, "fill": False}, BetaStop(), 3),
        (
            "adaptive",
            {"rule": "price", "price": 0.03, "wave": 2, "fill": False},
            PriceStop(price=0.03),
            2,
        ),
        ("auto", {"price": 0.03}, PriceStop(price=0.03), 1),
    ]
    for name, options, rule, wave in cases:
        stopped_early = 0
        for seed in range(8):
            eng, lm = engine(reply)
            r = await eng.solve(PROBLEM, name, n=12, seed=seed, **options)
            # the samples in launch order, as the backend wrote them
            pool = []
            for req in lm.calls:
                text = reply(req, 0, lm._rng(req, 0))
                pool.append(Observation(0 if "{42}" in text else 1, count_tokens(text)))
            out = replay(rule, pool, len(pool), wave)
            assert out.samples == len(lm.calls), (name, options)
            assert out.tokens == r.total.completion_tokens
            assert (out.answer == 0) == (r.answer == "42")
            stopped_early += len(lm.calls) < 12
        assert stopped_early > 0, (name, options)


@pytest.mark.parametrize("fill", [True, False])
async def test_a_later_wave_takes_the_idle_slots_only_with_fill(fill: bool) -> None:
    """One problem alone on 8 slots, waves of 2, samples that never agree: with `fill` every
    wave after the first widens to the idle slots; without it each wave is 2."""

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        return f"so \\boxed{{{rng.randrange(10**6)}}}"

    eng, lm = engine(reply, decode_s=0.001)
    r = await eng.solve(PROBLEM, "adaptive", n=16, seed=3, rule="beta", wave=2, fill=fill)
    assert len(lm.calls) == 16 and r.info["samples"] == 16  # never settled: the whole budget
    assert lm.max_in_flight == (8 if fill else 2)


async def test_idle_slots_are_those_no_request_holds_or_waits_for() -> None:
    lm = ScriptedLM(["x"], capabilities=Capabilities(slots=4))
    scheduler = Scheduler(sleep=no_sleep, queue_factor=2.0)
    assert scheduler.idle_slots(lm) == 4
    units = scheduler.slots_for(lm)  # 8 units: llama.cpp's queue refills a freed slot
    await units.acquire(3)
    assert scheduler.idle_slots(lm) == 1
    await units.acquire(3)
    assert scheduler.idle_slots(lm) == 0  # busy past the slots: none idle
    units.release(4)  # 2 units held: 2 slots idle
    assert scheduler.idle_slots(lm) == 2
    waiter = asyncio.ensure_future(units.acquire(7))  # more than the 6 free: it waits
    await asyncio.sleep(0)
    assert units.waiting == 7
    assert scheduler.idle_slots(lm) == 0  # a request waits: its claim comes first
    units.release(2)
    await waiter


@pytest.mark.parametrize("rolling", [False, True])
async def test_rolling_launches_the_next_sample_as_one_finishes(rolling: bool) -> None:
    """ESC (2 in a row), 2 running: the first sample is long and wrong, the others short and
    right. In waves the short one waits for the long one, and the next wave is needed; rolling,
    the next sample starts at once, the two short ones settle it and the long one is cut."""
    calls = iter(range(100))

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        if next(calls) == 0:
            return " ".join(["step"] * 300) + " \\boxed{7}"
        return "step \\boxed{42}"

    eng, lm = engine(reply, decode_s=0.001, token_logprobs=sure)
    r = await eng.solve(
        PROBLEM, "adaptive", n=8, seed=2, rule="esc", window=2, wave=2, fill=False,
        rolling=rolling,
    )  # fmt: skip
    assert r.answer == "42"
    if rolling:
        assert len(lm.calls) == 3 and r.info["samples"] == 2 and r.info["cut"] == 1
    else:
        assert len(lm.calls) == 4 and r.info["samples"] == 4 and r.info["cut"] == 0
    assert lm.max_in_flight == 2
    charged = sum(c.completion_tokens for c in r.candidates)
    assert r.total.completion_tokens == lm.streamed == charged


async def test_rolling_live_matches_its_replay_on_the_same_samples() -> None:
    """Equal-length samples finish in launch order: the live rolling strategy and the rolling
    replay decide the same, launch the same samples and charge the same tokens."""

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        return f"so it is \\boxed{{{rng.choice([42, 42, 42, 7])}}}"

    for seed in range(8):
        eng, lm = engine(reply)
        r = await eng.solve(
            PROBLEM, "adaptive", n=12, seed=seed, rule="beta", wave=3, fill=False, rolling=True
        )
        pool = []
        for req in lm.calls:
            text = reply(req, 0, lm._rng(req, 0))
            pool.append(Observation(0 if "{42}" in text else 1, count_tokens(text)))
        # padded to the budget: samples the live run never launched, which the replay must
        # not launch either
        pool += [Observation(1, 5)] * (12 - len(pool))
        out = replay(BetaStop(), pool, 12, 3, rolling=True)
        assert out.samples == len(lm.calls)
        assert out.tokens == r.total.completion_tokens
        assert (out.answer == 0) == (r.answer == "42")


def test_the_rolling_benchmark_replays_a_stored_pool(tmp_path: Path) -> None:
    """benchmarks/adaptive.py rolling: waves against rolling on a pool, no model."""
    import router_world as world

    store = asyncio.run(world.pool_store(tmp_path / "pool.sqlite", world.problems(6), n=8))
    r = run_benchmark("adaptive.py", "rolling", "--pool", str(store), "--orders", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("6 problems with 8 samples")
    rows = [line for line in r.stdout.splitlines() if line.startswith(("| beta", "| esc"))]
    assert len(rows) == 6 and all(line.count("%") == 4 for line in rows)


def test_the_against_benchmark_compares_pools_paired(tmp_path: Path) -> None:
    """benchmarks/adaptive.py against: a pool against itself is +0.0 at 1.00x at full size,
    and below that at fewer samples' tokens."""
    import router_world as world

    store = asyncio.run(world.pool_store(tmp_path / "pool.sqlite", world.problems(9), n=6))
    r = run_benchmark(
        "adaptive.py",
        "against",
        "--pool",
        str(store),
        "--answer-with",
        "reasoning",
        "--orders",
        "2",
    )
    assert r.returncode == 0, r.stderr
    rows = {line.split(" | ")[0]: line for line in r.stdout.splitlines() if " vote@" in line}
    assert len(rows) == 6
    full = next(line for name, line in rows.items() if name.endswith("vote@6"))
    assert "| 1.00 | +0.0 [+0.0, +0.0] |" in full
    one = next(line for name, line in rows.items() if name.endswith("vote@1"))
    assert "| 0.17 |" in one


def test_the_tune_benchmark_chooses_on_train_and_judges_on_test(tmp_path: Path) -> None:
    """benchmarks/adaptive.py tune: each family's setting (a fixed vote among them) chosen on
    one store and judged on another; asking for pools a store lacks names them."""
    import subprocess

    import router_world as world

    train = asyncio.run(world.pool_store(tmp_path / "train.sqlite", world.problems(9), n=4))
    test = asyncio.run(world.pool_store(tmp_path / "test.sqlite", world.problems(9, start=9), n=4))

    def tune(*extra: str) -> subprocess.CompletedProcess[str]:
        return run_benchmark(
            "adaptive.py", "tune", "--train", str(train), "--test", str(test), *extra
        )

    r = tune()
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Train: 9 problems")
    families = {line.split(" | ")[0][2:] for line in r.stdout.splitlines() if line[:2] == "| "}
    assert {"majority@4", "fixed vote", "esc", "beta", "agreement", "weighted"} <= families
    r = tune("--answer-with", "tir")
    assert r.returncode == 1 and "no pool of --answer-with tir samples" in r.stderr


async def test_the_online_grid_chooses_on_train_and_judges_on_test(tmp_path: Path) -> None:
    """benchmarks/adaptive.py online-grid: DeepConf online over windows, warm-ups and
    percentiles, the cheapest setting within the tolerance on train judged on test."""
    from test_confidence_report import reply, token_logprobs

    caps = Capabilities(slots=8, n_with_stop=True, stream=True)
    lm = ScriptedLM(reply, capabilities=caps, token_logprobs=token_logprobs)
    engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
    stores = []
    for name, start in (("train", 0), ("test", 100)):
        problems = [
            Problem(question=f"q{i}: 6 * 7?", gold="42", kind="number", id=f"p{i}")
            for i in range(start, start + 8)
        ]
        store = Store(tmp_path / f"{name}.sqlite")
        (p,) = plan([make_strategy("vote", n=8)])
        await Harness(engine, store).execute("t", problems, p, seed=0)
        store.close()
        stores.append(str(tmp_path / f"{name}.sqlite"))
    r = run_benchmark(
        *("adaptive.py", "online-grid", "--train", stores[0], "--test", stores[1]),
        *("--n", "8", "--windows", "4", "8", "--warmups", "2", "--percentiles", "10", "90"),
        *("--orders", "2", "--tolerance", "1.0"),
    )
    assert r.returncode == 0, r.stderr
    assert "4 settings (consensus 0.95, waves of 2), 4 within 100 point(s)" in r.stdout
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 4 + 1  # the header, the kept ones, the cheapest of all
    assert "On test (window " in r.stdout and "against majority@8" in r.stdout


def test_the_versus_benchmark_sets_a_live_run_beside_the_pools_vote(tmp_path: Path) -> None:
    """benchmarks/adaptive.py versus: a live adaptive run on problems of a pool, paired with
    the pool's majority@8 on the problems both have; it stops early on the easy ones, so it
    writes fewer tokens."""

    import router_world as world
    from ponder.bench.harness import Harness, plan
    from ponder.bench.store import Store
    from ponder.runtime.strategy import make_strategy

    pool = asyncio.run(world.pool_store(tmp_path / "pool.sqlite", world.problems(9), n=8))

    async def live() -> None:
        store = Store(tmp_path / "live.sqlite")
        for p in plan([make_strategy("adaptive", n=8, wave=2)]):
            await Harness(world.engine(), store).execute("world", world.problems(12), p)
        store.close()

    asyncio.run(live())
    r = run_benchmark(
        "adaptive.py", "versus", "--pool", str(pool), "--live", str(tmp_path / "live.sqlite")
    )
    assert r.returncode == 0, r.stderr
    rows = [line.split(" | ") for line in r.stdout.splitlines() if line.startswith("| ")]
    base, adaptive = rows[-2], rows[-1]
    assert base[0] == "| majority@8 (the pool)" and base[1] == adaptive[1] == "9"
    assert adaptive[0].startswith("| adaptive")
    assert 0 < float(adaptive[5]) < 1.0  # generated tokens × majority@8
    assert float(adaptive[7].rstrip(" |")) > 0  # wall × majority@8


def test_answer_features_are_shares_and_z_scored_confidences_by_hand() -> None:
    """benchmarks/adaptive.py learned: per answer class, its vote share, log count, whether it
    leads, and per signal its supporters' mean and best confidence as z-scores in the subset;
    a sample without an answer neither votes nor sets the centre."""
    import sys

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from adaptive import answer_features, choices
    from ponder.bench.confidence import PoolSignals
    from ponder.signals import SIGNALS

    group = group_of([[0, 1, 0, -1]], [[True, False, True, False]])
    signals = {s: np.full((1, 4), np.nan) for s in SIGNALS}
    signals["logprob"] = np.array([[-0.1, -0.5, -0.3, -9.0]])
    pool = PoolSignals(group, np.ones((1, 4)), np.ones((1, 4)), signals)
    got = answer_features(pool, 0, np.arange(4))
    assert got is not None
    x, labels, counts = got
    spread = np.std([-0.1, -0.5, -0.3]) + 1e-6
    at = 3 + 2 * SIGNALS.index("logprob")
    assert x.shape == (2, 3 + 2 * len(SIGNALS))
    assert np.allclose(x[0, :3], [2 / 3, np.log(2), 1.0]) and np.allclose(x[1, :3], [1 / 3, 0, 0])
    assert np.allclose(x[0, at : at + 2], [0.1 / spread, 0.2 / spread])
    assert np.allclose(x[1, at : at + 2], [-0.2 / spread, -0.2 / spread])
    assert np.count_nonzero(x[:, 3:]) == 4  # the other signals are missing: no evidence
    assert labels.tolist() == [True, False] and counts.tolist() == [2, 1]
    # classes in the order first seen, not sorted: 1 leads the row here and wins the 2-2 tie
    pool = PoolSignals(
        group_of([[1, 0, 0, 1]], [[True, False, False, True]]), *([np.ones((1, 4))] * 2), signals
    )
    got = answer_features(pool, 0, np.arange(4))
    assert got is not None
    assert got[1].tolist() == [True, False] and got[2].tolist() == [2, 2]
    assert choices(None, [(0, *got)]).tolist() == [[1.0, 1.0]]


def test_the_learned_benchmark_fits_on_train_and_judges_on_test(tmp_path: Path) -> None:
    """benchmarks/adaptive.py learned: C chosen by cross-validation on the train store, one row
    per test store and k, each learned pick paired with majority on the same subsets."""
    import router_world as world

    train = asyncio.run(world.pool_store(tmp_path / "train.sqlite", world.problems(15), n=8))
    test = asyncio.run(world.pool_store(tmp_path / "test.sqlite", world.problems(9, start=15), n=8))
    r = run_benchmark(
        "adaptive.py", "learned", "--train", str(train), "--test", str(test), "--ks", "4", "8",
        "--subsets", "3",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Train: 15 problems") and "→ C = " in r.stdout
    rows = [line.split(" | ") for line in r.stdout.splitlines() if line.startswith("| test.")]
    assert [row[1] for row in rows] == ["4", "8"] and all(row[2] == "9" for row in rows)
    # at k = the pool's size the majority column is the store's own majority@8
    from ponder.bench.analysis import load_groups, points
    from ponder.bench.store import Store

    (group,) = [g for g in load_groups(Store(test, readonly=True)) if g.kind == "pool"]
    (vote8,) = [p for p in points(group) if p.method == "vote" and p.k == 8]
    assert rows[1][4] == f"{100 * vote8.accuracy:.1f}%"
    # test problems among the train problems are refused
    r = run_benchmark("adaptive.py", "learned", "--train", str(train), "--test", str(train))
    assert r.returncode == 1 and "15 problems of" in r.stderr and "in the train store" in r.stderr
