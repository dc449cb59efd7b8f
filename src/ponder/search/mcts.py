"""Monte Carlo tree search over steps (AlphaMath, rStar, MCTS-DPO): select a path by PUCT,
expand its leaf with k sampled next steps, value a new step by the process verifier, and back
the value up the path; the answer follows the most-visited children from the root.

    repeat `iterations` times:
        node ← root
        while node has children and is not terminal:
            node ← argmax_c  Q(c) + c_puct · P(c) · √N(node) / (1 + N(c))     (P uniform)
        if node is not terminal:
            kids ← expand(node, k);  score(kids);  node ← the best-scored new kid
        v ← node's score;  for each n on the path root..node: N(n) += 1, W(n) += v
    answer ← follow argmax visits from the root down to a terminal node
             (if that walk ends early: the best-valued terminal node)
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field

from ponder.search.base import Context
from ponder.search.steps import StepSearch
from ponder.search.tree import Node, Tree
from ponder.types import Problem, Result


class MCTS(StepSearch):
    name: ClassVar[str] = "mcts"
    iterations: int = Field(default=16, ge=1)
    k: int = Field(default=3, ge=1, description="next steps sampled when a leaf is expanded")
    c_puct: float = Field(default=1.0, ge=0.0)
    choose: Literal["visits", "value"] = "visits"

    def puct(self, parent: Node, child: Node, siblings: int) -> float:
        prior = 1.0 / siblings
        return child.value + self.c_puct * prior * math.sqrt(parent.visits) / (1 + child.visits)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        tree, stepper = Tree(problem.question), self.stepper()
        stopped = None
        for _ in range(self.iterations):
            node = tree.root
            while node.children and not node.terminal:
                kids = tree.children(node)
                node = max(kids, key=lambda c: self.puct(node, c, len(kids)))
            if not node.terminal:
                kids = await stepper.expand(ctx, problem, tree, node, self.k, self.temperature)
                if not kids:
                    stopped = "budget"
                    break
                await stepper.score(ctx, problem, tree, kids, self.verifier)
                node = max(kids, key=lambda c: -1.0 if c.score is None else c.score)
            value = 0.0 if node.score is None else node.score
            for n in [tree.root, *tree.path(node)]:
                n.visits += 1
                n.value_sum += value
        return self.finish(problem, ctx, tree, self.chosen(tree), stopped)

    def chosen(self, tree: Tree) -> list[Node]:
        """The answer's node first, then every other terminal node (as candidates)."""
        terminals = list(tree.terminals())
        if not terminals:
            return []
        node = tree.root
        while node.children and not node.terminal:
            key = (lambda c: c.visits) if self.choose == "visits" else (lambda c: c.value)
            node = max(tree.children(node), key=key)
            node.selected = True
        best = node if node.terminal else max(terminals, key=lambda n: n.value)
        return [best, *(n for n in terminals if n is not best)]

    def finish(
        self, problem: Problem, ctx: Context, tree: Tree, finals: list[Node], stopped: str | None
    ) -> Result:
        """MCTS answers with the node its visit counts lead to, not the top score."""
        if finals:
            finals[0].selected = True
        candidates = self.candidates(tree, finals, lambda n: n.value if n.visits else None)
        answer = finals[0].answer if finals else None
        return ctx.result(problem, self, answer, candidates, stopped=stopped, tree=tree.records())
