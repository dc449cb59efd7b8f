"""Equivalence of answers and a canonical key per answer, so votes cluster equivalent answers.

`canonical` gives equal keys only to equivalent answers; `cluster` then also merges answers
whose keys differ but which math-verify proves equal (e.g. `0.333333` and `\\frac{1}{3}` under
its rounding), so a vote never splits one answer into two camps. No answer (`None`) is
equivalent to nothing, not even to another missing answer.
"""

from __future__ import annotations

import ast
import logging
import re
import threading
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from ponder.answers.extract import format_number, normalize_number

logging.getLogger("math_verify").setLevel(logging.CRITICAL)

# math-verify bounds parse/verify time with SIGALRM, which only the main thread may set.
_TIMEOUT_S = 5


def _timeout() -> int | None:
    return _TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=65536)
def _parse(latex: str) -> tuple[Any, ...]:
    from math_verify import parse

    text = latex if latex.lstrip().startswith("\\boxed") else f"\\boxed{{{latex}}}"
    try:
        return tuple(parse(text, parsing_timeout=_timeout()))
    except Exception:  # math-verify raises on some malformed LaTeX despite raise_on_error
        return ()


_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")


def _latex_key(latex: str) -> str:
    """A spelling-normalised LaTeX string: the key of last resort."""
    t = _TEXT_WRAP.sub(r"\1", latex)
    for a, b in (("\\left", ""), ("\\right", ""), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac")):
        t = t.replace(a, b)
    t = re.sub(r"\\[,!;: ]|\s+|\$", "", t).rstrip(".")
    return t.lower()


def _rational_key(value: Any) -> str | None:
    """'p/q' or a terminating decimal for a sympy number; None for anything else."""
    import sympy

    if isinstance(value, sympy.Rational):  # Integer is a Rational
        q = int(value.q)
        while q % 2 == 0 or q % 5 == 0:  # only 2s and 5s: a terminating decimal
            q //= 2 if q % 2 == 0 else 5
        if q == 1:
            return format_number(Decimal(int(value.p)) / Decimal(int(value.q)))
        return f"{int(value.p)}/{int(value.q)}"
    if isinstance(value, sympy.Float):
        try:
            return format_number(Decimal(str(value)).normalize())
        except InvalidOperation:
            return None
    return None


def _math_key(answer: str) -> str:
    num = normalize_number(answer, units=False)  # "3x" is not the number 3
    if num is not None:
        return num
    parsed = _parse(answer)
    if parsed:
        value = parsed[0]
        rational = _rational_key(value)
        if rational is not None:
            return rational
        if not isinstance(value, str):
            return "sympy:" + str(value)
    return "latex:" + _latex_key(answer)


def _code_key(code: str) -> str:
    try:
        return "ast:" + ast.dump(ast.parse(code))  # formatting and comments do not count
    except (SyntaxError, ValueError):
        return "src:" + "\n".join(
            line.rstrip() for line in code.strip().splitlines() if line.strip()
        )


def number_key(answer: str) -> str:
    return normalize_number(answer) or answer.strip()


def choice_key(answer: str) -> str:
    letters = re.sub(r"[\s,;()]|and", "", _TEXT_WRAP.sub(r"\1", answer)).upper()
    if letters and re.fullmatch(r"[A-Z]+", letters):
        return "".join(sorted(set(letters)))  # "A, C" and "CA" are one multiple answer
    return answer.strip().upper()


def code_key(code: str) -> str:
    return _code_key(code)


def math_key(answer: str) -> str:
    return _math_key(answer)


def math_equal(a: str, b: str) -> bool:
    """Whether math-verify proves two LaTeX answers equal (either direction)."""
    return _math_equal(a, b)


def _math_equal(a: str, b: str) -> bool:
    from math_verify import verify

    pa, pb = _parse(a), _parse(b)
    if not pa or not pb:
        return False
    try:
        t = _timeout()
        return bool(
            verify(list(pa), list(pb), timeout_seconds=t)
            or verify(list(pb), list(pa), timeout_seconds=t)
        )
    except Exception:
        return False
