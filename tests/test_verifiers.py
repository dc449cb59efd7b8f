"""Verifiers and the strategies that use them, on scripted backends (deterministic)."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fake_server import FakeOpenAIServer
from helpers import count_renders, no_sleep, scripted_context, scripted_engine
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.aggregate import aggregate, clip, deltas, rank_calibrated
from ponder.runtime.budget import Budget
from ponder.runtime.context import Context
from ponder.runtime.scheduler import Scheduler
from ponder.runtime.verifiers import VerifierEnv, Verifiers, VerifierSpec
from ponder.types import Candidate, GenRequest, Problem
from ponder.verify.judge import STEP_CUE, SelfJudge
from ponder.verify.prm_http import PRMHttp
from ponder.verify.quality import auroc, selection_quality

PROBLEM = Problem(question="What is 6 * 7?", kind="number", gold="42")


def judged_by_answer(scores: dict[str, float]) -> Any:
    """A policy that answers with a script and, asked "Is ... correct?", gives P(Yes) by the
    answer in the conversation it is judging."""

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        if req.role == "verifier":
            return "Yes"
        return ANSWERS[((req.seed or 0) + i) % len(ANSWERS)]  # fanned out or native n alike

    def logprobs(req: GenRequest, i: int, rng: random.Random) -> dict[str, float]:
        assert req.messages is not None
        judged = req.messages[-2].content
        p = next((v for k, v in scores.items() if f"\\boxed{{{k}}}" in judged), 0.5)
        return {"Yes": math.log(p), "No": math.log(1 - p)}

    return reply, logprobs


ANSWERS = ["so \\boxed{40}", "so \\boxed{42}", "so \\boxed{40}", "so \\boxed{40}"]


def engine_with(scores: dict[str, float], **kw: Any) -> tuple[Any, ScriptedLM]:
    reply, lps = judged_by_answer(scores)
    return scripted_engine(reply, logprobs=lps, **kw)


async def test_best_of_n_picks_the_top_scored_candidate_and_charges_the_judge() -> None:
    engine, lm = engine_with({"40": 0.2, "42": 0.9})
    r = await engine.solve(PROBLEM, "best_of_n", n=4, seed=1)
    assert r.answer == "42"
    assert sorted(c.answer or "" for c in r.candidates) == ["40", "40", "40", "42"]
    assert {c.answer: round(c.score or 0, 6) for c in r.candidates} == {"40": 0.2, "42": 0.9}
    judge_calls = [c for c in lm.calls if c.role == "verifier"]
    assert len(judge_calls) == 4 and all(c.max_tokens == 1 and c.top_logprobs for c in judge_calls)
    assert r.usage["verifier"].calls == 4
    assert r.usage["verifier"].prompt_tokens == sum(
        len(c.input_text().split()) and _count(c) for c in judge_calls
    )
    assert r.total.total_tokens == sum(u.total_tokens for u in r.usage.values())


def _count(req: GenRequest) -> int:
    from ponder.lm.scripted import count_tokens

    return count_tokens(req.input_text())


async def test_weighted_vote_outweighs_a_confident_minority_only_when_scores_say_so() -> None:
    engine, _ = engine_with({"40": 0.2, "42": 0.9})  # 3 × 0.2 = 0.6 < 0.9
    r = await engine.solve(PROBLEM, "weighted_vote", n=4, seed=1)
    assert r.answer == "42" and r.info["weights"] == pytest.approx({"40": 0.6, "42": 0.9})
    engine, _ = engine_with({"40": 0.4, "42": 0.9})  # 3 × 0.4 = 1.2 > 0.9
    r = await engine.solve(PROBLEM, "weighted_vote", n=4, seed=1)
    assert r.answer == "40"
    plain, _ = engine_with({"40": 0.2, "42": 0.9})
    assert (await plain.solve(PROBLEM, "vote", n=4, seed=1)).answer == "40"


async def test_equivalent_spellings_pool_their_weight() -> None:
    answers = ["\\boxed{0.5}", "\\boxed{\\frac{1}{2}}", "\\boxed{2}"]

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        return "Yes" if req.role == "verifier" else answers[((req.seed or 0) + i) % 3]

    def lps(req: GenRequest, i: int, rng: random.Random) -> dict[str, float]:
        p = 0.8 if "boxed{2}" in (req.messages or [])[-2].content else 0.5
        return {"Yes": math.log(p), "No": math.log(1 - p)}

    engine, _ = scripted_engine(reply, logprobs=lps)
    r = await engine.solve(Problem(question="half?", kind="math"), "weighted_vote", n=3, seed=0)
    assert r.answer == "0.5" and r.info["weights"] == pytest.approx({"0.5": 1.0, "2": 0.8})


async def test_a_judge_without_yes_or_no_leaves_the_candidate_unscored_with_a_reason() -> None:
    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        return "Maybe" if req.role == "verifier" else f"\\boxed{{{40 + (req.seed or 0) % 3}}}"

    engine, _ = scripted_engine(reply, logprobs=lambda r, i, g: {"Maybe": -0.1, "Perhaps": -2.0})
    r = await engine.solve(PROBLEM, "best_of_n", n=3, seed=0)
    assert all(c.score is None for c in r.candidates)
    assert all("neither Yes nor No" in (c.note or "") for c in r.candidates)
    assert r.answer == r.candidates[0].answer  # nothing scored: the first with an answer


async def test_backends_without_logprobs_are_judged_from_the_text() -> None:
    from ponder.lm.protocol import Capabilities

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        if req.role == "verifier":
            return "Yes." if "42" in (req.messages or [])[-2].content else "No"
        return ANSWERS[((req.seed or 0) + i) % 4]

    lm = ScriptedLM(reply, capabilities=Capabilities(logprobs=False, slots=4))
    from ponder.runtime.engine import Engine

    engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
    r = await engine.solve(PROBLEM, "best_of_n", n=4, seed=0)
    assert r.answer == "42"
    assert sorted(c.score or 0.0 for c in r.candidates) == [0.0, 0.0, 0.0, 1.0]


async def test_the_budget_stops_judging_but_keeps_every_candidate() -> None:
    engine, _ = engine_with({"40": 0.2, "42": 0.9})
    # room for the 4 samples' worst case, not for their judges too
    r = await engine.solve(PROBLEM, "best_of_n", n=4, seed=1, budget={"calls": 5})
    assert len(r.candidates) == 4
    assert sum(c.score is not None for c in r.candidates) == 1
    assert sum("not scored" in (c.note or "") for c in r.candidates) == 3
    assert r.total.calls <= 5


async def test_self_judge_continues_the_generating_conversation_on_its_own_slot() -> None:
    engine, lm = engine_with({"42": 0.9})
    await engine.solve(PROBLEM, "best_of_n", n=4, seed=3)
    samples = [c for c in lm.calls if c.role == "policy"]
    judges = [c for c in lm.calls if c.role == "verifier"]
    # samples go out one by one (each backend slot keeps its own candidate cached) ...
    assert [s.n for s in samples] == [1, 1, 1, 1] and len({s.seed for s in samples}) == 4
    # ... and each judge call starts with that very conversation
    for j in judges:
        assert j.messages is not None and j.messages[:2] == samples[0].messages


# -- process verifiers ----------------------------------------------------------------------------
def judged_step(req: GenRequest) -> str:
    """The step a process judge is asked about: in a raw transcript, the line before the cue;
    in a chat question, the last paragraph of the partial solution."""
    if req.prompt is not None:
        return req.prompt.removesuffix(STEP_CUE).split("\n\n")[-1]
    return (req.messages or [])[-2].content.split("\n\n")[-1]


def context(lm: ScriptedLM, budget: Budget | None = None) -> Context:
    return scripted_context(lm, budget, seed=0)


@pytest.mark.parametrize("raw", [True, False], ids=["transcript", "chat"])
async def test_process_scores_are_incremental_and_never_repeat_a_step(raw: bool) -> None:
    def lps(req: GenRequest, i: int, rng: random.Random) -> dict[str, float]:
        p = 0.9 if "good" in judged_step(req) else 0.1
        return {"Yes": math.log(p), "No": math.log(1 - p)}

    lm = ScriptedLM(["Yes"], logprobs=lps, capabilities=Capabilities(raw_prefix=raw))
    ctx = context(lm)
    judge = SelfJudge()
    v = await judge.score_steps(PROBLEM, ["good a", "bad b"], ctx)
    assert [round(x.score or 0, 6) for x in v] == [0.9, 0.1] and len(lm.calls) == 2
    v = await judge.score_steps(PROBLEM, ["good a", "bad b", "good c"], ctx)
    assert [round(x.score or 0, 6) for x in v] == [0.9, 0.1, 0.9] and len(lm.calls) == 3
    await judge.score_steps(PROBLEM, ["good a"], ctx)
    assert len(lm.calls) == 3
    assert ctx.ledger.by_role()["verifier"].calls == 3
    if raw:  # every prompt is the path's own prefix and the cue: the path's slot has it cached
        prompts = sorted((c.prompt or "").removesuffix(STEP_CUE) for c in lm.calls)
        assert all(b.startswith(a) for a, b in itertools.pairwise(prompts))
        head = await lm.render(ctx.prompting.messages(PROBLEM))
        assert prompts[-1] == head + "good a\n\nbad b\n\ngood c"
        assert all((c.prompt or "").endswith(STEP_CUE) for c in lm.calls)


async def test_the_self_judge_renders_each_conversation_once_and_keeps_problems_apart() -> None:
    def lps(req: GenRequest, i: int, rng: random.Random) -> dict[str, float]:
        return {"Yes": math.log(0.7), "No": math.log(0.3)}

    lm = ScriptedLM(["Yes"], logprobs=lps, capabilities=Capabilities(raw_prefix=True))
    rendered, render = count_renders(lm)
    ctx, judge = context(lm), SelfJudge()
    other = Problem(question="What is 2 + 2?", kind="number")
    for steps in (["a"], ["a", "b"], ["a", "b", "c"]):
        await judge.score_last_step(PROBLEM, steps, ctx)
        await judge.score_last_step(other, steps, ctx)
    assert rendered == [PROBLEM.question, other.question]  # once per conversation
    heads = {q.question: await render(ctx.prompting.messages(q)) for q in (PROBLEM, other)}
    for call in lm.calls:  # each judgement continues its own problem's conversation
        assert call.prompt is not None
        assert sum(call.prompt.startswith(head) for head in heads.values()) == 1
    assert [c.prompt.startswith(heads[other.question]) for c in lm.calls] == [False, True] * 3


async def test_step_scores_aggregate_into_an_outcome_score() -> None:
    def lps(req: GenRequest, i: int, rng: random.Random) -> dict[str, float]:
        p = 0.8 if "good" in judged_step(req) else 0.4
        return {"Yes": math.log(p), "No": math.log(1 - p)}

    lm = ScriptedLM(["Yes"], logprobs=lps)
    ctx = context(lm)
    cand = Candidate(text="good a\n\nbad b\n\ngood c")
    for how, want in (("min", 0.4), ("last", 0.8), ("prod", 0.8 * 0.4 * 0.8), ("mean", 2 / 3)):
        spec = VerifierSpec(name="self_judge", steps=True, aggregate=how)
        (v,) = await ctx.verifiers.score(PROBLEM, [cand], spec, ctx)  # type: ignore[union-attr]
        assert v.score == pytest.approx(want)
    assert len(lm.calls) == 3  # four aggregates, each step judged once


# -- PRM over HTTP --------------------------------------------------------------------------------
class FakePRM(FakeOpenAIServer):
    """Scores each step (text ending in the step tag): 0.9 if it says "good", else 0.2."""

    def completion(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        steps = body["input"].split("\n", 1)[1].split("<extra_0>")[:-1]
        pairs = [[0.1, 0.9] if "good" in s else [0.8, 0.2] for s in steps]
        if self.behaviour(-1, path, body) == "count":
            pairs = pairs[:-1]
        out: dict[str, Any] = {"data": [{"index": 0, "data": pairs}]}
        if self.behaviour(-1, path, body) != "nousage":
            out["usage"] = {"prompt_tokens": len(body["input"].split())}
        return out


async def test_prm_http_scores_steps_caches_prefixes_and_charges_tokens() -> None:
    async with FakePRM() as server:
        ctx = context(ScriptedLM(["x"]))
        prm = PRMHttp(server.url, "qwen-prm")
        v = await prm.score_steps(PROBLEM, ["good a", "bad b"], ctx)
        assert [x.score for x in v] == [0.9, 0.2]
        v = await prm.score_steps(PROBLEM, ["good a"], ctx)  # cached: no request
        assert [x.score for x in v] == [0.9] and len(server.requests) == 1
        await prm.score_steps(PROBLEM, ["good a", "bad b", "good c"], ctx)
        assert len(server.requests) == 2
        path, body = server.requests[0]
        assert path == "/pooling" and body["model"] == "qwen-prm"
        assert body["input"] == "What is 6 * 7?\ngood a<extra_0>bad b<extra_0>"
        spent = ctx.ledger.by_role()["verifier"]
        assert spent.calls == 2 and spent.prompt_tokens == sum(
            len(b["input"].split()) for _, b in server.requests
        )
        await prm.aclose()


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("garbage", "failed: JSONDecodeError"),
        ("500", "answered 500"),
        ("count", "returned 1 scores for 2 steps"),
        ("reset", "failed"),
    ],
)
async def test_a_misbehaving_prm_gives_reasons_not_exceptions(action: str, reason: str) -> None:
    async with FakePRM(lambda i, p, b: action) as server:
        ctx = context(ScriptedLM(["x"]))
        prm = PRMHttp(server.url)
        v = await prm.score_steps(PROBLEM, ["good a", "bad b"], ctx)
        assert all(x.score is None and reason in (x.reason or "") for x in v), v
        assert len(ctx.ledger.verifier_failures) == 1  # a failure, not a verdict
        await prm.aclose()


async def test_a_failed_verifier_keeps_the_answer_and_makes_the_result_an_error() -> None:
    # unscored for the verifier's own reason is a result; unscored because the verifier could
    # not answer is not whole (a bench must not store it as best_of_n's verdict)
    async with FakePRM(lambda i, p, b: "500") as server:
        engine, _ = scripted_engine(["good a\n\n\\boxed{40}", "good b\n\n\\boxed{42}"])
        spec = {"name": "prm_http", "options": {"url": server.url}}
        r = await engine.solve(PROBLEM, "best_of_n", n=2, seed=0, verifier=spec)
        assert r.answer == "40" and len(r.candidates) == 2
        assert r.error is not None and r.error.startswith("the verifier failed 2 times (first: ")
        assert "answered 500" in r.error
        await engine.aclose()
    engine, _ = scripted_engine(["\\boxed{42}"])
    r = await engine.solve(PROBLEM, "best_of_n", n=2, seed=0)  # the judge says neither Yes nor No
    assert r.error is None and all(c.score is None for c in r.candidates)


async def test_a_prm_without_usage_is_scored_and_says_its_tokens_are_uncounted() -> None:
    async with FakePRM(lambda i, p, b: "nousage") as server:
        ctx = context(ScriptedLM(["x"]))
        prm = PRMHttp(server.url)
        v = await prm.score_steps(PROBLEM, ["good a"], ctx)
        assert v[0].score == 0.9 and "not counted" in (v[0].reason or "")
        await prm.aclose()


async def test_best_of_n_with_a_prm_by_name_aggregates_its_step_scores() -> None:
    async with FakePRM() as server:
        replies = ["good a\n\nbad b\n\n\\boxed{40}", "good a\n\ngood b\n\ngood: \\boxed{42}"]
        engine, _ = scripted_engine(replies)
        spec = {"name": "prm_http", "options": {"url": server.url}, "aggregate": "min"}
        r = await engine.solve(PROBLEM, "best_of_n", n=2, seed=0, verifier=spec)
        assert r.answer == "42" and [c.score for c in r.candidates] == [0.2, 0.9]
        assert r.usage["verifier"].calls == 2
        await engine.aclose()


async def test_llm_judge_uses_another_model_and_bills_it_as_verifier() -> None:
    judge = ScriptedLM(
        lambda req, i, rng: "Yes" if "42" in req.input_text() else "No",
        name="judge-model",
        logprobs=lambda req, i, rng: (
            {"Yes": -0.1, "No": -2.4} if "42" in req.input_text() else {"Yes": -2.4, "No": -0.1}
        ),
    )
    engine, policy = scripted_engine(ANSWERS)
    engine.verifiers = Verifiers(VerifierEnv(open_model=lambda config: judge))
    r = await engine.solve(PROBLEM, "best_of_n", n=4, seed=0, verifier="llm_judge")
    assert r.answer == "42"
    assert len(judge.calls) == 4 and all(c.role == "verifier" for c in judge.calls)
    assert all(c.role == "policy" for c in policy.calls)
    assert {ch.model for ch in r.ledger if ch.role == "verifier"} == {"judge-model"}


async def test_unknown_verifier_is_a_usage_error_naming_the_choices() -> None:
    from ponder.errors import UsageError

    engine, _ = scripted_engine(ANSWERS)
    with pytest.raises(UsageError, match=r"verifier: unknown verifier 'oracle'"):
        await engine.solve(PROBLEM, "best_of_n", n=2, verifier="oracle")
    with pytest.raises(UsageError, match="'crosscheck' scores whole candidates, not steps"):
        await engine.solve(PROBLEM, "best_of_n", verifier={"name": "crosscheck", "steps": True})
    with pytest.raises(UsageError, match="unknown aggregate 'max'"):
        await engine.solve(PROBLEM, "best_of_n", verifier={"name": "prm_http", "aggregate": "max"})
    # taken as written, as strategy options are: no "yes" for true, no 1 for a name
    bad = [
        ({"steps": "yes"}, "verifier.steps: Input should be a valid boolean"),
        ({"name": 1}, "verifier.name: Input should be a valid string"),
        ({"clip": [0, "Infinity"]}, "verifier.clip.1: Input should be a finite number"),
        ({"clip": [0.8, 0.2]}, "clip \\[0.8, 0.2\\]: its low end is above its high"),
        # a lone surrogate failed only when the spec was keyed, after the samples were paid
        ({"options": {"question": "\ud800 ok?"}}, "not text .*surrogates not allowed"),
    ]
    for spec, said in bad:
        with pytest.raises(UsageError, match=said):
            await engine.solve(PROBLEM, "best_of_n", verifier={"name": "self_judge", **spec})


# -- aggregation, calibration, quality ---------------------------------------------------------
def test_aggregates_clip_and_deltas() -> None:
    xs = [0.9, None, 0.5, 0.7]
    assert aggregate(xs, "min") == 0.5 and aggregate(xs, "last") == 0.7
    assert aggregate(xs, "prod") == pytest.approx(0.315) and aggregate(xs, "mean") == pytest.approx(
        0.7
    )
    assert aggregate([None], "min") is None
    assert clip(xs, 0.6, 0.8) == [0.8, None, 0.6, 0.7]
    assert deltas(xs) == pytest.approx([0.9, None, -0.4, 0.2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown aggregate 'max'"):
        aggregate(xs, "max")


@given(st.lists(st.one_of(st.none(), st.floats(-5, 5)), max_size=30))
def test_rank_calibration_keeps_order_and_lands_in_0_1(xs: list[float | None]) -> None:
    ranks = rank_calibrated(xs)
    pairs = [(x, r) for x, r in zip(xs, ranks, strict=True) if x is not None]
    assert all(r is not None and 0 < r <= 1 for _, r in pairs)
    for x1, r1 in pairs:
        for x2, r2 in pairs:
            assert (x1 < x2) == (r1 < r2)  # type: ignore[operator]


@given(st.lists(st.tuples(st.integers(0, 5).map(float), st.booleans()), min_size=1, max_size=25))
def test_auroc_equals_the_brute_force_pair_count(pool: list[tuple[float, bool]]) -> None:
    scores = [s for s, _ in pool]
    correct = [c for _, c in pool]
    pos = [s for s, c in pool if c]
    neg = [s for s, c in pool if not c]
    got = auroc(scores, correct)
    if not pos or not neg:
        assert got is None
        return
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    assert got == pytest.approx(wins / (len(pos) * len(neg)))


def test_selection_quality_counts_false_positives_at_the_selection_point() -> None:
    pools = [
        [(0.9, True), (0.5, False)],  # right pick
        [(0.8, False), (0.7, True), (0.8, False)],  # wrong pick; 2 wrong at/above top
        [(None, True), (0.1, False)],  # the right one is unscored
    ]
    q = selection_quality(pools)
    assert q.selected_correct == 1 and q.coverage == 2 and q.missed == 1
    assert q.false_positive_rate == pytest.approx(3 / 4)  # 0.8, 0.8, 0.1 over 4 wrong
    assert q.auroc == pytest.approx(auroc([0.9, 0.5, 0.8, 0.7, 0.8, 0.1], [1, 0, 0, 1, 0, 0]))


async def test_spec_transforms_clip_deltas_and_rank_calibration() -> None:
    async with FakePRM() as server:
        replies = ["good a\n\nbad b", "good a\n\ngood b", "bad a\n\nbad b"]
        engine, _ = scripted_engine(replies)
        url = {"url": server.url}
        # steps score 0.9 (good) / 0.2 (bad); clipped to [0.3, 0.8]; summed as deltas = last
        spec = {
            "name": "prm_http",
            "options": url,
            "clip": [0.3, 0.8],
            "deltas": True,
            "aggregate": "mean",
        }
        r = await engine.solve(PROBLEM, "best_of_n", n=3, seed=0, verifier=spec)
        # deltas: [0.8, 0.3-0.8], [0.8, 0.0], [0.3, 0.0] → means 0.15, 0.4, 0.15
        assert [c.score for c in r.candidates] == pytest.approx([0.15, 0.4, 0.15])
        spec = {"name": "prm_http", "options": url, "rank_calibrated": True}
        r = await engine.solve(PROBLEM, "best_of_n", n=3, seed=0, verifier=spec)
        # min scores 0.2, 0.9, 0.2 → ranks (1.5, 3, 1.5) / 3
        assert [c.score for c in r.candidates] == pytest.approx([0.5, 1.0, 0.5])
        await engine.aclose()


def test_the_step_cache_keeps_only_scores_and_stays_bounded() -> None:
    from ponder.runtime.verifiers import Verdict
    from ponder.verify.cache import StepCache

    cache = StepCache(capacity=2)
    cache.put("q", ["a"], Verdict(reason="budget"))
    assert cache.get("q", ["a"]) is None  # a failure is asked again next time
    cache.put("q", ["a"], Verdict(score=0.5))
    cache.put("q", ["a", "b"], Verdict(score=0.6))
    assert cache.get("q", ["a"]) == Verdict(score=0.5)  # now the most recent
    cache.put("q", ["c"], Verdict(score=0.7))
    assert cache.get("q", ["a", "b"]) is None and cache.get("q", ["a"]) is not None


async def test_a_failed_sample_is_kept_as_a_reason_and_the_others_are_judged() -> None:
    from ponder.errors import BackendError as Refused

    reply, lps = judged_by_answer({"40": 0.2, "42": 0.9})

    policy_calls: list[int] = []

    def fail(call: int, req: GenRequest) -> Exception | None:
        if req.role != "policy":
            return None
        policy_calls.append(call)
        return Refused("HTTP 400: bad seed") if len(policy_calls) == 2 else None

    engine, _ = scripted_engine(reply, logprobs=lps, fail=fail)
    r = await engine.solve(PROBLEM, "best_of_n", n=4, seed=1)
    failed = [c for c in r.candidates if c.note and c.note.startswith("sample failed")]
    assert r.error is None and len(r.candidates) == 4 and len(failed) == 1
    assert "bad seed" in (failed[0].note or "") and failed[0].score is None
    assert sum(c.score is not None for c in r.candidates) == 3
