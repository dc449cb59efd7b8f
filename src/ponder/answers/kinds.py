"""Answer kinds: how a final answer is read from a completion (`extract`), the key that makes
equivalent answers equal (`canonical`), and whether keys that differ may still be equal
(math-verify merges `0.5` and `\\frac12`). ponder's kinds — number, math, choice, code —
register here; other packages add kinds through the `ponder.answer_kinds` entry point group."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ponder.answers.equivalence import choice_key, code_key, math_equal, math_key, number_key
from ponder.answers.extract import (
    extract_answer,
    extract_choice,
    extract_code,
    extract_math,
    extract_number,
    stated_answer,
    stated_choice,
    stated_math,
    stated_number,
)
from ponder.plugins import Registry


@dataclass(frozen=True)
class AnswerKind:
    name: str
    extract: Callable[[str], str | None]  # the final answer in a completion, or None
    key: Callable[[str], str]  # equal keys: equivalent answers
    # keys that differ may still be equal answers (proved by math-verify)
    merge_by_math: bool = False
    # the answer only where the completion states it (\boxed{}, "the answer is …"), for
    # reading a sample's own answer; None: `extract` states already (a code block)
    stated: Callable[[str], str | None] | None = None


ANSWER_KINDS: Registry[AnswerKind] = Registry(
    "answer kind",
    "ponder.answer_kinds",
    ("ponder.answers.kinds",),
    is_part=lambda obj: isinstance(obj, AnswerKind),
    a_part="an AnswerKind",
)


def answer_kind(kind: AnswerKind, summary: str) -> AnswerKind:
    """Register `kind` under its name."""
    return ANSWER_KINDS.add(kind.name, kind, summary=summary)


answer_kind(
    AnswerKind("number", extract_number, number_key, stated=stated_number),
    "integers and decimals as models write them (commas, currency, units, percents)",
)
answer_kind(
    AnswerKind("math", extract_math, math_key, merge_by_math=True, stated=stated_math),
    "a LaTeX expression, usually the last \\boxed{} (equivalence by math-verify)",
)
answer_kind(
    AnswerKind("choice", extract_choice, choice_key, stated=stated_choice),
    "multiple-choice letters A–E",
)
answer_kind(AnswerKind("code", extract_code, code_key), "the last Python code block")


def extract(text: str, kind: str = "math") -> str | None:
    """The final answer of `kind` in a completion's text, or None if it gives none."""
    return ANSWER_KINDS.get(kind).obj.extract(text)


# How a sample's answer is read: "stated" (only an answer it states) since stop 47; runs
# stored before read any last number too. A bench store keys its runs by it, so a resumed
# run never mixes the two readings.
READING = "stated"


def read_answer(text: str, kind: str | None) -> tuple[str | None, str | None]:
    """(the answer a completion states, or None; what a looser reading of it would have
    taken when it states none — its last number, a letter in passing — or None). A sample
    votes with the first only: an answer it never stated is mostly noise (RESULTS.md,
    "stated.py")."""
    loose: Callable[[str], str | None]
    strict: Callable[[str], str | None]
    if kind is None:
        loose, strict = extract_answer, stated_answer
    else:
        part = ANSWER_KINDS.get(kind).obj
        loose, strict = part.extract, part.stated or part.extract
    answer = strict(text)
    return answer, (None if answer is not None else loose(text))


def canonical(answer: str | None, kind: str = "math") -> str | None:
    """One key per equivalence class: equal keys mean equivalent answers. None stays None."""
    part = ANSWER_KINDS.get(kind).obj
    if answer is None or not answer.strip():
        return None
    return part.key(answer)


def equivalent(a: str | None, b: str | None, kind: str = "math") -> bool:
    """Whether two answers are the same answer. Symmetric; None is equivalent to nothing."""
    ka, kb = canonical(a, kind), canonical(b, kind)
    if ka is None or kb is None:
        return False
    if ka == kb:
        return True
    if a is None or b is None or not ANSWER_KINDS.get(kind).obj.merge_by_math:
        return False
    return math_equal(a, b)


def cluster(answers: Sequence[str | None], kind: str = "math") -> list[int | None]:
    """A cluster number per answer (first-seen order; None for no answer). Equal keys share a
    cluster at once; different keys are merged when math-verify proves them equal."""
    merge = ANSWER_KINDS.get(kind).obj.merge_by_math
    keys = [canonical(a, kind) for a in answers]
    reps: list[tuple[str, str]] = []  # (key, answer) of each cluster's first member
    by_key: dict[str, int] = {}
    out: list[int | None] = []
    for answer, key in zip(answers, keys, strict=True):
        if key is None or answer is None:
            out.append(None)
            continue
        if key not in by_key:
            match = next(
                (i for i, (_, rep) in enumerate(reps) if merge and math_equal(rep, answer)),
                None,
            )
            if match is None:
                match = len(reps)
                reps.append((key, answer))
            by_key[key] = match
        out.append(by_key[key])
    return out
