"""Checking arithmetic-puzzle answers (Game of 24, Countdown): the expression must use exactly
the given numbers, each once, with + - * / and parentheses, and equal the target exactly
(rational arithmetic, so 8/(3-8/3) counts)."""

from __future__ import annotations

import ast
import re
from collections import Counter
from fractions import Fraction

_OPS = {
    ast.Add: Fraction.__add__,
    ast.Sub: Fraction.__sub__,
    ast.Mult: Fraction.__mul__,
    ast.Div: Fraction.__truediv__,
}


def _latex_to_python(expr: str) -> str:
    e = expr.replace("\\times", "*").replace("×", "*").replace("\\cdot", "*").replace("÷", "/")
    e = e.replace("\\div", "/").replace("−", "-").replace("\\left", "").replace("\\right", "")
    while (nxt := re.sub(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"((\1)/(\2))", e)) != e:
        e = nxt  # innermost fractions first
    e = e.replace("{", "(").replace("}", ")").replace("[", "(").replace("]", ")")
    return e.strip().rstrip(".")


def _eval(node: ast.AST, used: list[int]) -> Fraction:
    if isinstance(node, ast.Expression):
        return _eval(node.body, used)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int)
        and not isinstance(node.value, bool)
    ):
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval(node.left, used), _eval(node.right, used)
        return _OPS[type(node.op)](left, right)
    raise ValueError(f"not allowed in a puzzle answer: {ast.dump(node)[:60]}")


def check_expression(answer: str, numbers: list[int], target: int) -> bool:
    """Whether `answer` (an expression, optionally followed by '= target') solves the puzzle."""
    expr = _latex_to_python(answer).split("=")[0]
    try:
        tree = ast.parse(expr, mode="eval")
        used: list[int] = []
        value = _eval(tree, used)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return False
    return Counter(used) == Counter(numbers) and value == target
