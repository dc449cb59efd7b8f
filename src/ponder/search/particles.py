"""Particle filtering over partial solutions (sequential Monte Carlo; Puri et al., 2025,
"A Probabilistic Inference Approach to Inference-Time Scaling of LLMs"): N particles each
extend their solution by one step; each particle's log-weight grows by its new step's process
score over a temperature; when the effective sample size falls below a threshold × N, the
particles are resampled (systematic resampling) in proportion to their weights and the
weights reset. Finished particles keep their weight; the answer is the weighted vote over them.

    particles ← N × root;  log w ← 0
    while some particle is live and t < max_steps:
        each live particle p: p ← expand(p, 1);  score the new step;  log w_p += score_p / τ
        if ESS(w) < threshold · N: resample the live particles systematically; log w ← 0
    answer ← weighted vote of the finished particles' answers

`filter` is conditional SMC when given a reference path (particle Gibbs, particle_gibbs.py):
one particle follows the reference instead of sampling, and is never resampled away.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field

from ponder.runtime.context import Context
from ponder.runtime.strategy import MULTIPLIES, strategy
from ponder.search.resample import should_resample, softmax_weights, systematic_resample
from ponder.search.steps import Stepper, StepSearch
from ponder.search.tree import Node, Tree
from ponder.search.vote import tally
from ponder.types import Problem, Result


@dataclass
class Particle:
    node: Node
    log_w: float = 0.0
    reference: bool = False  # follows the reference path (conditional SMC)


@dataclass
class Filtered:
    """What one pass of the filter left: finished particles, why it stopped early (if it did),
    how often it resampled."""

    finished: list[Particle] = field(default_factory=list)
    stopped: str | None = None
    resamples: int = 0


@strategy
class Particles(StepSearch):
    """Particle filtering over steps: weights from process scores, resampling at low ESS."""

    name: ClassVar[str] = "particles"
    width: ClassVar[str | None] = "n"
    n: int = Field(default=8, ge=1, description="particles", json_schema_extra=MULTIPLIES)
    ess_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="resample when ESS / n falls below this"
    )
    weight_temperature: float = Field(
        default=1.0, gt=0.0, description="softmax temperature of scores into weights"
    )

    async def run(self, problem: Problem, ctx: Context) -> Result:
        tree = Tree(problem.question)
        out = await self.filter(problem, ctx, tree, self.stepper())
        weights = self.normalized(out.finished)
        return self.weighted_vote(
            problem, ctx, tree, out.finished, weights, out.stopped, resamples=out.resamples
        )

    async def filter(
        self,
        problem: Problem,
        ctx: Context,
        tree: Tree,
        stepper: Stepper,
        reference: list[Node] | None = None,
    ) -> Filtered:
        out = Filtered()
        live = [Particle(tree.root, reference=i == 0 and bool(reference)) for i in range(self.n)]
        for t in range(self.max_steps):
            if not live:
                break
            # particles that share a node are extended together (each new step scored)
            free = Counter(p.node.id for p in live if not p.reference)
            grown = await asyncio.gather(
                *(
                    stepper.grow(ctx, problem, tree, tree.nodes[i], k, self.temperature)
                    for i, k in free.items()
                )
            )
            pools = {i: list(kids) for i, kids in zip(free, grown, strict=True)}
            if sum(map(len, pools.values())) < sum(free.values()):
                out.stopped = "budget"  # some particles could not be extended: stop here
            moved: list[Particle] = []
            for p in live:
                if p.reference:
                    assert reference is not None
                    child = await self.follow(problem, ctx, tree, stepper, live, reference, t)
                elif pools[p.node.id]:
                    child = pools[p.node.id].pop(0)
                else:
                    continue
                w = p.log_w + (child.score or 0.0) / self.weight_temperature
                moved.append(Particle(child, w, p.reference))
            out.finished += [p for p in moved if p.node.terminal]
            live = [p for p in moved if not p.node.terminal]
            if out.stopped or not live:
                break
            weights = softmax_weights([p.log_w for p in live])
            if should_resample(weights, self.ess_threshold):
                live = self.resample(live, weights, ctx)
                out.resamples += 1
            for p in live:
                p.node.selected = True
            ctx.report("particles", step=t + 1, live=len(live), finished=len(out.finished))
        return out

    def resample(self, live: list[Particle], weights: list[float], ctx: Context) -> list[Particle]:
        """Systematic resampling of the free particles from all of them (the reference, if
        any, keeps its place); weights reset."""
        kept = [Particle(p.node, 0.0, True) for p in live if p.reference]
        ancestors = systematic_resample(weights, ctx.rng, len(live) - len(kept))
        return kept + [Particle(live[a].node, 0.0) for a in ancestors]

    async def follow(
        self,
        problem: Problem,
        ctx: Context,
        tree: Tree,
        stepper: Stepper,
        live: list[Particle],
        reference: list[Node],
        t: int,
    ) -> Node:
        """The reference particle's next node: the reference path's step t."""
        return reference[t]

    def normalized(self, finished: list[Particle]) -> list[float]:
        return softmax_weights([p.log_w for p in finished]) if finished else []

    def weighted_vote(
        self,
        problem: Problem,
        ctx: Context,
        tree: Tree,
        finished: list[Particle],
        weights: list[float],
        stopped: str | None,
        **info: Any,
    ) -> Result:
        nodes = [p.node for p in finished]
        for n in nodes:
            n.selected = True
        by_weight: dict[int, float] = {}
        for n, w in zip(nodes, weights, strict=True):
            by_weight[n.id] = by_weight.get(n.id, 0.0) + w
        candidates = self.candidates(tree, nodes, lambda n: by_weight[n.id])
        answer, totals, tie = tally(candidates, weights, problem.kind)
        return ctx.result(
            problem,
            self,
            answer,
            candidates,
            stopped=stopped,
            weights=totals,
            tie=tie,
            tree=tree.records(),
            **info,
        )
