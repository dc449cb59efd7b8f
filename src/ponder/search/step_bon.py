"""Step-wise best-of-N: at every step sample N next steps from the current partial solution,
keep the one the process verifier scores best, and go on from it until the solution ends.

    node ← root
    repeat until node is terminal (or max_steps):
        kids ← expand(node, N);  score(kids)
        node ← argmax over kids of path score
    return node's answer
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ponder.runtime.context import Context
from ponder.runtime.strategy import MULTIPLIES, strategy
from ponder.search.steps import Stepper, StepSearch
from ponder.search.tree import Node, Tree
from ponder.types import Problem, Result


@strategy
class StepBoN(StepSearch):
    """Best of N next steps, step by step (greedy search over steps)."""

    name: ClassVar[str] = "step_bon"
    width: ClassVar[str | None] = "n"
    n: int = Field(
        default=4, ge=1, description="next steps sampled per step", json_schema_extra=MULTIPLIES
    )

    async def run(self, problem: Problem, ctx: Context) -> Result:
        tree, stepper = Tree(problem.question), self.stepper()
        end, stopped = await self.descend(ctx, problem, tree, stepper, tree.root, self.n)
        return self.finish(problem, ctx, tree, [end] if end.terminal else [], stopped)

    async def descend(
        self, ctx: Context, problem: Problem, tree: Tree, stepper: Stepper, start: Node, n: int
    ) -> tuple[Node, str | None]:
        """Greedy descent from `start`, n samples per step; (where it ended, stop reason)."""
        node = start
        for _ in range(self.max_steps):
            kids = await stepper.grow(ctx, problem, tree, node, n, self.temperature)
            if not kids:
                return node, "budget"
            node = max(kids, key=lambda c: self.score_of(tree, c))  # first of equals on ties
            node.selected = True
            if node.terminal:
                break
        return node, None
