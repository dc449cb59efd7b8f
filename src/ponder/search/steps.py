"""Growing the shared tree: a node's children are written by continuing the node's own text
(the chat template rendered once per problem, then the path so far), so siblings share one
prefix and the backend's prefix cache serves it; each new node is scored once by a process
verifier, whose cache answers every prefix it has seen.

A step ends at the boundary (a blank line by default). A node is terminal, and says why in
its note, when its step holds a final answer (a \\boxed{} value), when the model stops with
nothing more to say, when the boundary never came within the step's token limit, or at the
depth limit: the search then treats it as a finished (or dead) path instead of failing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import ClassVar

from pydantic import Field, field_validator

from ponder.answers import last_boxed
from ponder.errors import UsageError
from ponder.lm.protocol import LanguageModel
from ponder.runtime.aggregate import aggregate, check_aggregate
from ponder.runtime.context import Context, answer_of
from ponder.runtime.prompting import Prompting
from ponder.runtime.strategy import MULTIPLIES, SCORED, STEP, Strategy
from ponder.runtime.verifiers import BuiltVerifier, Verifiers, VerifierSpec
from ponder.search.tree import STEP_SEPARATOR, Node, Tree
from ponder.types import Candidate, GenRequest, Message, Problem, Result


@dataclass(slots=True)
class _Setup:
    """What every request of one search shares, worked out on its first: the problem's
    conversation rendered by the backend (raw prompts continue it), or else the messages a
    final assistant message continues (chat-only servers); the stop strings; the verifier."""

    problem: Problem
    policy: LanguageModel
    prompting: Prompting
    answer_with: str
    verifiers: Verifiers | None
    head: str | None
    messages: list[Message]
    stop: list[str]
    verifier: BuiltVerifier | None  # the process verifier (None: the Stepper has none)

    def serves(self, ctx: Context, problem: Problem) -> bool:
        return (
            problem is self.problem
            and ctx.policy is self.policy
            and ctx.prompting is self.prompting
            and ctx.answer_with == self.answer_with
            and ctx.verifiers is self.verifiers
        )


@dataclass
class Stepper:
    boundary: str = STEP_SEPARATOR
    max_step_tokens: int = 256
    max_depth: int = 12
    verifier: VerifierSpec | None = None  # what `grow` scores new children with
    split: bool = True  # see `grow`
    _setup: _Setup | None = field(default=None, init=False, repr=False, compare=False)

    async def setup(self, ctx: Context, problem: Problem) -> _Setup:
        """What this search's requests share (worked out once: every node asks for it)."""
        kept = self._setup
        if kept is not None and kept.serves(ctx, problem):
            return kept
        messages = ctx.prompting.messages(problem, ctx.answer_with)
        caps = await ctx.prepared()  # a server learns here how it continues a partial text
        head = None
        if caps.render and caps.raw_prefix:
            head = await ctx.policy.render(messages)
        elif not caps.continue_final:
            tried = f" (tried {caps.continuation_note})" if caps.continuation_note else ""
            raise UsageError(
                f"step search continues a partial solution; the backend {ctx.policy.info.name} "
                "can neither render its chat template for raw text nor continue a final "
                f"assistant message{tried}"
            )
        verifier = None
        if self.verifier is not None and ctx.verifiers is not None:
            # refused before the first step is written: nothing is spent on a search that
            # could score none of its steps
            verifier = ctx.verifiers.process(self.verifier)
        self._setup = _Setup(
            problem,
            ctx.policy,
            ctx.prompting,
            ctx.answer_with,
            ctx.verifiers,
            head,
            messages,
            [self.boundary, *ctx.prompting.stop],
            verifier,
        )
        return self._setup

    async def request(
        self,
        ctx: Context,
        problem: Problem,
        tree: Tree,
        node: Node,
        n: int,
        temperature: float,
        seed: int | None = None,
    ) -> GenRequest:
        """Continue the node's text: after the rendered chat template as a raw prompt (the
        backend renders each conversation once and keeps it), or, on chat-only servers, as
        the final assistant message to continue."""
        setup = await self.setup(ctx, problem)
        text = tree.text(node)
        seed = ctx.next_seed() if seed is None else seed
        prompt, messages, continue_final = None, None, False
        if setup.head is not None:
            prompt = setup.head + text
        elif text:
            messages = [*setup.messages, Message(role="assistant", content=text)]
            continue_final = True
        else:
            messages = setup.messages
        return GenRequest(
            prompt=prompt,
            messages=messages,
            continue_final=continue_final,
            n=n,
            temperature=temperature,
            max_tokens=self.max_step_tokens,
            stop=setup.stop,
            seed=seed,
        )

    async def grow(
        self, ctx: Context, problem: Problem, tree: Tree, node: Node, n: int, temperature: float
    ) -> list[Node]:
        """Up to n children of `node`, each scored by the stepper's verifier.

        With a judge that continues the writer's own text (the self-judge), each child is
        written by its own request and judged right after on the same backend slot, held in
        between (`Context.pinned`), so the judge finds the child in that slot's prefix cache
        (llama.cpp keeps none per choice of an n > 1 request), and no child waits for its
        slowest sibling. Otherwise one request writes all n and they are judged together.

        On a backend whose slots are held (llama.cpp), the siblings take turns on one slot,
        each finding the parent's path in its cache, and spread to more slots only if those
        are spare when the node grows: a slot holds one sequence, so a sibling on a second
        slot evaluates the whole path again, which on a saturated CPU costs as much as
        writing it. Elsewhere (a server sharing one prefix cache) all n go at once."""
        if self.verifier is None:
            raise RuntimeError("this Stepper has no verifier to grow with")
        setup = await self.setup(ctx, problem)
        reuses_prefix = setup.verifier is not None and setup.verifier.reuses_candidate_prefix
        if not reuses_prefix or (n > 1 and not self.split):
            kids = await self.expand(ctx, problem, tree, node, n, temperature)
            await self.score(ctx, problem, tree, kids, self.verifier)
            return kids
        if n == 1:
            return await self.child(ctx, problem, tree, node, temperature, ctx.next_seed())
        # Plain loops: a generator or comprehension here would make this frame's locals
        # closure cells, and thousands of these frames are alive at once for the cyclic GC.
        seeds = []
        for _ in range(n):  # drawn in order, so runs repeat
            seeds.append(ctx.next_seed())
        if not ctx.policy.capabilities.pin_slots:
            children = []
            for seed in seeds:
                children.append(self.child(ctx, problem, tree, node, temperature, seed))
            grown = await asyncio.gather(*children)
            return [kid for kids in grown for kid in kids]
        # where the siblings run is the scheduler's call (Context.turns)
        probe = await self.request(ctx, problem, tree, node, 1, temperature, seeds[0])
        turns = await ctx.turns(probe, n)
        todo = deque(range(n))
        out: list[list[Node]] = [[] for _ in range(n)]
        writers = []
        for turn in turns:
            writers.append(self.siblings(turn, problem, tree, node, temperature, seeds, todo, out))
        await asyncio.gather(*writers)
        return [kid for kids in out for kid in kids]

    async def siblings(
        self,
        turn: AbstractContextManager[Context],
        problem: Problem,
        tree: Tree,
        node: Node,
        temperature: float,
        seeds: list[int],
        todo: deque[int],
        out: list[list[Node]],
    ) -> None:
        """Children of `node` one after another on one held slot, while any are left to
        write (`todo`: indices into `seeds`; each child goes to its index in `out`)."""
        with turn as held:
            while todo:
                i = todo.popleft()
                out[i] = await self.written(held, problem, tree, node, temperature, seeds[i])

    async def child(
        self, ctx: Context, problem: Problem, tree: Tree, node: Node, temperature: float, seed: int
    ) -> list[Node]:
        """One child of `node`, written and then judged on one backend slot, held in between
        (a method, not a closure: thousands are in flight at once, and closures' cells are
        objects the cyclic GC walks)."""
        with ctx.pinned() as held:
            return await self.written(held, problem, tree, node, temperature, seed)

    async def written(
        self, held: Context, problem: Problem, tree: Tree, node: Node, temperature: float, seed: int
    ) -> list[Node]:
        """One child of `node`, written and then judged through `held` (a slot held)."""
        kids = await self.expand(held, problem, tree, node, 1, temperature, seed)
        if kids:  # (`score` for one node, its checks made once in `setup`)
            setup = await self.setup(held, problem)
            await self.judge(held, problem, tree, kids[0], setup.verifier)
        return kids

    async def expand(
        self,
        ctx: Context,
        problem: Problem,
        tree: Tree,
        node: Node,
        n: int,
        temperature: float,
        seed: int | None = None,
    ) -> list[Node]:
        """Up to n children of `node` from one request (fewer if the budget affords fewer;
        none if it affords none), unscored."""
        req = await self.request(ctx, problem, tree, node, n, temperature, seed)
        affordable = ctx.affordable(req)
        if affordable == 0:
            return []
        if affordable < req.n:
            req = replace(req, n=affordable)
        gen = await ctx.generate(req)
        children = []
        for choice in gen.choices:
            step = choice.text.strip()
            terminal, note = False, None
            if not step:
                terminal, note = True, "the model stopped"
            elif last_boxed(step) is not None:
                terminal = True
            elif choice.finish_reason == "length":
                terminal = True
                note = f"no step boundary within {self.max_step_tokens} tokens"
            elif node.depth + 1 >= self.max_depth:
                terminal, note = True, f"depth limit {self.max_depth}"
            children.append(
                add_step(
                    tree,
                    node,
                    problem,
                    step,
                    tokens=choice.completion_tokens,
                    finish_reason=choice.finish_reason,
                    terminal=terminal,
                    note=note,
                )
            )
        if ctx.observer is not None:
            ctx.report("step", depth=node.depth + 1, new=len(children), nodes=len(tree.nodes) - 1)
        return children

    async def rollout(
        self, ctx: Context, problem: Problem, tree: Tree, node: Node, temperature: float
    ) -> Node | None:
        """The rest of the solution from `node`, written in one request (no step boundary), as
        a terminal child marked `rollout`; None when the budget affords none."""
        req = replace(
            await self.request(ctx, problem, tree, node, 1, temperature),
            stop=list(ctx.prompting.stop),
            max_tokens=ctx.prompting.max_tokens,
        )
        if ctx.affordable(req) == 0:
            return None
        (choice,) = (await ctx.generate(req)).choices
        rest = choice.text.strip()
        note = "rollout"
        if not rest:
            note = "rollout: the model stopped"
        elif choice.finish_reason == "length":
            note = f"rollout: cut at {ctx.prompting.max_tokens} tokens"
        return add_step(
            tree,
            node,
            problem,
            rest,
            tokens=choice.completion_tokens,
            finish_reason=choice.finish_reason,
            terminal=True,
            note=note,
            rollout=True,
        )

    async def score(
        self, ctx: Context, problem: Problem, tree: Tree, nodes: list[Node], spec: VerifierSpec
    ) -> None:
        """Score each node (its path's last step, given the steps before it) in place; a node
        without a score says why in its note. Nodes are scored concurrently."""
        if ctx.verifiers is None:
            raise RuntimeError("this Context has no verifiers")
        setup = await self.setup(ctx, problem)
        verifier = setup.verifier
        if spec is not self.verifier or verifier is None:
            verifier = ctx.verifiers.process(spec)
        if len(nodes) == 1:  # the common case (a child judged as written): no task to make
            await self.judge(ctx, problem, tree, nodes[0], verifier)
            return
        judged = []
        for node in nodes:  # (a loop, for the reason in `grow`)
            judged.append(self.judge(ctx, problem, tree, node, verifier))
        await asyncio.gather(*judged)

    async def judge(
        self, ctx: Context, problem: Problem, tree: Tree, node: Node, verifier: BuiltVerifier | None
    ) -> None:
        """One node's score, in place (or the reason it has none, in its note)."""
        steps = tree.steps(node)
        if not steps or not steps[-1]:
            node.note = node.note or "empty step: not scored"
            return
        if verifier is None:
            raise RuntimeError("this Stepper has no verifier to judge with")
        if verifier.last_step is not None:  # the ancestors were judged when they were made
            verdict = await verifier.last_step.score_last_step(problem, steps, ctx)
        else:
            assert verifier.process is not None  # (Verifiers.process checked it)
            verdict = (await verifier.process.score_steps(problem, steps, ctx))[-1]
        node.score = verdict.score
        if node.score is None:
            reason = verdict.reason or "no verdict"
            node.note = reason if node.note is None else f"{node.note}; {reason}"


def add_step(
    tree: Tree,
    parent: Node,
    problem: Problem,
    text: str,
    *,
    tokens: int,
    finish_reason: str,
    terminal: bool,
    note: str | None,
    rollout: bool = False,
) -> Node:
    """A step under `parent` (a terminal one with the answer its path gives)."""
    child = tree.add(
        parent,
        text,
        tokens=tokens,
        finish_reason=finish_reason,
        terminal=terminal,
        rollout=rollout,
        note=note,
    )
    if terminal:
        child.answer = answer_of(tree.text(child), problem.kind)
    return child


class StepSearch(Strategy):
    """What every step-level search is configured with: how long steps and paths may be, the
    sampling temperature, the process verifier, and how a path's step scores rank it."""

    capabilities: ClassVar[frozenset[str]] = frozenset({STEP, SCORED})
    max_steps: int = Field(
        default=12, ge=1, description="steps in a path at most", json_schema_extra=MULTIPLIES
    )
    max_step_tokens: int = Field(default=256, ge=1, description="tokens in one step at most")
    temperature: float = Field(default=0.7, ge=0.0, description="sampling temperature")
    verifier: VerifierSpec = Field(
        default_factory=lambda: VerifierSpec(steps=True),
        description="the process verifier that scores each new step",
    )
    path_score: str = Field(
        default="last",
        description="how a path ranks: its last step's score (a PRM's usual reading), or the "
        "min / prod / mean over its steps",
    )

    @field_validator("verifier", mode="before")
    @classmethod
    def _spec(cls, v: object) -> object:
        return VerifierSpec(name=v, steps=True) if isinstance(v, str) else v

    @field_validator("path_score")
    @classmethod
    def _known(cls, how: str) -> str:
        return check_aggregate(how, "path score")

    def thinking_unkept(self, prompting: Prompting) -> str | None:
        if prompting.think_budget is not None:  # steps continue raw text: no thinking loop
            return (
                f"strategy '{self.name}' writes its steps as raw text, where a thinking budget "
                "cannot be kept; use a sampling strategy (vote, best_of_n, …)"
            )
        return super().thinking_unkept(prompting)

    # How children reach the backend (see Stepper.grow), not what the search does: left out of
    # the config's identity, so stored runs stay comparable.
    split_children: bool = Field(default=True, exclude=True)

    def stepper(self) -> Stepper:
        return Stepper(
            max_step_tokens=self.max_step_tokens,
            max_depth=self.max_steps,
            verifier=self.verifier,
            split=self.split_children,
        )

    def score_of(self, tree: Tree, node: Node) -> float:
        if self.path_score == "last":  # (the default, read on every ranking: no path list)
            s = tree.last_score(node)
        else:
            s = aggregate([n.score for n in tree.path(node)], self.path_score)
        return -1.0 if s is None else s  # unscored paths rank below every scored one

    def finish(
        self, problem: Problem, ctx: Context, tree: Tree, finals: list[Node], stopped: str | None
    ) -> Result:
        """The best-scoring finished path answers (and is marked selected); every finished
        path is a candidate; the tree goes into the result as its trace."""
        ranked = sorted(finals, key=lambda n: -self.score_of(tree, n))
        if ranked:
            ranked[0].selected = True
        candidates = self.candidates(
            tree, ranked, lambda n: self.score_of(tree, n) if n.score is not None else None
        )
        answer = ranked[0].answer if ranked else None
        return ctx.result(problem, self, answer, candidates, stopped=stopped, tree=tree.records())

    def candidates(
        self, tree: Tree, nodes: list[Node], score: Callable[[Node], float | None]
    ) -> list[Candidate]:
        """Finished paths as candidates (text, answer, tokens along the path, score)."""
        return [
            Candidate(
                text=tree.text(n),
                answer=n.answer,
                completion_tokens=sum(p.tokens for p in tree.path(n)),
                finish_reason=n.finish_reason,
                score=score(n),
                note=n.note,
            )
            for n in nodes
        ]
