"""Answer extraction v0: the last `\\boxed{}`, else the last number.

A full answer layer (math equivalence, choices, code) replaces this in its own issue; this one
is what voting keys on today, so it normalises numbers ("1,000", "$18.00", "18") to one key.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\$?\.\d+")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), with nested braces balanced."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None  # unbalanced: the model was cut off inside the box


def normalize_number(s: str) -> str | None:
    """'1,000' → '1000', '$18.00' → '18', '-0.50' → '-0.5'; None if `s` is not a number."""
    t = s.strip().replace(",", "").replace("\\$", "").replace("$", "").replace("\\!", "")
    t = re.sub(r"\\(?:text|mathrm)\{[^}]*\}", "", t).strip().rstrip(".").strip()
    t = t.removesuffix("%").removesuffix("\\%").strip()
    try:
        d = Decimal(t)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def extract_answer(text: str) -> str | None:
    """The answer a completion gives: its last boxed value, else its last number.
    Numbers are normalised so equal values share one voting key; None means no answer."""
    boxed = last_boxed(text)
    if boxed is not None:
        if not boxed:
            return None
        return normalize_number(boxed) or boxed
    numbers = _NUMBER.findall(text)
    for raw in reversed(numbers):
        if (num := normalize_number(raw)) is not None:
            return num
    return None


def gsm8k_gold(answer_field: str) -> str:
    """GSM8K's reference answer: the text after the last '####', commas removed."""
    if "####" not in answer_field:
        raise ValueError("GSM8K answer has no '####' line")
    gold = answer_field.rsplit("####", 1)[1].strip().replace(",", "")
    return normalize_number(gold) or gold
