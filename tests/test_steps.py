from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from helpers import count_renders, scripted_context
from ponder.errors import UsageError
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.budget import Budget
from ponder.runtime.context import Context
from ponder.runtime.prompting import Prompting
from ponder.runtime.verifiers import VerifierSpec
from ponder.search.steps import Stepper
from ponder.search.tree import Tree
from ponder.types import GenRequest, Problem

PROBLEM = Problem(question="What is 3 + 4 + 5?", kind="number")
SOLUTION = ["3 + 4 = 7.", "7 + 5 = 12.", "So the answer is \\boxed{12}."]


def continue_solution(req: GenRequest, index: int, rng: random.Random) -> str:
    """The policy continues the planted solution from wherever the prompt stops."""
    if req.role == "verifier":
        return "Yes"
    assert req.prompt is not None
    written = req.prompt.split("<assistant>", 1)[1]
    done = [s for s in written.split("\n\n") if s]
    rest = SOLUTION[len(done) :]
    return "\n\n".join(rest)


def judge(req: GenRequest, index: int, rng: random.Random) -> dict[str, float]:
    return {"Yes": math.log(0.8), "No": math.log(0.2)}


def context(lm: ScriptedLM, budget: Budget | None = None) -> Context:
    return scripted_context(lm, budget, seed=1)


def scripted(**kw: object) -> ScriptedLM:
    caps = Capabilities(slots=4, n_with_stop=True, raw_prefix=True)
    return ScriptedLM(continue_solution, capabilities=caps, logprobs=judge, **kw)  # type: ignore[arg-type]


async def test_a_stepper_renders_a_search_once_and_again_for_another_problem() -> None:
    lm = scripted()
    rendered, render = count_renders(lm)
    ctx, stepper = context(lm), Stepper()
    tree = Tree(PROBLEM.question)
    kid = (await stepper.expand(ctx, PROBLEM, tree, tree.root, 1, 0.7))[0]
    await stepper.expand(ctx, PROBLEM, tree, kid, 1, 0.7)
    assert rendered == [PROBLEM.question]
    other = Problem(question="What is 1 + 1?", kind="number")
    await stepper.expand(ctx, other, Tree(other.question), Tree(other.question).root, 1, 0.7)
    assert rendered == [PROBLEM.question, other.question]
    head = await render(ctx.prompting.messages(other))
    assert lm.calls[-1].prompt == head  # the new problem's own conversation, not the first's


async def test_children_continue_the_nodes_text_and_share_its_prefix() -> None:
    lm = scripted()
    # the blank line alone ends a step (no program fence): siblings go as one n=3 request
    ctx = replace(context(lm), prompting=Prompting(stop=[]))
    tree, stepper = Tree(PROBLEM.question), Stepper()
    node = tree.root
    for depth in range(3):
        kids = await stepper.expand(ctx, PROBLEM, tree, node, 3, 0.7)
        assert [k.step for k in kids] == [SOLUTION[depth]] * 3  # cut at the blank line
        node = kids[0]
    req = lm.calls[-1]
    head = await lm.render(ctx.prompting.messages(PROBLEM))
    assert req.prompt == head + "3 + 4 = 7.\n\n7 + 5 = 12.\n\n" and req.n == 3
    assert req.stop == ["\n\n"]
    assert node.terminal and node.answer == "12" and node.note is None
    assert [n.terminal for n in tree.path(node)] == [False, False, True]
    assert len(lm.calls) == 3  # one request per expansion, siblings together


async def test_siblings_asked_together_go_as_singles_when_two_stop_strings_could_cut_them() -> None:
    # llama.cpp does not say which stop string cut a choice, so it cannot count each of n
    lm = scripted()
    ctx, tree = context(lm), Tree(PROBLEM.question)
    kids = await Stepper().expand(ctx, PROBLEM, tree, tree.root, 3, 0.7)
    assert [k.step for k in kids] == [SOLUTION[0]] * 3
    assert [c.n for c in lm.calls] == [1, 1, 1] and lm.calls[0].stop == ["\n\n", "```output"]
    assert len({c.seed for c in lm.calls}) == 3
    assert ctx.ledger.spent.calls == 3


async def test_a_step_without_a_boundary_a_stop_and_the_depth_limit_end_the_path() -> None:
    long = ScriptedLM(["word " * 50], capabilities=Capabilities(raw_prefix=True, n_with_stop=True))
    tree, stepper = Tree(PROBLEM.question), Stepper(max_step_tokens=10)
    (kid,) = await stepper.expand(context(long), PROBLEM, tree, tree.root, 1, 0.0)
    assert kid.terminal and kid.note == "no step boundary within 10 tokens"
    silent = ScriptedLM([""], capabilities=Capabilities(raw_prefix=True, n_with_stop=True))
    (kid,) = await stepper.expand(context(silent), PROBLEM, tree, tree.root, 1, 0.0)
    assert kid.terminal and kid.note == "the model stopped" and kid.answer is None
    shallow = Stepper(max_depth=1)
    (kid,) = await shallow.expand(context(scripted()), PROBLEM, tree, tree.root, 1, 0.0)
    assert kid.terminal and kid.note == "depth limit 1"


async def test_expansion_takes_what_the_budget_affords() -> None:
    lm = scripted()
    budget = Budget(completion_tokens=2 * Stepper().max_step_tokens)
    tree = Tree(PROBLEM.question)
    kids = await Stepper().expand(context(lm, budget), PROBLEM, tree, tree.root, 5, 0.7)
    assert len(kids) == 2 and [c.n for c in lm.calls] == [1, 1]  # (two stops: as singles)
    none = await Stepper().expand(
        context(lm, Budget(completion_tokens=10)), PROBLEM, tree, tree.root, 5, 0.7
    )
    assert none == []


async def test_each_node_is_scored_once_and_a_backend_without_raw_text_is_refused() -> None:
    lm = scripted()
    ctx, tree, stepper = context(lm), Tree(PROBLEM.question), Stepper()
    spec = VerifierSpec(name="self_judge", steps=True)
    a = (await stepper.expand(ctx, PROBLEM, tree, tree.root, 1, 0.0))[0]
    b = (await stepper.expand(ctx, PROBLEM, tree, a, 1, 0.0))[0]
    await stepper.score(ctx, PROBLEM, tree, [a], spec)
    judged = sum(c.role == "verifier" for c in lm.calls)
    await stepper.score(ctx, PROBLEM, tree, [b], spec)
    assert sum(c.role == "verifier" for c in lm.calls) == judged + 1  # only b's new step
    assert a.score == b.score == 0.8
    # the judge continues the same rendered head the policy wrote from
    last = [c for c in lm.calls if c.role == "verifier"][-1]
    head = await lm.render(ctx.prompting.messages(PROBLEM))
    assert last.prompt is not None and last.prompt.startswith(head)
    chat_only = ScriptedLM(["x"], capabilities=Capabilities(raw_prefix=False))
    with pytest.raises(UsageError, match="nor continue a final assistant message"):
        await Stepper().expand(context(chat_only), PROBLEM, Tree("q"), Tree("q").root, 1, 0.0)
