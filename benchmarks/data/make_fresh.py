"""A small problem set that is in no public benchmark: multi-step word problems made from
templates with seeded random numbers (answers computed here, exactly). It checks that ponder's
prompts and graders are general, not tuned to GSM8K. Answers are written as JSON numbers, some
as floats such as 145.0, as user files often have them.

    python benchmarks/data/make_fresh.py > benchmarks/data/fresh-word-problems.jsonl
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

Template = Callable[[random.Random], tuple[str, int]]


def bakery(r: random.Random) -> tuple[str, int]:
    trays, per, sold = r.randint(3, 9), r.randint(6, 12), r.randint(5, 20)
    q = (
        f"A bakery bakes {trays} trays of rolls with {per} rolls on each tray. It sells {sold} "
        "rolls in the morning and half of the remaining rolls in the afternoon. How many rolls "
        "are left at closing?"
    )
    left = trays * per - sold
    if left % 2:
        return bakery(r)
    return q, left // 2


def cyclist(r: random.Random) -> tuple[str, int]:
    speed, hours, extra = r.randint(12, 25), r.randint(2, 5), r.randint(5, 30)
    q = (
        f"Mina cycles at {speed} km per hour for {hours} hours, then walks {extra} km more. "
        "How many kilometres does she travel in total?"
    )
    return q, speed * hours + extra


def discount(r: random.Random) -> tuple[str, int]:
    price = r.choice([40, 60, 80, 120, 150, 200, 250])
    pct = r.choice([10, 20, 25, 50])
    qty = r.randint(2, 6)
    q = (
        f"A jacket costs ${price}. During a sale every jacket is {pct}% off. How many dollars "
        f"do {qty} jackets cost in the sale?"
    )
    return q, qty * price * (100 - pct) // 100


def ages(r: random.Random) -> tuple[str, int]:
    son, gap, years = r.randint(4, 15), r.randint(20, 35), r.randint(2, 10)
    q = (
        f"Omar is {gap} years older than his son, who is {son} now. In {years} years, what "
        "will the sum of their ages be?"
    )
    return q, (son + years) + (son + gap + years)


def garden(r: random.Random) -> tuple[str, int]:
    rows, plants, eaten = r.randint(4, 12), r.randint(5, 15), r.randint(3, 9)
    q = (
        f"A garden has {rows} rows of {plants} tomato plants. Rabbits eat {eaten} plants, and "
        "each remaining plant gives 3 tomatoes. How many tomatoes are picked?"
    )
    return q, (rows * plants - eaten) * 3


def savings(r: random.Random) -> tuple[str, int]:
    weekly, weeks, spent = r.randint(5, 25), r.randint(4, 12), r.randint(10, 40)
    q = (
        f"Lena saves ${weekly} every week for {weeks} weeks, then spends ${spent} on a book "
        "and twice that amount on shoes. How many dollars does she have left?"
    )
    left = weekly * weeks - 3 * spent
    if left < 0:
        return savings(r)
    return q, left


def tank(r: random.Random) -> tuple[str, int]:
    cap, fill, leak, minutes = (
        r.randint(200, 600),
        r.randint(15, 30),
        r.randint(2, 8),
        r.randint(5, 12),
    )
    q = (
        f"A tank holds {cap} litres and starts empty. A pipe adds {fill} litres per minute "
        f"while a leak loses {leak} litres per minute. How many litres are in the tank after "
        f"{minutes} minutes?"
    )
    return q, min(cap, (fill - leak) * minutes)


def tickets(r: random.Random) -> tuple[str, int]:
    adult, child, a, c = r.randint(8, 20), r.randint(3, 7), r.randint(2, 5), r.randint(1, 6)
    q = (
        f"Museum tickets cost ${adult} for adults and ${child} for children. A group of {a} "
        f"adults and {c} children pays with a $200 bill. How much change do they get?"
    )
    change = 200 - (adult * a + child * c)
    if change < 0:
        return tickets(r)
    return q, change


TEMPLATES: list[Template] = [bakery, cyclist, discount, ages, garden, savings, tank, tickets]


def main(count: int = 40, seed: int = 2026) -> None:
    r = random.Random(seed)
    seen = set()
    i = 0
    while i < count:
        question, answer = TEMPLATES[i % len(TEMPLATES)](r)
        if question in seen:
            continue
        seen.add(question)
        # every third answer written as a float (145.0), as exported spreadsheets do
        value: float | int = float(answer) if i % 3 == 0 else answer
        print(json.dumps({"id": f"fresh-{i:02d}", "problem": question, "solution": value}))
        i += 1


if __name__ == "__main__":
    main()
