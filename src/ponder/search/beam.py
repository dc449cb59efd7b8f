"""Step-level beam search with a process verifier (Snell et al., 2024; search-and-learn):
keep the N best partial solutions, expand each M times by one step, score every new step, keep
the N best again; finished solutions are set aside until N have finished or the steps run out.
The answer is the finished solution whose path scores best.

    beams ← [root]
    for t in 1..max_steps:
        children ← ⋃ expand(b, M) for b in beams         (one request per beam, all at once)
        score(children)                                 (each new step once)
        finished += terminal children
        if |finished| ≥ N or no live children: stop
        beams ← top-N live children by path score
    return argmax over finished of path score
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pydantic import Field, field_validator

from ponder.search.base import Context, Strategy
from ponder.search.steps import Stepper
from ponder.search.tree import Node, Tree
from ponder.types import Candidate, Problem, Result
from ponder.verify import VerifierSpec
from ponder.verify.aggregate import AGGREGATES, aggregate


class Beam(Strategy):
    name: ClassVar[str] = "beam"
    n: int = Field(default=4, ge=1, description="beam width: partial solutions kept per step")
    m: int = Field(default=4, ge=1, description="expansions of each kept node per step")
    max_steps: int = Field(default=12, ge=1)
    max_step_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.7, ge=0.0)
    verifier: VerifierSpec = Field(default_factory=lambda: VerifierSpec(steps=True))
    # how a path's step scores rank it: the last step's (a PRM's usual reading), min, prod, mean
    path_score: str = "last"

    @field_validator("verifier", mode="before")
    @classmethod
    def _spec(cls, v: object) -> object:
        return VerifierSpec(name=v, steps=True) if isinstance(v, str) else v

    @field_validator("path_score")
    @classmethod
    def _known(cls, how: str) -> str:
        if how not in AGGREGATES:
            raise ValueError(f"unknown path score '{how}' (choose from: {', '.join(AGGREGATES)})")
        return how

    def score_of(self, tree: Tree, node: Node) -> float:
        s = aggregate([n.score for n in tree.path(node)], self.path_score)
        return -1.0 if s is None else s  # unscored paths rank below every scored one

    async def run(self, problem: Problem, ctx: Context) -> Result:
        tree = Tree(problem.question)
        stepper = Stepper(max_step_tokens=self.max_step_tokens, max_depth=self.max_steps)
        beams, finished, stopped = [tree.root], [], None
        for _ in range(self.max_steps):
            grown = await asyncio.gather(
                *(stepper.expand(ctx, problem, tree, b, self.m, self.temperature) for b in beams)
            )
            children = [c for kids in grown for c in kids]
            if not children:
                stopped = "budget"
                break
            await stepper.score(ctx, problem, tree, children, self.verifier)
            finished += [c for c in children if c.terminal]
            live = [c for c in children if not c.terminal]
            if len(finished) >= self.n or not live:
                break
            beams = sorted(live, key=lambda c: -self.score_of(tree, c))[: self.n]
            for b in beams:
                b.selected = True
        return self.finish(problem, ctx, tree, finished, stopped)

    def finish(
        self, problem: Problem, ctx: Context, tree: Tree, finished: list[Node], stopped: str | None
    ) -> Result:
        """The best-scoring finished path is the answer; every finished path is a candidate."""
        ranked = sorted(finished, key=lambda n: -self.score_of(tree, n))
        if ranked:
            ranked[0].selected = True
        candidates = [
            Candidate(
                text=tree.text(n),
                answer=n.answer,
                completion_tokens=sum(p.tokens for p in tree.path(n)),
                finish_reason=n.finish_reason,
                score=self.score_of(tree, n) if n.score is not None else None,
                note=n.note,
            )
            for n in ranked
        ]
        answer = ranked[0].answer if ranked else None
        return ctx.result(problem, self, answer, candidates, stopped=stopped, tree=tree.records())
