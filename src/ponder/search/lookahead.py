"""Lookahead search (Snell et al., 2024): beam search in which a candidate step is ranked not
by its own score but by the score of a short greedy rollout from it, k steps ahead, so a step
that only looks good now is not kept over one that leads somewhere. The rollouts are written
into the tree (they cost tokens and are part of the trace) but never become beams.

    as beam search, except:  rank(c) ← path score of  rollout(c, k steps, T = 0)
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pydantic import Field

from ponder.runtime.context import Context
from ponder.runtime.strategy import MULTIPLIES, strategy
from ponder.search.beam import Beam
from ponder.search.steps import Stepper
from ponder.search.tree import Node, Tree
from ponder.types import Problem


@strategy
class Lookahead(Beam):
    """Beam search whose steps are ranked by k-step greedy rollouts."""

    name: ClassVar[str] = "lookahead"
    k: int = Field(
        default=2,
        ge=1,
        description="greedy steps rolled out to rank a step",
        json_schema_extra=MULTIPLIES,
    )

    async def rank(
        self, ctx: Context, problem: Problem, tree: Tree, stepper: Stepper, live: list[Node]
    ) -> dict[int, float]:
        ends = await asyncio.gather(*(self.rollout(ctx, problem, tree, stepper, c) for c in live))
        return {c.id: self.score_of(tree, end) for c, end in zip(live, ends, strict=True)}

    async def rollout(
        self, ctx: Context, problem: Problem, tree: Tree, stepper: Stepper, start: Node
    ) -> Node:
        """Up to k greedy steps from `start`, each scored; where the rollout ended."""
        node = start
        for _ in range(self.k):
            kids = await stepper.grow(ctx, problem, tree, node, 1, 0.0)
            if not kids:
                break
            (node,) = kids
            node.note = "lookahead rollout" + (f"; {node.note}" if node.note else "")
            if node.terminal:
                break
        return node
