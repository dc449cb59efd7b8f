"""Particle Gibbs (Puri et al., 2025, after Andrieu et al., 2010): repeat the particle filter,
each time keeping one reference particle that retraces the solution drawn from the previous
pass, so later passes search around what earlier ones found instead of starting over. With
ancestor sampling (Lindsten et al., 2014) the reference's next step may be re-attached to
another particle's prefix, drawn in proportion to that particle's weight times how well the
reference step scores after it, which lets the reference path mix with the others.

    ref ← none
    for it in 1..iterations:
        particles ← N × root, particle 0 follows ref (if any), never resampled away
        run the particle filter (particles.py); at step t the reference takes ref's step t —
          with ancestor sampling: after particle a drawn ∝ w_a · exp(score(ref_t | x_a) / τ)
        finished_it ← the finished particles, weights normalized within the pass
        ref ← a finished particle drawn ∝ its weight
    answer ← weighted vote over the finished particles of every pass (each pass weighs 1)

The likelihood of the reference's step under another prefix is the verifier's score there,
not the policy's probability of writing it: llama.cpp cannot score given text, so the
policy's transition term is taken as equal across ancestors. Re-attached steps are nodes of
the trace (noted as such, billed no tokens: they were written once already); judging them
costs one verifier call per distinct particle prefix per step.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ponder.runtime.context import Context
from ponder.runtime.strategy import MULTIPLIES, strategy
from ponder.search.particles import Particle, Particles
from ponder.search.resample import softmax_weights
from ponder.search.steps import Stepper, add_step
from ponder.search.tree import Node, Tree
from ponder.types import Problem, Result

REATTACHED = "reference step re-attached (ancestor sampling)"


@strategy
class ParticleGibbs(Particles):
    """Repeated particle filtering that keeps a reference particle, with ancestor sampling."""

    name: ClassVar[str] = "particle_gibbs"
    iterations: int = Field(
        default=2, ge=1, description="passes of the particle filter", json_schema_extra=MULTIPLIES
    )
    ancestor_sampling: bool = Field(
        default=True, description="resample the reference particle's ancestry by score"
    )

    async def run(self, problem: Problem, ctx: Context) -> Result:
        tree, stepper = Tree(problem.question), self.stepper()
        finished: list[Particle] = []
        weights: list[float] = []
        reference: list[Node] | None = None
        stopped, resamples, passes = None, 0, 0
        for _ in range(self.iterations):
            out = await self.filter(problem, ctx, tree, stepper, reference)
            passes += 1
            resamples += out.resamples
            if out.finished:
                w = self.normalized(out.finished)
                finished += out.finished
                weights += [x / self.iterations for x in w]
                drawn = ctx.rng.choices(range(len(w)), weights=w)[0]
                reference = tree.path(out.finished[drawn].node)
            if out.stopped:
                stopped = out.stopped
                break
        return self.weighted_vote(
            problem, ctx, tree, finished, weights, stopped, resamples=resamples, passes=passes
        )

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
        """The reference's step t, after its own prefix or (ancestor sampling) after another
        particle's, re-attached there and scored in that place."""
        ref = next(p for p in live if p.reference)
        step = reference[t]
        options: dict[int, Node] = {ref.node.id: attach(tree, ref.node, step, problem)}
        if self.ancestor_sampling:
            for p in live:
                if p.node.id not in options:
                    options[p.node.id] = attach(tree, p.node, step, problem)
        fresh = [n for n in options.values() if n.score is None and n.note == REATTACHED]
        await stepper.score(ctx, problem, tree, fresh, self.verifier)
        if not self.ancestor_sampling:
            return options[ref.node.id]
        # each particle, by its weight times the reference step's score after it
        logits = [
            p.log_w + (options[p.node.id].score or 0.0) / self.weight_temperature for p in live
        ]
        drawn = live[ctx.rng.choices(range(len(live)), weights=softmax_weights(logits))[0]]
        ref.log_w = drawn.log_w  # the reference continues from the drawn particle's prefix
        return options[drawn.node.id]


def attach(tree: Tree, parent: Node, like: Node, problem: Problem) -> Node:
    """`like`'s step as a child of `parent`: the existing child with that text (the reference
    path itself, when `parent` is on it), else a new node, unscored, noted as re-attached."""
    for c in tree.children(parent):
        if c.step == like.step and not c.rollout:
            return c
    return add_step(
        tree,
        parent,
        problem,
        like.step,
        tokens=0,  # written once already, by the pass that found it: not billed again
        finish_reason=like.finish_reason,
        terminal=like.terminal,
        note=REATTACHED,
    )
