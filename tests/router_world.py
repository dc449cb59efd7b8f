"""A synthetic problem set whose difficulty is learnable from a probe, on the scripted backend:
easy problems (the samples agree on the right answer), contested ones (the right answer is a
plurality among many wrong ones: more samples help) and hopeless ones (the samples agree on
one wrong answer: more samples do not help). The kind shows in the question too (how many
numbers it has), as a real set's difficulty shows in its length."""

from __future__ import annotations

import random
from pathlib import Path

from helpers import scripted_engine
from ponder.bench.harness import Harness, plan
from ponder.bench.store import Store
from ponder.runtime.engine import Engine
from ponder.runtime.strategy import make_strategy
from ponder.types import AnswerWith, GenRequest, Problem

KINDS = ("easy", "contested", "hopeless")


def problems(count: int, start: int = 0) -> list[Problem]:
    out = []
    for i in range(start, start + count):
        kind = KINDS[i % 3]
        numbers = {"easy": 2, "contested": 6, "hopeless": 3}[kind]
        values = " and ".join(str(7 * i + j + 1) for j in range(numbers))
        out.append(
            Problem(
                id=f"world/{i}",
                question=f"Case {i} ({kind}): combine {values}. What is the total?",
                gold=str(1000 + i),
                kind="number",
            )
        )
    return out


def case_of(req: GenRequest) -> tuple[int, str, int]:
    """The case a request asks about: its number, its kind and its right answer."""
    text = req.input_text()
    case = int(text.split("Case ", 1)[1].split(" ", 1)[0])
    kind = text.split("Case ", 1)[1].split("(", 1)[1].split(")", 1)[0]
    return case, kind, 1000 + case


def reply(req: GenRequest, index: int, rng: random.Random) -> str:
    _, kind, right = case_of(req)
    roll = rng.random()
    if kind == "easy":
        answer = right if roll < 0.95 else rng.randrange(10)
    elif kind == "contested":
        answer = right if roll < 0.4 else right + 1 + rng.randrange(6)
    else:
        answer = right if roll < 0.03 else right + 50
    words = " ".join("step" for _ in range(20 + rng.randrange(10)))
    return f"{words} so the answer is \\boxed{{{answer}}}"


def engine() -> Engine:
    eng, _ = scripted_engine(reply)
    return eng


async def pool_store(
    path: Path,
    items: list[Problem],
    n: int = 16,
    task: str = "world",
    answer_with: AnswerWith = "reasoning",
) -> Path:
    """A store holding a pool of n samples per problem (answered with `answer_with`)."""
    store = Store(path)
    harness = Harness(engine(), store)
    (p,) = plan([make_strategy("vote", n=n, answer_with=answer_with)])
    await harness.execute(task, items, p, seed=0)
    store.close()
    return path
