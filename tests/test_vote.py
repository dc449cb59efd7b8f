from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import scripted_engine
from ponder.search import plurality

answers = st.lists(
    st.one_of(st.none(), st.sampled_from(["1", "2", "3", "42", "-7"])), min_size=1, max_size=16
)


@given(answers)
def test_plurality_picks_a_most_common_answer(xs: list[str | None]) -> None:
    winner, votes, tie = plurality(xs)
    counts = Counter(x for x in xs if x is not None)
    if not counts:
        assert winner is None and votes == {} and not tie
        return
    top = max(counts.values())
    assert votes == dict(counts)
    assert counts[winner] == top  # type: ignore[index]
    assert tie == (sum(c == top for c in counts.values()) > 1)
    # ties go to the first-seen leader: deterministic
    assert winner == next(x for x in xs if x is not None and counts[x] == top)


@settings(max_examples=40, deadline=None)
@given(answers)
async def test_vote_strategy_returns_the_plurality_of_its_samples(xs: list[str | None]) -> None:
    replies = [f"work... \\boxed{{{x}}}" if x is not None else "I am not sure." for x in xs]
    engine, lm = scripted_engine(replies)
    result = await engine.solve("q?", "vote", n=len(xs), seed=1)
    assert [c.answer for c in result.candidates] == xs
    expected, _, tie = plurality(xs)
    assert result.answer == expected
    assert result.info["tie"] == tie
    assert len(lm.calls) == 1 and lm.calls[0].n == len(xs)  # one request: siblings share a prefix


async def test_greedy_and_sample() -> None:
    engine, lm = scripted_engine(["\\boxed{5}", "\\boxed{6}"])
    g = await engine.solve("q?", "greedy", seed=3)
    assert g.answer == "5" and len(g.candidates) == 1 and lm.calls[-1].temperature == 0.0
    s = await engine.solve("q?", "sample", n=2, seed=3)
    assert [c.answer for c in s.candidates] == ["5", "6"] and s.answer == "5"
