"""benchmarks/cross_vote.py: `cross_vote` priced on a scripted pool store and a scripted greedy
program store, against hand-worked answers."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from helpers import scripted_engine
from ponder.bench.harness import Harness, plan
from ponder.bench.store import Store
from ponder.consensus import ESC
from ponder.lm.scripted import ReplyFn
from ponder.runtime.strategy import make_strategy
from ponder.types import GenRequest, Problem

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import cross_vote

# question → (its chains' answers in turn, the program's printed line or None, the gold answer)
WORLD = {
    "backed": (["390", "390", "400", "390"], "400", "400"),  # only cross_vote is right
    "agreed": (["7", "7", "7", "7"], "8", "7"),  # the program is wrong and unbacked
    "failed": (["6", "5", "6", "6"], None, "6"),  # no program answer: the plain majority
}


def world() -> ReplyFn:
    """Each question's chains in turn (counted per question), and its program."""
    calls = dict.fromkeys(WORLD, 0)

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        assert req.messages is not None
        name = next(q for q in WORLD if q in req.messages[-1].content)
        chains, printed, _ = WORLD[name]
        if "Python program" in req.messages[0].content:
            body = "raise ValueError('no')" if printed is None else f"print({printed})"
            return f"```python\n{body}\n```"
        calls[name] += 1
        return f"so \\boxed{{{chains[(calls[name] - 1) % len(chains)]}}}"

    return reply


async def stores(tmp_path: Path) -> tuple[Path, Path]:
    """A pool of 4 chains per question and a greedy program run, each in its own store."""
    items = [
        Problem(question=f"{q}: what?", gold=g, kind="number", id=q)
        for q, (_, _, g) in WORLD.items()
    ]
    pool, pal = tmp_path / "pool.sqlite", tmp_path / "pal.sqlite"
    runs = (
        (pool, make_strategy("vote", n=4)),
        (pal, make_strategy("greedy", answer_with="program")),
    )
    for path, strategy in runs:
        engine, _ = scripted_engine(world(), slots=1)
        store = Store(path)
        for p in plan([strategy]):
            await Harness(engine, store).execute("t", items, p, seed=0)
        store.close()
    return pool, pal


async def test_cross_vote_priced_on_stores_matches_hand_worked_answers(tmp_path: Path) -> None:
    pool_path, pal_path = await stores(tmp_path)
    pool = cross_vote.pool_of(pool_path)
    partner = cross_vote.partner_of(pal_path, "program")
    assert sorted(pool) == sorted(f"t/{q}" for q in WORLD)
    assert [s.answer for s in pool["t/backed"]] == ["390", "390", "400", "390"]
    assert partner["t/backed"].answer == "400" and partner["t/failed"].answer is None
    ids = sorted(pool)  # the order evaluate and early report problems in
    at3 = cross_vote.evaluate(pool, partner, 3, orders=50, seed=0)
    got = {pid: (at3["vote"][i], at3["cross"][i]) for i, pid in enumerate(ids)}
    assert got["t/agreed"] == got["t/failed"] == (1.0, 1.0)
    # 3 chains of the 4: the vote is 390 in every subset; cross_vote is right when 400 is in it
    # (3 subsets in 4)
    assert got["t/backed"][0] == 0.0 and 0.5 < got["t/backed"][1] <= 1.0
    early = cross_vote.early(pool, partner, budget=4, full=4, wave=1, orders=40, seed=0)
    acc = dict(zip(ids, early["accuracy"], strict=True))
    assert acc == {"t/agreed": 1.0, "t/backed": 1.0, "t/failed": 1.0}
    chains = dict(zip(ids, early["chains"], strict=True))
    # no backed answer: every chain; backed: stops at the 400, on average half-way in
    assert chains["t/agreed"] == chains["t/failed"] == 4.0
    assert 1.0 <= chains["t/backed"] < 4.0
    assert list(early["majority"]) == [1.0, 0.0, 1.0]  # agreed, backed, failed


def test_a_store_without_the_run_asked_for_is_refused(tmp_path: Path) -> None:
    Store(tmp_path / "empty.sqlite").close()
    with pytest.raises(SystemExit, match="no chain-of-thought pool"):
        cross_vote.pool_of(tmp_path / "empty.sqlite")
    with pytest.raises(SystemExit, match="no greedy run answering with program"):
        cross_vote.partner_of(tmp_path / "empty.sqlite", "program")


async def test_a_live_run_is_read_and_compared_with_the_pool_and_its_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool_path, pal_path = await stores(tmp_path)
    live_path = tmp_path / "live.sqlite"
    items = [
        Problem(question=f"{q}: what?", gold=g, kind="number", id=q)
        for q, (_, _, g) in WORLD.items()
    ]
    engine, _ = scripted_engine(world(), slots=1)
    store = Store(live_path)
    for p in plan([make_strategy("cross_vote", n=4, wave=1)]):
        await Harness(engine, store).execute("t", items, p, seed=0)
    store.close()

    live = cross_vote.live_of(live_path)
    # backed: 390, 390, then 400 reaches the program's answer and stops; the others run all 4
    assert live.chains == {"t/backed": 3, "t/agreed": 4, "t/failed": 4}
    assert live.correct == {"t/backed": True, "t/agreed": True, "t/failed": True}
    assert live.strategy.n == 4 and live.strategy.wave == 1 and live.wall > 0.0
    assert all(t > 0 for t in live.generated.values())

    # the pool's wall: all of it for every problem, a third for one of the three (each has 4
    # of the segment's 12 samples)
    whole = cross_vote.pool_wall(pool_path, {f"t/{q}" for q in WORLD})
    assert whole > 0.0
    assert cross_vote.pool_wall(pool_path, {"t/backed"}) == pytest.approx(whole / 3)

    pool = cross_vote.pool_of(pool_path)
    partner = cross_vote.partner_of(pal_path, "program")
    cross_vote.compare_live(live, pool, partner, pool_path, full=4)
    out = capsys.readouterr().out
    live_row = next(line for line in out.splitlines() if line.startswith("| cross_vote, live"))
    # all three right live; the pool's majority misses "backed" (390): +33.3 points
    assert "100.0%" in live_row and "+33.3" in live_row and "| 3.7 |" in live_row


def test_a_store_without_a_cross_vote_run_is_refused(tmp_path: Path) -> None:
    Store(tmp_path / "empty.sqlite").close()
    with pytest.raises(SystemExit, match="no cross_vote run"):
        cross_vote.live_of(tmp_path / "empty.sqlite")


async def test_otherwise_stops_unbacked_problems_once_their_chains_settle(tmp_path: Path) -> None:
    pool_path, pal_path = await stores(tmp_path)
    pool = cross_vote.pool_of(pool_path)
    partner = cross_vote.partner_of(pal_path, "program")
    ids = sorted(pool)
    settle = cross_vote.settle_rule("esc window=2")
    assert settle == ESC(window=2)
    plain = cross_vote.early(pool, partner, budget=4, full=4, wave=1, orders=40, seed=0)
    settled = cross_vote.early(
        pool, partner, budget=4, full=4, wave=1, orders=40, seed=0, otherwise=settle
    )
    chains = dict(zip(ids, settled["chains"], strict=True))
    # "agreed" (7, 7, 7, 7; its program's 8 never backed) settles after 2 chains, not 4
    assert chains["t/agreed"] == 2.0
    # a backed problem stops where it did without the rule or sooner, never later
    assert chains["t/backed"] <= dict(zip(ids, plain["chains"], strict=True))["t/backed"]
    assert settled["tokens"].sum() < plain["tokens"].sum()
    assert dict(zip(ids, settled["accuracy"], strict=True))["t/agreed"] == 1.0


def test_an_unknown_otherwise_rule_is_refused() -> None:
    with pytest.raises(SystemExit, match="--otherwise: no rule 'often'"):
        cross_vote.settle_rule("often window=2")
