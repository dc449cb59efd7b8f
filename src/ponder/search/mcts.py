"""Monte Carlo tree search over steps (AlphaMath, rStar, MCTS-DPO): select a path by PUCT,
expand its leaf with k sampled next steps, value the most promising new step, and back the
value up the path; the answer follows the most-visited children from the root.

A new step's value is either the process verifier's score of it (`value="process"`) or the
verifier's score of a rollout that writes the rest of the solution from it in one request
(`value="rollout"`, AlphaMath's simulation; the rollout is a terminal node of the trace and a
candidate answer, never a node the search selects into).

    repeat `iterations` times:
        node ← root
        while node has step children and is not terminal:
            node ← argmax_c  Q(c) + c_puct · P(c) · √N(node) / (1 + N(c))     (P uniform)
        if node is not terminal:
            kids ← expand(node, k);  score(kids);  node ← the best-scored new kid
        v ← score(node)                       or  score(rollout(node)) when valued by rollout
        for each n on the path root..node: N(n) += 1, W(n) += v
    walk ← follow argmax visits (or value) from the root
    answer ← the walk's end if terminal, else its best rollout, else a greedy completion of it
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field

from ponder.runtime.context import Context
from ponder.runtime.strategy import MULTIPLIES, strategy
from ponder.search.steps import Stepper, StepSearch
from ponder.search.tree import Node, Tree
from ponder.types import Problem, Result


@strategy
class MCTS(StepSearch):
    """Monte Carlo tree search over steps (PUCT); the answer follows the visits."""

    name: ClassVar[str] = "mcts"
    width: ClassVar[str | None] = "iterations"
    iterations: int = Field(
        default=16,
        ge=1,
        description="selection-expansion-backup passes",
        json_schema_extra=MULTIPLIES,
    )
    k: int = Field(
        default=3,
        ge=1,
        description="next steps sampled when a leaf is expanded",
        json_schema_extra=MULTIPLIES,
    )
    c_puct: float = Field(default=1.0, ge=0.0, description="exploration constant of PUCT")
    value: Literal["process", "rollout"] = Field(
        default="process",
        description="a new step's value: its process score, or the score of a rollout to the end",
    )
    choose: Literal["visits", "value"] = Field(
        default="visits", description="the answer's walk follows the most visits or value"
    )

    def puct(self, parent: Node, child: Node, siblings: int) -> float:
        prior = 1.0 / siblings
        return child.value + self.c_puct * prior * math.sqrt(parent.visits) / (1 + child.visits)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        tree, stepper = Tree(problem.question), self.stepper()
        stopped = None
        for _ in range(self.iterations):
            node = tree.root
            while steps_below(tree, node) and not node.terminal:
                kids = steps_below(tree, node)
                node = max(kids, key=lambda c: self.puct(node, c, len(kids)))
            if not node.terminal:
                kids = await stepper.grow(ctx, problem, tree, node, self.k, self.temperature)
                if not kids:
                    stopped = "budget"
                    break
                node = max(kids, key=lambda c: -1.0 if c.score is None else c.score)
            value = node.score
            if self.value == "rollout" and not node.terminal:
                end = await self.simulate(ctx, problem, tree, stepper, node)
                if end is None:
                    stopped = "budget"
                value = None if end is None else end.score
            for n in [tree.root, *tree.path(node)]:
                n.visits += 1
                n.value_sum += 0.0 if value is None else value
        finals = await self.chosen(ctx, problem, tree, stepper)
        return self.finish(problem, ctx, tree, finals, stopped)

    async def simulate(
        self, ctx: Context, problem: Problem, tree: Tree, stepper: Stepper, node: Node
    ) -> Node | None:
        """A rollout from `node` to the end of the solution, scored (and counted once)."""
        with ctx.pinned() as held:  # the rollout and its judgement on one slot
            end = await stepper.rollout(held, problem, tree, node, self.temperature)
            if end is not None:
                await stepper.score(held, problem, tree, [end], self.verifier)
        if end is not None:
            end.visits, end.value_sum = 1, 0.0 if end.score is None else end.score
        return end

    async def chosen(
        self, ctx: Context, problem: Problem, tree: Tree, stepper: Stepper
    ) -> list[Node]:
        """The answer's node first, then every other finished path (as candidates).

        The walk follows visits (or value) down the step children. If it stops before an
        answer, its best-valued rollout answers; failing that, the walk's end is completed
        greedily (one more request, when the budget allows), so the search still answers."""
        node = tree.root
        key = (lambda c: c.visits) if self.choose == "visits" else (lambda c: c.value)
        while steps_below(tree, node) and not node.terminal:
            node = max(steps_below(tree, node), key=key)
            node.selected = True
        best: Node | None = node if node.terminal else None
        if best is None:
            rollouts = [c for c in tree.children(node) if c.rollout]
            best = max(rollouts, key=lambda c: c.value, default=None)
        if best is None:
            best = await stepper.rollout(ctx, problem, tree, node, 0.0)
            if best is not None:
                best.note = "final completion"
        if best is None:
            terminals = list(tree.terminals())
            best = max(terminals, key=lambda n: n.value, default=None)
        if best is None:
            return []
        return [best, *(n for n in tree.terminals() if n is not best)]

    def finish(
        self, problem: Problem, ctx: Context, tree: Tree, finals: list[Node], stopped: str | None
    ) -> Result:
        """MCTS answers with the node its visit counts lead to, not the top score."""
        if finals:
            finals[0].selected = True
        candidates = self.candidates(tree, finals, lambda n: n.value if n.visits else None)
        answer = finals[0].answer if finals else None
        return ctx.result(problem, self, answer, candidates, stopped=stopped, tree=tree.records())


def steps_below(tree: Tree, node: Node) -> list[Node]:
    """A node's children that are steps of the search (rollouts are not selected into)."""
    return [c for c in tree.children(node) if not c.rollout]
