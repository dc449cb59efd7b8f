"""Consensus rules: stopping, selection and replay, on hand-computed pools and invariants."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ponder.consensus import (
    ESC,
    STOPPING_RULES,
    Agreement,
    BetaStop,
    ConfidenceWeighted,
    CrossCheck,
    Decision,
    DeepConfFilter,
    Majority,
    Observation,
    OnlineFilter,
    PriceStop,
    SelectionRule,
    SelfCertaintyBorda,
    StoppingRule,
    Trace,
    WeightedConsensus,
    deepconf_online,
    expected,
    observations,
    replay,
    traces,
    unsettled_per_token,
)
from ponder.consensus.selection import NO_CONFIDENCE
from ponder.consensus.stopping import leader_stays
from ponder.errors import UsageError
from ponder.types import Candidate, Signals, TokenStats


def obs(*answers: int | None, tokens: int = 10) -> list[Observation]:
    return [Observation(a, tokens) for a in answers]


def conf(*pairs: tuple[int | None, float | None]) -> list[Observation]:
    return [Observation(a, 10, c) for a, c in pairs]


def decisions(rule: StoppingRule, pool: Sequence[Observation], budget: int = 99) -> list[bool]:
    """The rule's stop/go after each sample of the pool."""
    return [rule.decide(pool[: i + 1], budget).stop for i in range(len(pool))]


# --- observations ----------------------------------------------------------------------------


def test_observations_cluster_answers_and_read_the_chosen_signal() -> None:
    cands = [
        Candidate(text="", answer="1", completion_tokens=5, signals=Signals(scores={"tail": 2.0})),
        Candidate(text="", answer="2", completion_tokens=6, signals=Signals(note="no logprobs")),
        Candidate(
            text="", answer="1.0", completion_tokens=7, signals=Signals(scores={"tail": 3.0})
        ),
        Candidate(text="", answer=None, completion_tokens=8),
    ]
    assert observations(cands, "number", "tail") == [
        Observation(0, 5, 2.0),
        Observation(1, 6, None),
        Observation(0, 7, 3.0),
        Observation(None, 8, None),
    ]
    assert [o.confidence for o in observations(cands, "number", None)] == [None] * 4
    with pytest.raises(UsageError, match="unknown confidence signal"):
        observations(cands, "number", "tails")
    stats = TokenStats(*(np.ones(3, np.float32) for _ in range(4)), k=20)
    cands[0] = cands[0].model_copy(update={"stats": stats})
    ts = traces(cands, "number")
    assert [t.answer for t in ts] == [0, 1, 0, None]
    assert ts[0].confidence.tolist() == [1.0, 1.0, 1.0] and ts[1].confidence.shape == (0,)


# --- stopping rules --------------------------------------------------------------------------


def test_esc_stops_when_the_last_window_agrees() -> None:
    rule = ESC()  # window 4, min_samples 4
    assert rule.min_samples == 4 and ESC(window=3).min_samples == 3
    assert ESC(window=3, min_samples=5).min_samples == 5
    assert decisions(rule, obs(0, 1, 1, 1, 1)) == [False, False, False, False, True]
    d = rule.decide(obs(0, 1, 1, 1, 1), 99)
    assert d == Decision(True, "4 of the last 4 answers agree", 1)
    assert rule.decide(obs(1, 1, 1), 99).reason == "3 of the 4 samples needed first"
    # a missing answer breaks a run, and four missing answers do not agree
    assert decisions(rule, obs(1, 1, None, 1, 1, 1, 1)) == [False] * 6 + [True]
    assert decisions(rule, obs(None, None, None, None)) == [False] * 4
    # min_samples below the window: nothing stops before a whole window
    assert ESC(window=3, min_samples=1).decide(obs(2, 2), 99).reason == (
        "2 samples, fewer than the window of 3"
    )


@pytest.mark.parametrize("name", sorted(STOPPING_RULES))
def test_every_rule_gives_up_when_no_two_answers_agree(name: str) -> None:
    rule = STOPPING_RULES[name](give_up_after=4, min_samples=99)  # stops only by giving up
    # four different answers: give up at the fourth, the first answer (3) leading
    assert decisions(rule, obs(3, 1, 2, 0)) == [False, False, False, True]
    d = rule.decide(obs(3, 1, 2, 0), 16)
    assert (d.stop, d.leader) == (True, 3)
    assert d.reason.startswith("giving up: no two of 4 answers agree")
    # missing answers neither agree nor keep it going: two answers in four samples, unlike
    assert decisions(rule, obs(None, 1, None, 2)) == [False, False, False, True]
    # one pair anywhere and it never gives up
    assert decisions(rule, obs(1, 2, 1, 3, 4, 5)) == [False] * 6
    assert decisions(STOPPING_RULES[name](min_samples=99), obs(0, 1, 2, 3, 4)) == [False] * 5
    with pytest.raises(ValidationError):
        STOPPING_RULES[name](give_up_after=1)


def test_cross_check_hand_computed() -> None:
    rule = CrossCheck(programs=(1,))
    # the third chain reaches the program's answer 1: stop, and 1 leads though 0 has two chains
    assert decisions(rule, obs(0, 0, 1, 0)) == [False, False, True, True]
    d = rule.decide(obs(0, 0, 1), 99)
    assert d == Decision(True, "a chain of thought reached a program's answer", 1)
    # without stop_early it runs to the budget; the backed answer still leads
    late = CrossCheck(programs=(1,), stop_early=False)
    assert decisions(late, obs(0, 0, 1, 0), budget=4) == [False, False, False, True]
    assert late.decide(obs(0, 0, 1, 0), 4).leader == 1
    # nothing backed: the majority of programs and chains, a tie to the program (seen first)
    assert rule.decide(obs(0, 0, 2), 3).leader == 0
    assert rule.decide(obs(0), 1).leader == 1
    # a program without an answer backs nothing
    assert CrossCheck(programs=(None,)).decide(obs(0, None), 2) == Decision(
        True, "budget of 2 reached", 0
    )


def test_give_up_replays_exactly() -> None:
    # waves of 2: samples (0: 10 tokens, 1: 20) then (2: 30, 3: 40), all different: gives up
    # when sample 3 ends, the budget of 8 unspent
    pool = [Observation(a, t) for a, t in [(0, 10), (1, 20), (2, 30), (3, 40), (0, 50)] * 2]
    out = replay(BetaStop(give_up_after=4), pool, 8, 2)
    assert (out.samples, out.tokens, out.answer) == (4, 100, 0)
    assert replay(BetaStop(), pool, 8, 2).samples == 8


def test_esc_leader_is_the_majority_of_all_finished_samples() -> None:
    pool = obs(0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1)  # the first agreeing window is the last
    assert decisions(ESC(), pool) == [False] * 10 + [True]
    assert ESC().decide(pool, 99).leader == 0  # 6 votes for 0, 5 for 1


def test_beta_stop_hand_computed() -> None:
    # 1 − I₀.₅(a, b) with I₀.₅(a, b) = P(Binomial(a + b − 1, ½) ≥ a):
    # (3, 0): I₀.₅(4, 1) = 1/16 → 0.9375 < 0.95: go on
    # (4, 0): I₀.₅(5, 1) = 1/32 → 0.96875 ≥ 0.95: stop
    # (4, 1): I₀.₅(5, 2) = (6 + 1)/64 → 0.890625: go on
    # (2, 2): ½
    assert leader_stays(3, 0) == pytest.approx(0.9375)
    assert leader_stays(4, 0) == pytest.approx(0.96875)
    assert leader_stays(4, 1) == pytest.approx(57 / 64)
    assert leader_stays(2, 2) == pytest.approx(0.5)
    rule = BetaStop()
    assert rule.decide(obs(0, 0, 0), 99) == Decision(False, "P(leader stays) 0.938 < 0.95", 0)
    assert rule.decide(obs(0, 0, 0, 0), 99) == Decision(True, "P(leader stays) 0.969 ≥ 0.95", 0)
    assert not rule.decide(obs(0, 1, 0, 0, 0), 99).stop
    # missing answers count for no one
    assert decisions(rule, obs(0, None, 0, 0, None, 0)) == [False] * 5 + [True]
    # a tie goes to the answer seen first
    assert rule.decide(obs(1, 0, 0, 1), 99) == Decision(False, "P(leader stays) 0.500 < 0.95", 1)
    assert rule.decide(obs(None, None), 99) == Decision(False, "no answer yet", None)


def test_the_price_rule_hand_computed() -> None:
    """gain = (1 − P(leader stays)) / (mean tokens · √samples); stop when gain < price."""
    rule = PriceStop(price=7e-4)
    # one answer, 300 tokens: (1 − 0.75) / 300 = 8.3e-4 ≥ 7e-4: go on; 400 tokens: 6.25e-4: stop
    assert unsettled_per_token([1], 300, 1, 0.5) == pytest.approx(0.25 / 300)
    assert not rule.decide(obs(0, tokens=300), 99).stop
    assert rule.decide(obs(0, tokens=400), 99) == Decision(
        True, "one more sample promises 6.25e-04 per token < the price 0.0007", 0
    )
    # two alike at 300: 0.125 / (300 · √2) = 2.9e-4: stop; two apart: 0.5 / (300 · √2): go on
    assert rule.decide(obs(0, 0, tokens=300), 99).stop
    assert not rule.decide(obs(0, 1, tokens=300), 99).stop
    assert unsettled_per_token([1, 1], 300, 2, 0.5) == pytest.approx(0.5 / (300 * 2**0.5))
    # undamped, the same two apart promise √2 more
    assert unsettled_per_token([1, 1], 300, 2, 0.0) == pytest.approx(0.5 / 300)
    # the mean cost decides: a short first sample is worth another, a long one is not
    short, long = PriceStop(price=1e-3), [Observation(0, 2000)]
    assert not short.decide([Observation(0, 100)], 99).stop and short.decide(long, 99).stop
    # no answer yet: P(stays) of 0 against 0 is ½; an empty sample costs at least one token
    assert unsettled_per_token([], 0, 1, 0.5) == pytest.approx(0.5)
    assert not rule.decide(obs(None, tokens=0), 99).stop
    with pytest.raises(ValidationError):
        PriceStop(price=0.0)


@given(st.integers(0, 30), st.integers(0, 30))
def test_leader_stays_is_a_binomial_tail(v1: int, v2: int) -> None:
    # I₀.₅(v1 + 1, v2 + 1) = P(Binomial(v1 + v2 + 1, ½) ≥ v1 + 1)
    n = v1 + v2 + 1
    tail = sum(math.comb(n, k) for k in range(v1 + 1, n + 1)) / 2**n
    assert leader_stays(v1, v2) == pytest.approx(1 - tail, abs=1e-12)


def test_agreement_stops_at_the_leaders_share_of_answers() -> None:
    rule = Agreement()  # 0.75 of at least 2 answers
    assert decisions(rule, obs(0, 1, 0, 0)) == [False, False, False, True]
    assert rule.decide(obs(0, 1, 0), 99).reason == "2 of 3 answers agree (0.67 < 0.75)"
    assert rule.decide(obs(0, 1, 0, 0), 99).reason == "3 of 4 answers agree (0.75 ≥ 0.75)"
    # the share is of answers; missing ones count only against the budget
    assert rule.decide(obs(None, 0), 99).reason == "1 of the 2 answers needed first"
    assert rule.decide(obs(None, 0, None, 0), 99) == Decision(
        True, "2 of 2 answers agree (1.00 ≥ 0.75)", 0
    )


def test_weighted_consensus_weighs_by_confidence() -> None:
    rule = WeightedConsensus()
    # 19 / (19 + 1) = 0.95: stop although the count is one against one
    assert rule.decide(conf((0, 19.0), (1, 1.0)), 99) == Decision(
        True, "weighted share 0.950 ≥ 0.95", 0
    )
    assert rule.decide(conf((0, 1.0), (1, 19.0)), 99).leader == 1
    # a sample without a confidence weighs the mean of the others: 3 + 1 against 2
    d = rule.decide(conf((0, 3.0), (1, None), (0, 1.0)), 99)
    assert d == Decision(
        False,
        "weighted share 0.667 < 0.95; 1 of 3 without confidence weigh the mean 2.000",
        0,
    )
    # no confidence at all: plain counts, and the reason says so
    d = rule.decide(conf((0, None), (0, None), (1, None)), 99)
    assert d.reason == "weighted share 0.667 < 0.95; no confidence signal: plain counts"
    assert rule.decide(conf((0, None), (0, None)), 99).stop
    # weights are clamped positive: a zero confidence still votes a little
    assert rule.decide(conf((0, 0.0), (0, 0.0)), 99).stop
    assert rule.decide(conf((None, 5.0), (None, 5.0)), 99) == Decision(False, "no answer yet", None)


@pytest.mark.parametrize("name", sorted(STOPPING_RULES))
def test_every_rule_stops_at_its_budget(name: str) -> None:
    rule = STOPPING_RULES[name]()
    pool = obs(0, 1, 2)  # no agreement at all
    assert rule.decide(pool, 4).stop is False
    d = rule.decide(pool, 3)
    assert d.stop and d.reason.startswith("budget of 3 reached") and d.leader == 0
    assert rule.decide(obs(None, None), 2) == Decision(
        True,
        "budget of 2 reached",
        None,
    )


def test_rule_configs_are_validated_plain_data() -> None:
    with pytest.raises(ValidationError):
        BetaStop(threshold=1.5)
    with pytest.raises(ValidationError):
        ESC(window=0)
    with pytest.raises(ValidationError):
        Agreement(shares=0.5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        WeightedConsensus().threshold = 0.5  # type: ignore[misc]
    assert BetaStop.model_validate({"threshold": 0.9}) == BetaStop(threshold=0.9)


def test_next_wave_fills_the_slots_and_never_passes_the_budget() -> None:
    assert ESC().next_wave([], 16, 2) == 4  # min_samples first: nothing stops before
    assert ESC().next_wave(obs(0, 1, 0, 1), 16, 2) == 2  # then what the slots hold
    assert BetaStop().next_wave([], 16, 8) == 8  # a full first wave costs no wall time
    assert BetaStop().next_wave([], 5, 8) == 5  # ... but never more than the budget
    assert BetaStop().next_wave(obs(0, 1, 0, 1), 5, 8) == 1
    assert Agreement().next_wave(obs(0, 1), 2, 8) == 0


# --- selection rules -------------------------------------------------------------------------


def test_majority_and_its_ties() -> None:
    s = Majority().select(obs(0, 1, 1, None))
    assert (s.answer, s.weights, s.note, s.tie) == (1, {0: 1.0, 1: 2.0}, None, False)
    assert Majority().select(obs(0, 1)).answer == 0 and Majority().select(obs(0, 1)).tie
    assert Majority().select(obs(1, 0)).answer == 1
    empty = Majority().select(obs(None))
    assert (empty.answer, empty.weights, empty.tie) == (None, {}, False)


def test_cisc_softmax_weights() -> None:
    pool = conf((0, 1.0), (1, 0.0), (1, 0.0))
    # T = 1: weights e/(e + 2) against 1/(e + 2) twice: class 0 has 0.576 > 0.424
    s = ConfidenceWeighted().select(pool)
    e = math.e
    assert s.answer == 0
    assert s.weights == pytest.approx({0: e / (e + 2), 1: 2 / (e + 2)})
    # T = 10 flattens them: e^0.1 / (e^0.1 + 2) = 0.356, so the two votes win
    s = ConfidenceWeighted(temperature=10).select(pool)
    assert s.answer == 1 and s.weights[0] == pytest.approx(math.exp(0.1) / (math.exp(0.1) + 2))


def test_deepconf_filter_keeps_the_ceiling_of_the_share() -> None:
    rule = DeepConfFilter
    assert rule(keep=0.9).kept(10) == 9  # not 10: 0.9 · 10 rounds to 9 first
    assert rule(keep=0.85).kept(10) == 9  # ⌈8.5⌉
    assert rule(keep=0.9).kept(16) == 15  # ⌈14.4⌉
    assert rule(keep=0.1).kept(16) == 2  # ⌈1.6⌉
    assert rule(keep=0.01).kept(10) == 1  # at least one
    assert rule(keep=1.0).kept(7) == 7
    # keep 0.4 of 5 = 2: the two most confident (both 0) outvote three less confident 1s
    pool = conf((0, 5.0), (1, 1.0), (1, 1.5), (1, 2.0), (0, 4.0), (None, 9.0))
    s = rule(keep=0.4).select(pool)
    assert (s.answer, s.weights) == (0, {0: 9.0})
    assert rule(keep=1.0).select(pool).weights == {0: 9.0, 1: 4.5}
    # equal confidence at the boundary: the earlier sample is kept (⌈0.3 · 3⌉ = 1)
    assert rule(keep=0.3).select(conf((0, 1.0), (1, 2.0), (2, 2.0))).answer == 1


def test_self_certainty_borda_weights_for_three() -> None:
    # ranks by confidence: sample 1 (0.9) r=1, sample 2 (0.5) r=2, sample 0 (0.2) r=3;
    # p = ½: weights √3, √2, 1 → class 0 has 1 + √2 = 2.414 > √3 = 1.732
    pool = conf((0, 0.2), (1, 0.9), (0, 0.5))
    s = SelfCertaintyBorda().select(pool)
    assert s.answer == 0 and s.weights == pytest.approx({0: 1 + math.sqrt(2), 1: math.sqrt(3)})
    # p = 2: weights 9, 4, 1 → class 1 has 9 > 5
    s = SelfCertaintyBorda(p=2).select(pool)
    assert s.answer == 1 and s.weights == pytest.approx({0: 5.0, 1: 9.0})
    assert SelfCertaintyBorda(p=0).select(pool).weights == {0: 2.0, 1: 1.0}


@pytest.mark.parametrize(
    "rule", [ConfidenceWeighted(), DeepConfFilter(), SelfCertaintyBorda()], ids=lambda r: r.name
)
def test_confidence_rules_fall_back_to_majority_and_say_so(rule: SelectionRule) -> None:
    s = rule.select(conf((0, None), (1, None), (1, None), (None, 3.0)))
    assert (s.answer, s.weights, s.note, s.tie) == (1, {0: 1.0, 1: 2.0}, NO_CONFIDENCE, False)
    partial = rule.select(conf((0, 4.0), (1, None), (1, 2.0)))
    assert partial.note == "1 of 3 without confidence weigh the mean 3.000"
    assert rule.select(obs(None)).note is None


# --- online filter and DeepConf online -------------------------------------------------------


def stops_at(check: OnlineFilter, confidence: Sequence[float]) -> int | None:
    return next((i for i, c in enumerate(confidence) if check.update(c)), None)


def test_online_filter_stops_at_the_first_low_group() -> None:
    # window 3, threshold 2: groups (from token 2 on) 3, 7/3, 5/3 < 2 → stop at token 4
    assert stops_at(OnlineFilter(2.0, 3), [3, 3, 3, 1, 1, 1]) == 4
    # fewer tokens than a window are never judged: the first group (0+0+5)/3 is at token 2
    assert stops_at(OnlineFilter(2.0, 3), [0, 0, 5, 5, 5]) == 2
    assert stops_at(OnlineFilter(2.0, 3), [0, 0]) is None
    # a group equal to the threshold is not below it
    assert stops_at(OnlineFilter(2.0, 3), [2, 2, 2, 2]) is None
    assert stops_at(OnlineFilter(2.0, 1), [3, 2, 1.5]) == 2
    with pytest.raises(UsageError):
        OnlineFilter(2.0, 0)


@given(st.lists(st.integers(0, 9), max_size=40), st.integers(1, 6), st.integers(0, 9))
def test_online_filter_matches_the_sliding_windows(xs: list[int], window: int, thr: int) -> None:
    check = OnlineFilter(thr / 2, window)
    truth = next(
        (
            i
            for i in range(window - 1, len(xs))
            if sum(xs[i - window + 1 : i + 1]) / window < thr / 2
        ),
        None,
    )
    assert stops_at(check, [float(x) for x in xs]) == truth


def trace(answer: int | None, *confidence: float) -> Trace:
    return Trace(answer, len(confidence), np.asarray(confidence, np.float32))


DEEPCONF_POOL = [
    trace(0, 4, 4, 4, 4),  # warm-up: lowest group 4
    trace(1, 3.5, 3.5, 3.5, 3.5),  # warm-up: 3.5
    trace(2, 2, 2, 2, 2),  # warm-up: 2, below the threshold: does not vote
    trace(0, 4, 4, 1, 1, 4),  # groups 4, 2.5, 1 < 2.3: cut at token 3 (4 tokens charged)
    trace(1, 1),  # shorter than a window: never cut, but its mean 1 < 2.3: does not vote
    trace(0, 3, 3, 3),  # votes 3
    trace(0, 5, 5),  # votes 5
    trace(1, 5, 5),
]


def test_deepconf_online_hand_made_pool() -> None:
    # threshold: 10th percentile of (2, 3.5, 4) = 2 + 0.2 · 1.5 = 2.3; votes after the
    # warm-up {0: 4, 1: 3.5} (0.533). The wave is traces 3-6; they end after 4 (cut at its
    # fourth token), 1, 3 and 2 tokens, so in the order 4, 6, 5, 3: trace 4 (mean 1 < 2.3)
    # does not vote; trace 6 makes {0: 9, 1: 3.5} (0.72); trace 5 {0: 12, 1: 3.5}: 12 / 15.5
    # = 0.774 ≥ 0.75, so trace 3 is stopped having written 3 tokens like trace 5.
    out = deepconf_online(DEEPCONF_POOL, 8, warmup=3, window=2, consensus=0.75)
    assert out.threshold == pytest.approx(2.3)
    assert (out.samples, out.tokens, out.answer, out.stopped_early) == (7, 12 + 1 + 2 + 3 + 3, 0, 0)
    assert out.reason == "weighted share 0.774 ≥ 0.75"
    full = deepconf_online(
        DEEPCONF_POOL, 8, warmup=3, window=2, consensus=0.75, charge_cancelled="full"
    )
    assert full.tokens == 12 + 1 + 2 + 3 + 4  # trace 3 charged to its cut
    # one trace at a time (the paper's Algorithm 2): trace 3 is cut (4 tokens), 4 does not
    # vote, 5 makes 0.667, 6 makes 0.774: seven traces, 12 + 4 + 1 + 3 + 2 tokens
    one = deepconf_online(DEEPCONF_POOL, 8, warmup=3, window=2, consensus=0.75, wave=1)
    assert (one.samples, one.tokens, one.stopped_early) == (7, 22, 1)
    out = deepconf_online(DEEPCONF_POOL, 6, warmup=3, window=2, consensus=0.75)
    assert (out.samples, out.tokens, out.answer, out.reason) == (6, 20, 0, "budget of 6 reached")
    # percentile 90 ("DeepConf-low"): threshold 3.5 + 0.8 · 0.5 = 3.9; only trace 0 votes,
    # alone: a share of 1 at once
    out = deepconf_online(DEEPCONF_POOL, 8, warmup=3, percentile=90, window=2)
    assert out.threshold == pytest.approx(3.9)
    assert (out.samples, out.tokens, out.answer) == (3, 12, 0)


def test_deepconf_online_refuses_what_it_cannot_replay() -> None:
    with pytest.raises(UsageError, match="cannot replay a budget"):
        deepconf_online(DEEPCONF_POOL, 9)
    with pytest.raises(UsageError, match="warmup"):
        deepconf_online(DEEPCONF_POOL, 2, warmup=3)
    with pytest.raises(UsageError, match="no token confidences"):
        deepconf_online([trace(0, 1), Trace(0, 5, np.zeros(0, np.float32))], 2, warmup=1)


# --- replay ----------------------------------------------------------------------------------

POOL = [Observation(a, t) for a, t in [(0, 10), (1, 20), (0, 30), (0, 40), (0, 50), (1, 60)]]


def test_replay_hand_made_pool() -> None:
    # slots 2: waves of 2; Agreement stops at 3 of 4 (0.75) as the second wave ends
    out = replay(Agreement(), POOL, 6, 2)
    assert (out.samples, out.tokens, out.answer) == (4, 100, 0)
    assert out.decision.reason == "3 of 4 answers agree (0.75 ≥ 0.75)"
    # waves of 3: the second wave is samples 3, 4, 5 (40, 50, 60 tokens); it stops as sample
    # 3 ends, when 4 and 5 have written 40 tokens each
    elapsed = replay(Agreement(), POOL, 6, 3)
    full = replay(Agreement(), POOL, 6, 3, charge_cancelled="full")
    none = replay(Agreement(), POOL, 6, 3, charge_cancelled="none")
    assert (elapsed.samples, elapsed.tokens) == (6, 100 + 40 + 40)
    assert (full.samples, full.tokens) == (6, 100 + 50 + 60)
    assert (none.samples, none.tokens) == (6, 100)
    # a wave ends in order of length: the short samples settle it first
    mixed = [Observation(a, t) for a, t in [(1, 90), (0, 10), (0, 20), (0, 30)]]
    out = replay(Agreement(), mixed, 4, 4)  # ends 10 (0), 20 (0): 2 of 2 agree
    assert (out.samples, out.tokens, out.answer) == (4, 10 + 20 + 20 + 20, 0)
    # slots 1: Beta needs four agreeing votes: 0, 0, 0, 0 at sample 4 of 0 1 0 0 0 (0.891 < 0.95
    # at (4, 1)), so it runs to the budget
    out = replay(BetaStop(), POOL, 6, 1)
    assert (out.samples, out.tokens, out.decision.reason) == (6, 210, "budget of 6 reached")
    out = replay(BetaStop(threshold=0.85), POOL, 6, 1)  # (4, 1): 0.891 ≥ 0.85
    assert (out.samples, out.tokens) == (5, 150)
    with pytest.raises(UsageError, match="cannot replay a budget of 7"):
        replay(BetaStop(), POOL, 7, 1)


def test_rolling_replay_hand_made_pool() -> None:
    # ESC, 2 in a row, 2 running. Rolling: samples 0 (10 tokens) and 1 (30) start at step 0;
    # 0 ends at 10 (answer 0), sample 2 (12) starts and ends at 22 (answer 0): two in a row,
    # stop; sample 1 has run 22 steps. In waves: 0 and 1 end (0, 1), then 2 and 3 (0, 0).
    pool = [Observation(a, t) for a, t in [(0, 10), (1, 30), (0, 12), (0, 5)]]
    rolling = replay(ESC(window=2), pool, 4, 2, rolling=True)
    assert (rolling.samples, rolling.tokens, rolling.answer) == (3, 10 + 12 + 22, 0)
    assert rolling.steps == 22
    full = replay(ESC(window=2), pool, 4, 2, "full", rolling=True)
    none = replay(ESC(window=2), pool, 4, 2, "none", rolling=True)
    assert (full.tokens, none.tokens) == (10 + 12 + 30, 10 + 12)
    waves = replay(ESC(window=2), pool, 4, 2)
    assert (waves.samples, waves.tokens, waves.answer) == (4, 57, 0)
    assert waves.steps == 30 + 12  # the first wave waits for its 30-token sample
    # with one running, rolling and waves are the same thing
    for rule in (ESC(window=2), Agreement(), BetaStop(threshold=0.85)):
        assert replay(rule, POOL, 6, 1, rolling=True) == replay(rule, POOL, 6, 1)


def test_next_wave_tops_up_what_is_running() -> None:
    rule = BetaStop(min_samples=4)
    assert rule.next_wave([], 16, 2) == 4  # the first wave: at least the rule's minimum
    assert rule.next_wave(obs(1), 16, 2, in_flight=3) == 0  # more running than the slots
    assert rule.next_wave(obs(1, 1), 16, 4, in_flight=1) == 3
    assert rule.next_wave(obs(*[1] * 14), 16, 4, in_flight=1) == 1  # what the budget leaves
    assert rule.next_wave([], 16, 2, in_flight=2) == 0  # a first wave already running


def test_expected_averages_over_seeded_orders() -> None:
    one = expected(Agreement(), POOL, 6, 2, orders=1, seed=0)
    assert (one.samples, one.tokens, one.answers) == (4.0, 100.0, (0,))
    many = expected(Agreement(), POOL, 6, 2, orders=20, seed=7)
    assert many == expected(Agreement(), POOL, 6, 2, orders=20, seed=7)
    assert len(many.answers) == 20 and many.answers[0] == 0
    assert 2 <= many.samples <= 6 and many.tokens <= sum(o.tokens for o in POOL)
    assert many.accuracy({0}) + many.accuracy({1}) == pytest.approx(1.0)
    assert expected(ESC(), obs(*[3] * 8), 8, 2, orders=5, seed=1).accuracy({3}) == 1.0


# --- invariants ------------------------------------------------------------------------------

observation = st.builds(
    Observation,
    answer=st.one_of(st.none(), st.integers(0, 2)),
    tokens=st.integers(0, 100),
    confidence=st.one_of(st.none(), st.floats(0.1, 10.0)),
)
pools = st.lists(observation, min_size=1, max_size=12)
rules = st.one_of(
    st.builds(ESC, window=st.integers(1, 5)),
    st.builds(BetaStop, threshold=st.floats(0.5, 0.99), min_samples=st.integers(1, 4)),
    st.builds(Agreement, share=st.floats(0.3, 1.0), min_samples=st.integers(1, 4)),
    st.builds(WeightedConsensus, threshold=st.floats(0.3, 1.0), min_samples=st.integers(1, 4)),
    st.builds(PriceStop, price=st.floats(1e-5, 1e-2), damping=st.floats(0.0, 2.0)),
    st.builds(CrossCheck, programs=st.tuples(st.one_of(st.none(), st.integers(0, 3)))),
    st.builds(
        BetaStop,
        threshold=st.floats(0.5, 0.99),
        give_up_after=st.one_of(st.none(), st.integers(2, 6)),
    ),
)


class NeverStop(StoppingRule):
    name: ClassVar[str] = "never"

    def check(
        self, observations: Sequence[Observation], votes: dict[int, float]
    ) -> tuple[bool, str]:
        return False, "never"


@settings(max_examples=60)
@given(rules, pools, st.data())
def test_replay_stays_within_budget_and_pool(
    rule: StoppingRule, pool: list[Observation], data: st.DataObject
) -> None:
    budget = data.draw(st.integers(1, len(pool)))
    slots = data.draw(st.integers(1, 8))
    rolling = data.draw(st.booleans())
    full = replay(rule, pool, budget, slots, charge_cancelled="full", rolling=rolling)
    elapsed = replay(rule, pool, budget, slots, rolling=rolling)
    none = replay(rule, pool, budget, slots, charge_cancelled="none", rolling=rolling)
    assert min(budget, rule.min_samples) <= full.samples <= budget
    assert (
        none.tokens <= elapsed.tokens <= full.tokens == sum(o.tokens for o in pool[: full.samples])
    )
    assert full.tokens <= sum(o.tokens for o in pool)
    assert full.decision.stop and full.answer == full.decision.leader
    # a problem's latency: never longer than its samples written one after another
    assert 0 <= elapsed.steps <= full.tokens
    # every wave, from any point, stays within what the budget leaves
    for done in range(budget + 1):
        wave = rule.next_wave(pool[:done], budget, slots)
        assert 0 <= wave <= budget - done and wave <= max(slots, rule.min_samples)
        assert wave > 0 or done == budget
        running = data.draw(st.integers(0, budget - done))
        more = rule.next_wave(pool[:done], budget, slots, in_flight=running)
        assert 0 <= more <= budget - done - running
        assert more == 0 or running + more <= max(slots, rule.min_samples)


@settings(max_examples=60)
@given(rules, pools, st.integers(1, 20))
def test_decide_is_a_pure_function(
    rule: StoppingRule, pool: list[Observation], budget: int
) -> None:
    before = list(pool)
    first = rule.decide(pool, budget)
    assert rule.decide(pool, budget) == first == rule.decide(tuple(pool), budget)
    assert pool == before


@settings(max_examples=60)
@given(pools, st.integers(1, 8))
def test_a_rule_that_never_stops_replays_plain_majority(
    pool: list[Observation], slots: int
) -> None:
    votes = Majority().select(pool).weights
    for rule in (NeverStop(), ESC(window=len(pool) + 1)):
        out = replay(rule, pool, len(pool), slots)
        assert out.samples == len(pool) and out.tokens == sum(o.tokens for o in pool)
        # a majority class (ties go to the class that finished first)
        assert out.answer is None if not votes else votes[out.answer] == max(votes.values())


@settings(max_examples=60)
@given(pools)
def test_selection_rules_reduce_to_majority_without_preference(pool: list[Observation]) -> None:
    flat = [Observation(o.answer, o.tokens, 1.0) for o in pool]
    majority = Majority().select(pool)
    for rule in (
        ConfidenceWeighted(),
        DeepConfFilter(keep=1.0),
        SelfCertaintyBorda(p=0),
    ):
        s = rule.select(flat)
        assert (s.answer, s.tie) == (majority.answer, majority.tie)
        assert s.weights.keys() == majority.weights.keys()
    for rule in (Majority(), ConfidenceWeighted(), DeepConfFilter(), SelfCertaintyBorda()):
        s = rule.select(pool)
        if s.answer is not None:
            assert s.weights[s.answer] == max(s.weights.values())


@settings(max_examples=40)
@given(
    st.lists(
        st.builds(
            lambda a, c: Trace(a, len(c) + 3, np.asarray(c, np.float32)),
            st.one_of(st.none(), st.integers(0, 2)),
            st.lists(st.integers(1, 9).map(float), min_size=1, max_size=12),
        ),
        min_size=1,
        max_size=10,
    ),
    st.data(),
)
def test_deepconf_online_stays_within_budget_and_pool(
    pool: list[Trace], data: st.DataObject
) -> None:
    budget = data.draw(st.integers(1, len(pool)))
    warmup = data.draw(st.integers(1, budget))
    window, wave = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 4))
    out = deepconf_online(pool, budget, warmup=warmup, window=window, wave=wave)
    assert warmup <= out.samples <= budget
    assert out.tokens <= sum(t.tokens for t in pool[: out.samples])
    assert out.stopped_early <= out.samples - warmup


def test_self_certainty_borda_at_a_huge_exponent_picks_the_most_confident() -> None:
    """(N − r + 1)^p overflowed a float at p = 1000 (after the samples were paid for)."""
    pool = conf((0, 0.2), (1, 0.9), (0, 0.5))
    for p in (1000.0, 1e6):
        s = SelfCertaintyBorda(p=p).select(pool)
        assert s.answer == 1 and all(math.isfinite(w) for w in s.weights.values())
