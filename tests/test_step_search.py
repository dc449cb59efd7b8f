from __future__ import annotations

import asyncio
import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import no_sleep, run_ponder
from ponder.errors import UsageError
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.budget import Budget
from ponder.runtime.engine import Engine
from ponder.runtime.prompting import Prompting
from ponder.runtime.scheduler import Scheduler
from ponder.runtime.strategy import make_strategy
from ponder.types import Generation, GenRequest, Problem

PROBLEM = Problem(question="What is 3 + 4 + 5 + 6?", kind="number")
RIGHT = ["3 + 4 = 7.", "7 + 5 = 12.", "12 + 6 = 18.", "So the answer is \\boxed{18}."]
WRONG = ["3 + 4 = 8.", "8 + 5 = 14.", "14 + 6 = 21.", "So the answer is \\boxed{21}."]


def written(req: GenRequest) -> list[str]:
    assert req.prompt is not None
    body = req.prompt.split("<assistant>", 1)[1]
    return [s for s in body.split("\n\n") if s.strip()]


def policy(p_right: float):  # type: ignore[no-untyped-def]
    """Step k is right with probability p_right at T > 0 (always right at T = 0), unless the
    path already went wrong; a wrong path stays wrong."""

    def reply(req: GenRequest, index: int, rng: random.Random) -> str:
        if req.role == "verifier":
            return "Yes"
        done = written(req)
        k = len(done)
        if k >= len(RIGHT):
            return ""
        on_track = all(s in RIGHT for s in done)
        right = on_track and (req.temperature == 0 or rng.random() < p_right)
        return (RIGHT if right else WRONG)[k] + "\n\n"

    return reply


def perfect_judge(req: GenRequest, index: int, rng: random.Random) -> dict[str, float]:
    # the step being judged is the last one before the cue
    assert req.prompt is not None
    body = req.prompt.split("<assistant>", 1)[1]
    last = [s for s in body.split("\n\n") if s.strip()][-1]
    p = 0.95 if any(last.startswith(r) for r in RIGHT) else 0.05
    return {"Yes": math.log(p), "No": math.log(1 - p)}


def engine(p_right: float = 0.3) -> tuple[Engine, ScriptedLM]:
    caps = Capabilities(slots=8, n_with_stop=True, raw_prefix=True)
    lm = ScriptedLM(policy(p_right), capabilities=caps, logprobs=perfect_judge)
    return Engine(lm, scheduler=Scheduler(sleep=no_sleep)), lm


async def test_width_one_one_expansion_at_t0_is_greedy_step_by_step() -> None:
    eng, _ = engine()
    beam = await eng.solve(PROBLEM, "beam", n=1, m=1, temperature=0.0, seed=0)
    greedy_text = "\n\n".join(RIGHT)
    assert beam.candidates[0].text == greedy_text and beam.answer == "18"


async def test_a_perfect_verifier_finds_the_planted_path() -> None:
    eng, _ = engine(p_right=0.6)
    result = await eng.solve(PROBLEM, "beam", n=2, m=4, seed=3)
    assert result.answer == "18"
    tree = result.info["tree"]
    chosen = [n for n in tree if n["selected"] and n["terminal"]]
    assert len(chosen) == 1 and chosen[0]["answer"] == "18"
    # the wrong branches were generated and scored low, then dropped
    assert any(n["step"] in WRONG and n["score"] < 0.1 for n in tree)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 3), st.integers(1, 3), st.integers(200, 3000))
async def test_never_exceeds_its_token_budget_and_is_repeatable(
    seed: int, n: int, m: int, tokens: int
) -> None:
    eng, _ = engine(p_right=0.5)
    budget = Budget(tokens=tokens)
    first = await eng.solve(PROBLEM, "beam", n=n, m=m, seed=seed, budget=budget)
    assert first.total.total_tokens <= tokens
    again = await engine(p_right=0.5)[0].solve(PROBLEM, "beam", n=n, m=m, seed=seed, budget=budget)
    assert again.info["tree"] == first.info["tree"] and again.answer == first.answer


async def test_beam_is_a_registered_direct_strategy_with_plain_config() -> None:
    from ponder.bench.harness import plan

    beam = make_strategy("beam", n=8, m=2, verifier="self_judge")
    assert beam.model_dump(mode="json")["verifier"]["steps"] is True
    (p,) = plan([beam])
    assert p.kind == "direct" and p.unit["name"] == "beam"


async def test_particles_find_the_planted_path_with_a_perfect_verifier() -> None:
    eng, _ = engine(p_right=0.3)
    result = await eng.solve(PROBLEM, "particles", n=8, seed=5, weight_temperature=0.1)
    assert result.answer == "18"
    assert result.info["resamples"] >= 1  # the weights concentrated, so it resampled
    assert max(result.info["weights"], key=result.info["weights"].get) == "18"


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**16))
async def test_particles_with_threshold_zero_never_resample(seed: int) -> None:
    eng, _ = engine(p_right=0.5)
    result = await eng.solve(PROBLEM, "particles", n=4, seed=seed, ess_threshold=0.0)
    assert result.info["resamples"] == 0
    # without resampling each particle is its own lineage: below the root no node is ever
    # extended for two particles
    tree = result.info["tree"]
    assert len([n for n in tree if n["parent"] == 0]) == 4
    assert all(len(n["children"]) <= 1 for n in tree if n["parent"] is not None)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 6), st.integers(200, 3000))
async def test_particles_never_exceed_the_budget_and_are_repeatable(
    seed: int, n: int, tokens: int
) -> None:
    budget = Budget(tokens=tokens)
    first = await engine(0.5)[0].solve(PROBLEM, "particles", n=n, seed=seed, budget=budget)
    assert first.total.total_tokens <= tokens
    again = await engine(0.5)[0].solve(PROBLEM, "particles", n=n, seed=seed, budget=budget)
    assert again.info["tree"] == first.info["tree"] and again.answer == first.answer


async def test_trace_file_and_preference_pairs(tmp_path: Path) -> None:
    from ponder.cli.solve import write_trace

    eng, _ = engine(p_right=0.6)
    result = await eng.solve(PROBLEM, "beam", n=2, m=4, seed=3)
    trace = tmp_path / "t.jsonl"
    write_trace(trace, result, gold="18")
    write_trace(trace, result, gold=None)  # appends a second search
    assert len(trace.read_text().splitlines()) == 2
    r = run_ponder("trace", "pairs", str(trace), "--kind", "number")
    assert r.returncode == 0, r.stderr
    pairs = [json.loads(x) for x in r.stdout.splitlines()]
    with_gold = [p for p in pairs if p["trace_line"] == 1]
    assert with_gold and all(p["chosen_correct"] is not False for p in with_gold)
    outcome = [p for p in with_gold if p["basis"] == "outcome"]
    assert outcome and all(p["chosen"] in RIGHT and p["rejected"] in WRONG for p in outcome)
    assert all(p["basis"] == "score" for p in pairs if p["trace_line"] == 2)
    for p in pairs:  # what preference-training code reads
        assert {"prompt", "prefix", "chosen", "rejected"} <= p.keys()
        assert p["prompt"] == PROBLEM.question
    # the trace is never written over by its own pairs
    before = trace.read_text()
    r = run_ponder("trace", "pairs", str(trace), "--out", str(trace))
    assert r.returncode == 2 and "that is the input" in r.stderr and trace.read_text() == before
    r = run_ponder("trace", "pairs", str(trace), "--out", str(tmp_path))
    assert r.returncode == 2 and "a folder; give a file to write" in r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    r = run_ponder("trace", "pairs", str(bad))
    assert r.returncode == 1 and "bad.jsonl:1: not a search trace" in r.stderr


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("step_bon", {"n": 4}),
        ("dvts", {"n": 8, "m": 4}),
        ("beam", {"n": 2, "m": 4}),
        ("mcts", {"iterations": 12, "k": 3}),
        ("lookahead", {"n": 2, "m": 3, "k": 2}),
        ("particle_gibbs", {"n": 4, "iterations": 2, "weight_temperature": 0.1}),
    ],
)
async def test_each_step_search_finds_the_planted_path(name: str, options: dict) -> None:  # type: ignore[type-arg]
    # the policy writes the right next step with probability 0.6; the verifier knows which
    eng, _ = engine(p_right=0.6)
    result = await eng.solve(PROBLEM, name, seed=11, **options)
    assert result.answer == "18", result.candidates
    tree = result.info["tree"]
    winner = [n for n in tree if n["terminal"] and n["selected"] and n["answer"] == "18"]
    assert winner


async def test_dvts_searches_n_over_m_independent_subtrees() -> None:
    eng, lm = engine(p_right=0.5)
    result = await eng.solve(PROBLEM, "dvts", n=8, m=2, seed=2)
    first_level = [n for n in result.info["tree"] if n["parent"] == 0]
    assert len(first_level) == 8  # 4 subtrees × 2 samples at the first step
    # each child is its own request, judged as soon as it is written (the judge then finds it
    # in the writer's cache); without splitting, one request writes a node's m children
    # (when one stop string ends a step: with two, llama.cpp could not count each choice)
    assert all(c.n == 1 for c in lm.calls if c.role == "policy")
    eng, lm = engine(p_right=0.5)
    await eng.solve(
        PROBLEM, "dvts", n=8, m=2, seed=2, split_children=False, prompting=Prompting(stop=[])
    )
    assert all(c.n == 2 for c in lm.calls if c.role == "policy")
    with pytest.raises(UsageError, match="multiple of m"):
        make_strategy("dvts", n=6, m=4)


@settings(max_examples=15, deadline=None)
@given(
    st.sampled_from(
        ["step_bon", "dvts", "particles", "particle_gibbs", "beam", "mcts", "lookahead"]
    ),
    st.integers(0, 999),
    st.integers(100, 2000),
)
async def test_no_step_search_exceeds_its_budget(name: str, seed: int, tokens: int) -> None:
    budget = Budget(tokens=tokens)
    result = await engine(0.5)[0].solve(PROBLEM, name, seed=seed, budget=budget)
    assert result.total.total_tokens <= tokens
    again = await engine(0.5)[0].solve(PROBLEM, name, seed=seed, budget=budget)
    assert again.info["tree"] == result.info["tree"]


async def test_mcts_visits_add_up_and_the_answer_follows_the_visits() -> None:
    eng, _ = engine(p_right=0.6)
    result = await eng.solve(PROBLEM, "mcts", iterations=10, k=2, seed=4)
    tree = result.info["tree"]
    assert tree[0]["visits"] == 10  # every iteration backs up through the root
    for node in tree:
        kids = [tree[i] for i in node["children"]]
        if kids and not node["terminal"]:
            # a node's visits: its own first evaluation (if it was evaluated) plus its children's
            assert node["visits"] - sum(k["visits"] for k in kids) in (0, 1)
    walk = [n for n in tree if n["selected"]]
    assert walk and all(n["visits"] > 0 for n in walk)


async def test_lookahead_rollouts_are_traced_and_never_kept_as_beams() -> None:
    eng, lm = engine(p_right=0.6)
    result = await eng.solve(PROBLEM, "lookahead", n=2, m=2, k=2, seed=1)
    rollouts = [n for n in result.info["tree"] if n["note"] == "lookahead rollout"]
    assert rollouts and not any(n["selected"] for n in rollouts)
    assert any(c.temperature == 0.0 and c.role == "policy" for c in lm.calls)  # greedy rollouts
    # the rollouts' tokens are billed like any others
    assert result.usage["policy"].completion_tokens == sum(n["tokens"] for n in result.info["tree"])


async def test_mcts_valued_by_rollouts_answers_from_a_rollout_and_bills_it() -> None:
    eng, lm = engine(p_right=0.6)
    result = await eng.solve(PROBLEM, "mcts", iterations=6, k=2, value="rollout", seed=2)
    tree = result.info["tree"]
    rollouts = [n for n in tree if n["rollout"]]
    assert rollouts and all(n["terminal"] and n["visits"] == 1 for n in rollouts)
    # rollouts are valued but never selected into: no step node hangs below one
    assert all(not n["children"] for n in rollouts)
    # a rollout request writes to the end: no step boundary among its stops
    finishing = [c for c in lm.calls if c.role == "policy" and "\n\n" not in (c.stop or [])]
    assert len(finishing) >= len(rollouts)
    assert result.usage["policy"].completion_tokens == sum(n["tokens"] for n in tree)
    assert result.answer is not None


async def test_mcts_completes_a_walk_that_stops_before_an_answer() -> None:
    # one iteration expands only the first step: the walk ends there, so it is completed
    eng, _ = engine(p_right=0.6)
    result = await eng.solve(PROBLEM, "mcts", iterations=1, k=2, seed=0)
    tree = result.info["tree"]
    (done,) = [n for n in tree if n["note"] == "final completion"]
    assert done["selected"] and done["terminal"] and tree[done["parent"]]["selected"]


async def test_particle_gibbs_with_one_pass_is_the_particle_filter() -> None:
    pf = await engine(0.5)[0].solve(PROBLEM, "particles", n=4, seed=9)
    pg = await engine(0.5)[0].solve(PROBLEM, "particle_gibbs", n=4, iterations=1, seed=9)
    assert pg.info["tree"] == pf.info["tree"] and pg.answer == pf.answer
    assert pg.info["weights"] == pf.info["weights"]


async def test_the_reference_particle_retraces_the_drawn_path_unbilled() -> None:
    from helpers import scripted_context
    from ponder.search.tree import Tree

    _, lm = engine(0.5)
    ctx = scripted_context(lm, seed=3)
    pg = make_strategy("particle_gibbs", n=4, ancestor_sampling=False)
    tree, stepper = Tree(PROBLEM.question), pg.stepper()  # type: ignore[attr-defined]
    first = await pg.filter(PROBLEM, ctx, tree, stepper)  # type: ignore[attr-defined]
    reference = tree.path(first.finished[0].node)
    nodes_before = len(tree.nodes)
    second = await pg.filter(PROBLEM, ctx, tree, stepper, reference)  # type: ignore[attr-defined]
    (ref,) = [p for p in second.finished if p.reference]
    assert ref.node is reference[-1]  # the same nodes, not new ones
    # the free particles sampled; the reference wrote nothing (no node re-made for it)
    new = tree.nodes[nodes_before:]
    assert new and all(n.note != "reference step re-attached (ancestor sampling)" for n in new)


async def test_ancestor_sampling_moves_the_reference_onto_a_heavier_particle() -> None:
    from helpers import scripted_context
    from ponder.search.particles import Particle
    from ponder.search.tree import Tree

    _, lm = engine(0.5)
    ctx = scripted_context(lm)
    pg = make_strategy("particle_gibbs", n=2, weight_temperature=0.05)
    tree, stepper = Tree(PROBLEM.question), pg.stepper()  # type: ignore[attr-defined]
    ref_1 = tree.add(tree.root, RIGHT[0])
    ref_2 = tree.add(ref_1, RIGHT[1])
    other = tree.add(tree.root, WRONG[0])
    live = [Particle(ref_1, log_w=-50.0, reference=True), Particle(other, log_w=0.0)]
    got = await pg.follow(PROBLEM, ctx, tree, stepper, live, [ref_1, ref_2], 1)  # type: ignore[attr-defined]
    # the reference's step now follows the heavier particle's prefix, scored there, unbilled
    assert got.parent == other.id and got.step == RIGHT[1] and got is not ref_2
    assert got.score is not None and got.tokens == 0 and "ancestor sampling" in (got.note or "")
    assert live[0].log_w == 0.0


async def test_chat_only_backends_continue_the_final_assistant_message() -> None:
    def reply(req: GenRequest, index: int, rng: random.Random) -> str:
        assert req.messages is not None
        if req.role == "verifier":
            return "Yes"
        last = req.messages[-1]
        done = [s for s in last.content.split("\n\n") if s.strip()] if req.continue_final else []
        if not req.continue_final:
            assert last.role == "user"  # the first step starts the assistant's turn
        return RIGHT[len(done)] + "\n\n" if len(done) < len(RIGHT) else ""

    caps = Capabilities(slots=4, n_with_stop=True, raw_prefix=False, continue_final=True)
    lm = ScriptedLM(reply, capabilities=caps)
    result = await Engine(lm, scheduler=Scheduler(sleep=no_sleep)).solve(
        PROBLEM, "beam", n=1, m=1, temperature=0.0, seed=0
    )
    assert result.answer == "18" and result.candidates[0].text == "\n\n".join(RIGHT)
    continued = [c for c in lm.calls if c.role == "policy" and c.continue_final]
    assert len(continued) == len(RIGHT) - 1
    assert all(c.messages and c.messages[-1].role == "assistant" for c in continued)


@pytest.mark.parametrize("name", ["beam", "particles", "mcts"])
async def test_a_failing_verifier_leaves_nodes_unscored_and_says_why(name: str) -> None:
    from ponder.errors import BackendError

    def fail(call: int, req: GenRequest) -> Exception | None:
        return BackendError("judge backend refused") if req.role == "verifier" else None

    caps = Capabilities(slots=8, n_with_stop=True, raw_prefix=True)
    lm = ScriptedLM(policy(1.0), capabilities=caps, fail=fail, logprobs=perfect_judge)
    result = await Engine(lm, scheduler=Scheduler(sleep=no_sleep)).solve(PROBLEM, name, seed=1)
    assert result.answer == "18"  # the search still ends, and the answer is kept
    # but the result is an error: chosen without its verdicts (a bench does not store it)
    assert result.error is not None and result.error.startswith("the verifier failed ")
    assert "judge backend refused" in result.error
    # every judged step (an MCTS final completion is not judged) is unscored, with the reason
    steps = [n for n in result.info["tree"][1:] if n["step"] and not n["rollout"]]
    assert steps and all(n["score"] is None for n in steps)
    assert all("judge backend refused" in (n["note"] or "") for n in steps)


async def test_each_child_is_judged_as_soon_as_it_is_written() -> None:
    """No barrier between writing and judging: the third first step is held back until some
    judge call has arrived, which only happens if finished siblings are judged at once."""
    judged = asyncio.Event()

    class HeldBack(ScriptedLM):
        async def generate(self, req: GenRequest) -> Generation:
            if req.role == "verifier":
                judged.set()
            elif len([c for c in self.calls if c.role == "policy"]) == 2:
                self.calls.append(req)  # the third policy call: wait for a judge call
                await judged.wait()
                self.calls.pop()
            return await super().generate(req)

    caps = Capabilities(slots=8, n_with_stop=True, raw_prefix=True)
    lm = HeldBack(policy(0.5), capabilities=caps, logprobs=perfect_judge)
    eng = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
    result = await asyncio.wait_for(eng.solve(PROBLEM, "beam", n=1, m=3, seed=6), 10)
    assert result.answer is not None
    assert all(c.n == 1 for c in lm.calls if c.role == "policy")
    # and each judge call continues a text some writer was given, plus the new step
    writers = [c.prompt or "" for c in lm.calls if c.role == "policy"]
    for call in (c for c in lm.calls if c.role == "verifier"):
        assert any((call.prompt or "").startswith(w) for w in writers)


@pytest.mark.parametrize("name", ["beam", "particles", "mcts", "dvts"])
async def test_an_outcome_only_verifier_is_refused_before_anything_is_spent(name: str) -> None:
    eng, lm = engine()
    with pytest.raises(
        UsageError, match="verifier 'crosscheck' scores whole candidates, not steps"
    ):
        await eng.solve(PROBLEM, name, verifier="crosscheck", seed=0)
    assert lm.calls == []
