"""Step-level beam search with a process verifier (Snell et al., 2024; search-and-learn):
keep the N best partial solutions, expand each M times by one step, score every new step, keep
the N best again; finished solutions are set aside until N have finished or the steps run out.
The answer is the finished solution whose path scores best.

    beams ← [root] × N                                  (N copies: N·M first steps)
    for t in 1..max_steps:
        children ← ⋃ expand(b, M) for b in beams         (all nodes at once)
        score(children)                                 (each new step once, as it is written)
        finished += terminal children
        if |finished| ≥ N or no live children: stop
        beams ← top-N live children by path score
    return argmax over finished of path score
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pydantic import Field

from ponder.runtime.context import Context
from ponder.runtime.strategy import MULTIPLIES, strategy
from ponder.search.steps import Stepper, StepSearch
from ponder.search.tree import Node, Tree
from ponder.types import Problem, Result


@strategy
class Beam(StepSearch):
    """Step-level beam search: keep the N best partial solutions, expand each M times."""

    name: ClassVar[str] = "beam"
    width: ClassVar[str | None] = "n"
    n: int = Field(
        default=4,
        ge=1,
        description="beam width: partial solutions kept per step",
        json_schema_extra=MULTIPLIES,
    )
    m: int = Field(
        default=4,
        ge=1,
        description="expansions of each kept node per step",
        json_schema_extra=MULTIPLIES,
    )

    async def run(self, problem: Problem, ctx: Context) -> Result:
        tree, stepper = Tree(problem.question), self.stepper()
        beams, finished, stopped = [tree.root], [], None
        for _ in range(self.max_steps):
            # the root stands for all N beams, so the first step is as wide as the others
            grown = await asyncio.gather(
                *(
                    stepper.grow(ctx, problem, tree, b, self.m * copies, self.temperature)
                    for b, copies in ((b, self.n if b is tree.root else 1) for b in beams)
                )
            )
            children = [c for kids in grown for c in kids]
            if not children:
                stopped = "budget"
                break
            finished += [c for c in children if c.terminal]
            live = [c for c in children if not c.terminal]
            if len(finished) >= self.n or not live:
                break
            rank = await self.rank(ctx, problem, tree, stepper, live)
            beams = sorted(live, key=lambda c: -rank[c.id])[: self.n]
            for b in beams:
                b.selected = True
        return self.finish(problem, ctx, tree, finished, stopped)

    async def rank(
        self, ctx: Context, problem: Problem, tree: Tree, stepper: Stepper, live: list[Node]
    ) -> dict[int, float]:
        """What the kept beams are chosen by: each live node's path score."""
        return {c.id: self.score_of(tree, c) for c in live}
