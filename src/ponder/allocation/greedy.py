"""Spending one budget over many items where it buys the most: each item (a problem, or a
bucket of problems of one difficulty) has options of rising cost (1, 2, ... samples) and an
expected value (accuracy) for each; start every item at its cheapest option and buy upgrades
in order of value gained per unit of cost, along each item's upper concave hull, while they
fit. This is the exact optimum of the convex relaxation (the classic greedy for a
multiple-choice knapsack); it is what Snell et al.'s compute-optimal allocation does per
difficulty bucket."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np


def hull(costs: np.ndarray, values: np.ndarray) -> list[int]:
    """The options on the upper concave hull of (cost, value), from the cheapest option up,
    each dearer and more valuable than the last, with value per cost that never rises."""
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -values[i]))
    chain = [order[0]]
    for i in order[1:]:
        if values[i] <= values[chain[-1]] or costs[i] <= costs[chain[-1]]:
            continue
        while len(chain) >= 2:
            a, b = chain[-2], chain[-1]
            # b lies below the segment a → i: it is never worth stopping at (one on the
            # segment is kept: a budget that cannot reach i may still reach b)
            left = (values[b] - values[a]) * (costs[i] - costs[a])
            right = (values[i] - values[a]) * (costs[b] - costs[a])
            if left < right:
                chain.pop()
            else:
                break
        chain.append(i)
    return chain


def allocate(
    values: Sequence[np.ndarray],
    costs: Sequence[np.ndarray],
    budget: float,
    weights: Sequence[float] | None = None,
) -> tuple[list[int], float]:
    """The option chosen per item and the total cost, within `budget` when every item's
    cheapest option fits (else every item at its cheapest, over budget: nothing cheaper
    exists). `weights` count how many units each item stands for (problems in a bucket)."""
    w = [1.0] * len(values) if weights is None else list(weights)
    chains = [
        hull(np.asarray(c, float), np.asarray(v, float)) for v, c in zip(values, costs, strict=True)
    ]
    at = [0] * len(chains)  # position along each chain
    spent = sum(float(costs[i][ch[0]]) * w[i] for i, ch in enumerate(chains))
    heap: list[tuple[float, int]] = []

    def push(i: int) -> None:
        ch, j = chains[i], at[i]
        if j + 1 < len(ch):
            a, b = ch[j], ch[j + 1]
            slope = (values[i][b] - values[i][a]) / (costs[i][b] - costs[i][a])
            heapq.heappush(heap, (-float(slope), i))

    for i in range(len(chains)):
        push(i)
    while heap:
        _, i = heapq.heappop(heap)
        ch, j = chains[i], at[i]
        step = (float(costs[i][ch[j + 1]]) - float(costs[i][ch[j]])) * w[i]
        if spent + step > budget * (1 + 1e-12):
            continue  # this item's next upgrade does not fit; a cheaper one elsewhere may
        spent += step
        at[i] = j + 1
        push(i)
    return [ch[j] for ch, j in zip(chains, at, strict=True)], spent
