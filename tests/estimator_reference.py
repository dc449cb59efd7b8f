"""The scalar estimators over one pool: the reference the vectorized ones in
`ponder.bench.estimators` are tested against (brute force over every k-subset), and the rules
`vote`, `weighted_vote` and `best_of_n` are checked to pick as the strategies do.

- pass@k: the unbiased estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k).
- majority / weighted / best-of at k: the expected correctness of the rule on k samples drawn
  without replacement, in pool order; exact (every k-subset) when there are few subsets, else
  the mean over `draws` random subsets.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence

from ponder.verify.quality import best_index

# A selection rule: from the k chosen (answer key, score, correct) samples, whether the rule's
# pick is correct.
Rule = Callable[[Sequence[tuple[str | None, float | None, bool]]], bool]


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k samples drawn without replacement from n, c of them correct, is
    correct)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority(sample: Sequence[tuple[str | None, float | None, bool]]) -> bool:
    """Plurality over answer keys (None does not vote); a tie goes to the key seen first."""
    return _top(sample, lambda s: 1.0)


def weighted(sample: Sequence[tuple[str | None, float | None, bool]]) -> bool:
    """Highest summed score per answer key; unscored samples weigh 0. If no sample (with an
    answer or not) has a nonzero score it is a plain vote, as the weighted_vote strategy falls
    back."""
    if not any(s for _, s, _ in sample):
        return majority(sample)
    return _top(sample, lambda s: s or 0.0)


def best_of(sample: Sequence[tuple[str | None, float | None, bool]]) -> bool:
    """The top-scored sample (the earliest on ties), as `best_of_n` picks; with nothing scored,
    the first sample with an answer."""
    i = best_index([s for _, s, _ in sample])
    if i is None:
        return next((c for key, _, c in sample if key is not None), False)
    return sample[i][2]


def _top(
    sample: Sequence[tuple[str | None, float | None, bool]], weight: Callable[[float | None], float]
) -> bool:
    totals: dict[str, float] = {}
    right: dict[str, bool] = {}
    for key, score, correct in sample:
        if key is None:
            continue
        totals[key] = totals.get(key, 0.0) + weight(score)
        right.setdefault(key, correct)
    if not totals:
        return False
    top = max(totals.values())
    return right[next(k for k in totals if totals[k] == top)]


def at_k(
    pool: Sequence[tuple[str | None, float | None, bool]],
    k: int,
    rule: Rule,
    *,
    exact_limit: int = 5000,
    draws: int = 2000,
    seed: int = 0,
) -> float:
    """Expected correctness of `rule` on k samples drawn without replacement from `pool`, in
    pool order (so first-seen tie-breaks behave as in a real run of k samples)."""
    n = len(pool)
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= {n} (got k={k})")
    if math.comb(n, k) <= exact_limit:
        subsets = list(itertools.combinations(range(n), k))
        return sum(rule([pool[i] for i in s]) for s in subsets) / len(subsets)
    rng = random.Random(seed)
    hits = 0
    for _ in range(draws):
        chosen = sorted(rng.sample(range(n), k))
        hits += rule([pool[i] for i in chosen])
    return hits / draws
