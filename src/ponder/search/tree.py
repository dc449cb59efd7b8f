"""The search tree that step-level strategies share: what the world is, apart from how a
strategy searches it (in the spirit of llm-reasoners' world model / search split).

A node is a partial solution: the steps on the path from the root. The root is the bare
question. Every node records how it was made (tokens, finish reason), what the process verifier
said (score, or the reason there is none), whether it ends the solution, and whether the search
selected it, so the tree is the trace. Preference pairs for step-level training (Step-DPO,
MCTS-DPO) come from siblings: the same prefix, one step on a better path, one on a worse.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any

STEP_SEPARATOR = "\n\n"  # steps end at a blank line unless a strategy says otherwise


@dataclass(slots=True)
class Node:
    id: int
    parent: int | None
    step: str  # this step's text ("" at the root)
    depth: int
    tokens: int = 0  # completion tokens spent writing this step
    finish_reason: str = "stop"
    terminal: bool = False  # the solution ends here
    answer: str | None = None  # the final answer, on terminal nodes that have one
    score: float | None = None  # the process verifier's score of the path to here
    note: str | None = None  # why unscored, or why terminal (e.g. "no step boundary")
    selected: bool = False  # kept by the search (beam survivor, resampled particle, ...)
    rollout: bool = False  # the rest of a solution written in one go to value a node (MCTS)
    visits: int = 0  # MCTS statistics
    value_sum: float = 0.0
    # child ids: a tuple of ints, which the cyclic GC does not track (a list would be)
    children: tuple[int, ...] = ()

    @property
    def value(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0


_NODE_FIELDS = tuple(f.name for f in fields(Node))
_node_values = attrgetter(*_NODE_FIELDS)


class Tree:
    """Nodes by id, grown from a root; a node's steps are read off its path."""

    def __init__(self, question: str, separator: str = STEP_SEPARATOR) -> None:
        self.question = question
        self.separator = separator
        self.nodes: list[Node] = [Node(id=0, parent=None, step="", depth=0)]
        # each node's steps, and those joined, by id (made once: every request and judgement
        # reads them; tuples of strings, which the cyclic GC stops tracking)
        self._steps: list[tuple[str, ...]] = [()]
        self._bodies: list[str] = [""]

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def add(self, parent: Node, step: str, **fields: Any) -> Node:
        node = Node(
            id=len(self.nodes), parent=parent.id, step=step, depth=parent.depth + 1, **fields
        )
        self.nodes.append(node)
        parent.children += (node.id,)
        self._steps.append((*self._steps[parent.id], step))
        self._bodies.append(self._body_of(parent, step))
        return node

    def _body_of(self, parent: Node, step: str) -> str:
        """The text of the path that `step` ends, under `parent`."""
        if parent.parent is None:
            return step
        return f"{self._bodies[parent.id]}{self.separator}{step}"

    def path(self, node: Node) -> list[Node]:
        """Root (excluded) to `node` (included)."""
        out: list[Node] = []
        current: Node | None = node
        while current is not None and current.parent is not None:
            out.append(current)
            current = self.nodes[current.parent]
        return out[::-1]

    def steps(self, node: Node) -> tuple[str, ...]:
        """The steps on the path to `node`, root excluded."""
        return self._steps[node.id]

    def last_score(self, node: Node) -> float | None:
        """The score of the deepest scored node on the path to `node` (None if none is)."""
        current = node
        while current.parent is not None:
            if current.score is not None:
                return current.score
            current = self.nodes[current.parent]
        return None

    def text(self, node: Node) -> str:
        """The partial solution at `node`, as the policy wrote it: steps joined by the
        separator, ending with one when more steps are to follow."""
        body = self._bodies[node.id]
        return body if node.terminal or not body else body + self.separator

    def children(self, node: Node) -> list[Node]:
        return [self.nodes[i] for i in node.children]

    def leaves(self) -> Iterator[Node]:
        return (n for n in self.nodes if not n.children and n.parent is not None)

    def terminals(self) -> Iterator[Node]:
        return (n for n in self.nodes if n.terminal)

    def tokens(self) -> int:
        return sum(n.tokens for n in self.nodes)

    def records(self) -> list[dict[str, Any]]:
        """One plain dict per node (a trace keeps them)."""
        # a shallow copy per node (asdict's deep recursion dominated large searches' cost)
        out = []
        for n in self.nodes:
            record = dict(zip(_NODE_FIELDS, _node_values(n), strict=True))
            record["children"] = list(n.children)
            out.append(record)
        return out

    @classmethod
    def from_records(
        cls, question: str, records: list[dict[str, Any]], separator: str = STEP_SEPARATOR
    ) -> Tree:
        """The tree a trace recorded (node ids are list positions)."""
        tree = cls(question, separator)
        tree.nodes = [Node(**{**r, "children": tuple(r.get("children", ()))}) for r in records]
        if any(n.id != i for i, n in enumerate(tree.nodes)) or tree.nodes[0].parent is not None:
            raise ValueError("trace nodes must be in id order, starting at the root")
        if any(n.parent is not None and n.parent >= n.id for n in tree.nodes):
            raise ValueError("a trace node must come after its parent")
        tree._steps, tree._bodies = [], []
        for n in tree.nodes:
            if n.parent is None:
                tree._steps.append(())
                tree._bodies.append("")
            else:
                tree._steps.append((*tree._steps[n.parent], n.step))
                tree._bodies.append(tree._body_of(tree.nodes[n.parent], n.step))
        return tree


def outcome_below(tree: Tree, node: Node, correct: dict[int, bool]) -> bool | None:
    """Whether some terminal node under `node` (or `node` itself) is known correct; None when
    nothing below it has a known outcome. `correct` maps terminal node ids to gold outcomes."""
    stack = [node]
    seen = False
    while stack:
        n = stack.pop()
        if n.id in correct:
            if correct[n.id]:
                return True
            seen = True
        stack.extend(tree.children(n))
    return False if seen else None


def preference_pairs(
    tree: Tree, correct: dict[int, bool] | None = None, *, min_margin: float = 0.0
) -> list[dict[str, Any]]:
    """Step-level pairs from siblings: the same prefix, a chosen step and a rejected one.

    A sibling is *better* when its subtree reaches a correct answer and the other's does not
    (when gold outcomes are known), else when its process score is higher by more than
    `min_margin`. Each pair carries both scores and outcomes, so training code can filter."""
    correct = correct or {}
    pairs: list[dict[str, Any]] = []
    for parent in tree.nodes:
        kids = tree.children(parent)
        for a in kids:
            for b in kids:
                if a.id >= b.id:
                    continue
                ra, rb = outcome_below(tree, a, correct), outcome_below(tree, b, correct)
                if ra is not None and rb is not None and ra != rb:
                    chosen, rejected = (a, b) if ra else (b, a)
                    basis = "outcome"
                elif a.score is not None and b.score is not None:
                    if abs(a.score - b.score) <= min_margin:
                        continue
                    chosen, rejected = (a, b) if a.score > b.score else (b, a)
                    basis = "score"
                else:
                    continue
                pairs.append(
                    {
                        "prompt": tree.question,
                        "prefix": tree.text(parent),
                        "chosen": chosen.step,
                        "rejected": rejected.step,
                        "chosen_score": chosen.score,
                        "rejected_score": rejected.score,
                        "chosen_correct": outcome_below(tree, chosen, correct),
                        "rejected_correct": outcome_below(tree, rejected, correct),
                        "depth": parent.depth,
                        "basis": basis,
                        "nodes": [chosen.id, rejected.id],
                    }
                )
    return pairs
