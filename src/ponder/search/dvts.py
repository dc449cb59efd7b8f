"""Diverse verifier tree search (Beeching et al., 2024, search-and-learn): split the N-sample
budget into N/M independent subtrees and search each greedily with M samples per step, so one
over-confident verifier score cannot collapse every path into the same subtree (beam search's
failure at large N). The best finished path over the subtrees answers.

    for each of N/M subtrees, at once:
        node ← root
        repeat: kids ← expand(node, M); score(kids); node ← best kid   until node is terminal
    return the best-scoring final node
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pydantic import Field, model_validator

from ponder.runtime.context import Context
from ponder.runtime.strategy import MULTIPLIES, OptionsClash, strategy
from ponder.search.step_bon import StepBoN
from ponder.search.tree import Tree
from ponder.types import Problem, Result


@strategy
class DVTS(StepBoN):
    """Diverse verifier tree search: N/M independent greedy subtrees of M samples a step."""

    name: ClassVar[str] = "dvts"
    n: int = Field(
        default=8,
        ge=1,
        description="total samples per step over all subtrees",
        json_schema_extra=MULTIPLIES,
    )
    m: int = Field(
        default=4,
        ge=1,
        description="samples per step in each subtree",
        json_schema_extra=MULTIPLIES,
    )

    @model_validator(mode="after")
    def _split(self) -> DVTS:
        if self.n % self.m:
            raise OptionsClash(
                f"n ({self.n}) must be a multiple of m ({self.m}): n/m subtrees", "n", "m"
            )
        return self

    async def run(self, problem: Problem, ctx: Context) -> Result:
        tree, stepper = Tree(problem.question), self.stepper()
        ends = await asyncio.gather(
            *(
                self.descend(ctx, problem, tree, stepper, tree.root, self.m)
                for _ in range(self.n // self.m)
            )
        )
        finals = [node for node, _ in ends if node.terminal]
        stopped = next((why for _, why in ends if why), None)
        return self.finish(problem, ctx, tree, finals, stopped)
