"""Extraction: the final answer a completion gives, per answer kind.

Kinds: `number` (integers and decimals as models write them: commas, currency, units, percents,
negatives, scientific notation), `math` (a LaTeX expression, usually the last `\\boxed{}`),
`choice` (a multiple-choice letter A–E), `code` (the last Python code block). `None` means the
completion gives no answer of that kind: a first-class outcome, never an exception.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction


# -- boxes -------------------------------------------------------------------------------------
def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), with nested braces balanced."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"), text.rfind("\\boxed {"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text):
        ch = text[j]
        if ch == "\\":  # an escaped character (\{ is a literal brace): skip it
            j += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
        j += 1
    return None  # unbalanced: the model was cut off inside the box


# -- numbers -----------------------------------------------------------------------------------
_SCI = r"(?:\s*(?:[eE][-+]?\d+|(?:\\times|×|\*|x)\s*10\s*\^\s*\{?\s*[-+−]?\d+\s*\}?))?"
_NUMBER = re.compile(
    r"(?<![\w.])[-−]?\s?(?:\\?\$|€|£)?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
    + _SCI
    + r"|(?<![\w.])[-−]?\.\d+"
    + _SCI
)
_UNIT_WORDS = re.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{[^{}]*\}")


_FRACTION = re.compile(
    r"([-+]?\d+)\s*/\s*(\d+)|([-+]?)\\[dt]?frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}"
)


def _fraction_key(text: str) -> str | None:
    """'2/6' and '\\frac{1}{3}' → '1/3'; '1/4' → '0.25' (terminating decimals as decimals)."""
    m = _FRACTION.fullmatch(text.strip().replace("$", ""))
    if not m:
        return None
    if m.group(1) is not None:
        p, q = int(m.group(1)), int(m.group(2))
    else:
        p, q = int(m.group(3) + m.group(4)), int(m.group(5))
    if q == 0:
        return None
    f = Fraction(p, q)
    rest = f.denominator
    while rest % 2 == 0 or rest % 5 == 0:
        rest //= 2 if rest % 2 == 0 else 5
    if rest == 1:
        return format_number(Decimal(f.numerator) / Decimal(f.denominator))
    return f"{f.numerator}/{f.denominator}"


# (compiled once: a search extracts the answer of every finished path)
_ESCAPED_SIGN = re.compile(r"\\(\$|%)")
_UNIT_SUFFIX = {
    units: re.compile(r"\s*(?:%|percent|dollars?|cents?" + unit + r")$")
    for units, unit in ((True, r"|[a-zA-Z]{1,12}\.?"), (False, r"|\s[a-zA-Z]{2,12}\.?"))
}
_GROUPED = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_PLAIN_NUMBER = re.compile(
    r"([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?:[eE]([-+]?\d+)"
    r"|(?:\\times|×|\*|x|\\cdot)\s*10\s*\^\s*\{?\s*([-+]?\d+)\s*\}?)?"
)


def _decimal(text: str, units: bool = True) -> Decimal | None:
    t = text.strip().replace("−", "-").replace("\\!", "").replace("\\,", "").replace("{,}", "")
    t = _UNIT_WORDS.sub("", t)
    t = _ESCAPED_SIGN.sub(r"\1", t)
    t = t.replace("$", "").replace("€", "").replace("£", "").strip()
    t = _UNIT_SUFFIX[units].sub("", t).strip()
    t = t.rstrip(".").strip()
    if _GROUPED.fullmatch(t):
        t = t.replace(",", "")
    m = _PLAIN_NUMBER.fullmatch(t)
    if not m:
        return None
    try:
        value = Decimal(m.group(1))
        exponent = m.group(2) or m.group(3)
        if exponent is not None:
            value = value.scaleb(int(exponent))
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def format_number(value: Decimal) -> str:
    """One spelling per value: '1000', '-0.5', '0.001' (never '1E+3' or '18.00')."""
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def normalize_number(text: str, units: bool = True) -> str | None:
    """'1,000' → '1000', '$18.00' → '18', '-0.50' → '-0.5', '1.5e3' → '1500', '25%' → '25';
    None if `text` is not a single number."""
    value = _decimal(text, units)
    if value is None:
        return _fraction_key(text)
    return format_number(value)


def extract_number(text: str) -> str | None:
    boxed = last_boxed(text)
    if boxed is not None:
        if (num := normalize_number(boxed)) is not None:
            return num
        # A box holding an expression ("3 + 4 = 7"): its last number is the answer.
        numbers = _NUMBER.findall(boxed)
        return normalize_number(numbers[-1]) if numbers else None
    for raw in reversed(_NUMBER.findall(text)):
        if (num := normalize_number(raw)) is not None:
            return num
    return None


# A number stated as the answer without a box: "the answer is 18", "Answer: $18", "#### 18".
_STATED_NUMBER = re.compile(
    r"(?:\banswer\s*(?:is|:)|####)\s*[:\s]*\**\s*\$?\s*(-?[\d,]*\.?\d+(?:/\d+)?)", re.IGNORECASE
)


def stated_number(text: str) -> str | None:
    """The number a completion states as its answer (\\boxed{}, else "the answer is N" or
    "#### N"); None where it only mentions numbers. The last number of a text that states
    none is right about 3% of the time on GSM8K with the 0.5B model (23% for boxed answers):
    a vote is better off without it (benchmarks/RESULTS.md, "stated.py")."""
    if last_boxed(text) is not None:
        return extract_number(text)
    found = _STATED_NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


# -- LaTeX math --------------------------------------------------------------------------------
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer)\s*(?:is|:)\s*[:\s]*\$?([^\n$]+?)\$?\s*(?:\.\s*)?$",
    re.IGNORECASE | re.MULTILINE,
)


def extract_math(text: str) -> str | None:
    return stated_math(text) or extract_number(text)


def stated_math(text: str) -> str | None:
    """The expression a completion states as its answer (\\boxed{}, else "the answer is …",
    else a number stated so); None where it states none (`extract_math` then takes its last
    number)."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed or None
    found = _ANSWER_IS.findall(text)
    if found:
        return found[-1].strip() or None
    return stated_number(text)


# -- multiple choice ---------------------------------------------------------------------------
_LETTER = r"([A-E])"
_CHOICE_PATTERNS = [
    re.compile(r"\\boxed\s*\{\s*(?:\\text\s*\{\s*)?\(?" + _LETTER + r"\)?"),
    re.compile(
        r"(?:answer|option|choice)\s*(?:is|:)?\s*(?:option|choice)?\s*[:\s]*\**\s*[\(\[]?"
        + _LETTER
        + r"(?![a-zA-Z])",
        re.IGNORECASE,
    ),
    re.compile(r"\*\*\s*\(?" + _LETTER + r"[\).:]?\s*\*\*"),
    re.compile(r"\(" + _LETTER + r"\)"),
    re.compile(r"(?m)^\s*" + _LETTER + r"[\).:](?:\s|$)"),
    re.compile(r"(?m)^\s*" + _LETTER + r"\s*$"),
]
_STATED_CHOICES = 3  # the patterns above that state the choice (boxed, "answer is", bold)


def extract_choice(text: str) -> str | None:
    """The letter a completion picks, trying the most explicit formats first and taking the
    last match of the first format that matches. A box holding only letters ("\\boxed{A, C}")
    is a multiple-answer choice: its letters, sorted."""
    return _choice(text, _CHOICE_PATTERNS)


def stated_choice(text: str) -> str | None:
    """The letter a completion states as its answer (boxed, "the answer is (B)", bold);
    None where a letter only appears ("(B)" in passing, a line "B.")."""
    return _choice(text, _CHOICE_PATTERNS[:_STATED_CHOICES])


def _choice(text: str, patterns: list[re.Pattern[str]]) -> str | None:
    boxed = last_boxed(text)
    if boxed is not None:
        inner = re.sub(r"\\text\s*\{([^{}]*)\}", r"\1", boxed)
        letters = re.sub(r"[\s,;()]|and", "", inner)
        if letters and re.fullmatch(r"[A-Ea-e]+", letters):
            return "".join(sorted(set(letters.upper())))
    for pattern in patterns:
        found = pattern.findall(text)
        if found:
            return str(found[-1]).upper()
    return None


# -- code --------------------------------------------------------------------------------------
_CODE_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL)


def code_blocks(text: str) -> list[str]:
    """Every fenced code block's body (a final unclosed one too: the stop string cut it)."""
    return [b.strip("\n") for b in _CODE_BLOCK.findall(text) if b.strip()]


def extract_code(text: str) -> str | None:
    """The last non-empty Python code block (the finished program); None without one."""
    blocks = code_blocks(text)
    return blocks[-1] if blocks else None


def extract_answer(text: str) -> str | None:  # (the kind-free default; see answers.kinds)
    """The engine's default: the last boxed value (a number normalised), else the last
    number in the text."""
    boxed = last_boxed(text)
    if boxed is not None:
        if not boxed:
            return None
        return normalize_number(boxed) or boxed
    return extract_number(text)


def stated_answer(text: str) -> str | None:
    """`extract_answer` where the text states its answer (\\boxed{}, "the answer is N");
    None where it only mentions numbers."""
    if last_boxed(text) is not None:
        return extract_answer(text)
    return stated_number(text)


def gsm8k_gold(answer_field: str) -> str:
    """GSM8K's reference answer: the text after the last '####', commas removed."""
    if "####" not in answer_field:
        raise ValueError("GSM8K answer has no '####' line")
    gold = answer_field.rsplit("####", 1)[1].strip().replace(",", "")
    return normalize_number(gold) or gold
