"""Particle filtering over partial solutions (sequential Monte Carlo; Puri et al., 2025,
"A Probabilistic Inference Approach to Inference-Time Scaling of LLMs"): N particles each
extend their solution by one step; each particle's log-weight grows by its new step's process
score over a temperature; when the effective sample size falls below a threshold × N, the
particles are resampled (systematic resampling) in proportion to their weights and the
weights reset. Finished particles keep their weight; the answer is the weighted vote over them.

    particles ← N × root;  log w ← 0
    while some particle is live and t < max_steps:
        each live particle p: p ← expand(p, 1)       (particles on one node: one request)
        score the new steps;  log w_p += score_p / τ
        if ESS(w) < threshold · N: resample the live particles systematically; log w ← 0
    answer ← weighted vote of the finished particles' answers
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import ClassVar

from pydantic import Field

from ponder.search.base import Context
from ponder.search.resample import should_resample, softmax_weights, systematic_resample
from ponder.search.steps import StepSearch
from ponder.search.tree import Node, Tree
from ponder.search.vote import tally
from ponder.types import Problem, Result


class Particles(StepSearch):
    name: ClassVar[str] = "particles"
    n: int = Field(default=8, ge=1, description="particles")
    ess_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    weight_temperature: float = Field(default=1.0, gt=0.0)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        tree, stepper = Tree(problem.question), self.stepper()
        live: list[Node] = [tree.root] * self.n
        log_w = [0.0] * self.n
        finished: list[tuple[Node, float]] = []
        stopped, resamples = None, 0
        for _ in range(self.max_steps):
            if not live:
                break
            # particles that share a node are extended by one request with n = their count
            shared = Counter(p.id for p in live)
            grown = await asyncio.gather(
                *(
                    stepper.expand(ctx, problem, tree, tree.nodes[i], k, self.temperature)
                    for i, k in shared.items()
                )
            )
            pools = {i: list(kids) for i, kids in zip(shared, grown, strict=True)}
            if sum(map(len, pools.values())) < len(live):
                stopped = "budget"  # some particles could not be extended: stop with what we have
            steps = [c for kids in grown for c in kids]
            await stepper.score(ctx, problem, tree, steps, self.verifier)
            moved: list[tuple[Node, float]] = []
            for parent, w in zip(live, log_w, strict=True):
                if pools[parent.id]:
                    child = pools[parent.id].pop(0)
                    moved.append((child, w + (child.score or 0.0) / self.weight_temperature))
            finished += [(c, w) for c, w in moved if c.terminal]
            alive = [(c, w) for c, w in moved if not c.terminal]
            if stopped or not alive:
                break
            live, log_w = [c for c, _ in alive], [w for _, w in alive]
            weights = softmax_weights(log_w)
            if should_resample(weights, self.ess_threshold):
                ancestors = systematic_resample(weights, ctx.rng)
                live, log_w = [live[a] for a in ancestors], [0.0] * len(ancestors)
                resamples += 1
            for p in live:
                p.selected = True
        return self.weighted_vote(problem, ctx, tree, finished, stopped, resamples)

    def weighted_vote(
        self,
        problem: Problem,
        ctx: Context,
        tree: Tree,
        finished: list[tuple[Node, float]],
        stopped: str | None,
        resamples: int,
    ) -> Result:
        weights = softmax_weights([w for _, w in finished]) if finished else []
        nodes = [n for n, _ in finished]
        for n in nodes:
            n.selected = True
        by_weight = dict(zip((n.id for n in nodes), weights, strict=True))
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
            resamples=resamples,
            tree=tree.records(),
        )
