"""The router, offline: what every arm (a strategy and its n, run after a probe) would have
got and spent on each stored problem, a router fitted to that (scikit-learn), and how it does
on problems it never saw against fixed strategies and against Snell et al.'s
difficulty-bucket allocation.

Everything comes from one pool of samples per problem (`ponder bench TASK -s vote -n 16`): the
pool in a random order stands for the samples a live run draws, so the probe is the order's
first m samples, vote@k is the vote over its first k, and an adaptive rule continues from the
probe as the live `auto` strategy runs it (ponder.consensus rules, waves of samples that
finish in order of length). Each problem is read in `orders` random orders (the stored one
first), so one pool gives many probes per problem; problems, not orders, are what the folds,
the bootstrap and the train/test split are drawn over.

Costs are generated (completion) tokens, probe included.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ponder.allocation import (
    BUCKETS,
    FEATURES,
    Arm,
    Linear,
    Probe,
    RouterError,
    RouterModel,
    Training,
    allocate,
    bucket_of,
    features,
    fingerprint,
    hull,
)
from ponder.bench.analysis import Group, auroc, direct_outcomes, load_groups
from ponder.bench.confidence import load_signals
from ponder.bench.estimators import bootstrap_mean_ci
from ponder.bench.store import Store
from ponder.consensus import (
    ESC,
    Agreement,
    BetaStop,
    Observation,
    PriceStop,
    StoppingRule,
    WeightedConsensus,
    replay,
)
from ponder.errors import UsageError, no_file
from ponder.tasks.registry import level_number
from ponder.types import AnswerWith

MIN_PROBLEMS = 20  # training problems with a full pool, at least
PROBE = 4  # samples in the probe (the adaptive strategies' first wave)
ORDERS = 8  # random orders of each pool
WAVE = 4
# The price rule at three prices around its default, one sample at a time, as arms continuing
# from the probe: the router may choose per problem which price, where `auto` without a router
# has one price for every problem. The rule alone (from the first sample, as `auto` without a
# router runs it) is replayed beside the arms at the same prices (`Table.alone_*`), the
# baseline the router is set against (`Comparison.versus_rule`).
PRICE_ARMS = (2e-3, 7e-4, 2e-4)
# (label, strategy options, rule, wave) of the adaptive arms
ADAPTIVE: tuple[tuple[str, dict[str, Any], StoppingRule, int], ...] = (
    ("esc", {"rule": "esc"}, ESC(window=4), WAVE),
    ("beta", {"rule": "beta"}, BetaStop(), WAVE),
    ("agreement", {"rule": "agreement"}, Agreement(), WAVE),
    ("weighted", {"rule": "weighted", "signal": "tail"}, WeightedConsensus(), WAVE),
    *(
        (f"price={p:g}", {"rule": "price", "price": p, "fill": False}, PriceStop(price=p), 1)
        for p in PRICE_ARMS
    ),
)


def sklearn_missing() -> UsageError:
    return UsageError(
        "fitting a router needs scikit-learn: pip install 'ponder[router]' "
        "(using a fitted router does not)"
    )


@dataclass
class ArmSpec:
    name: str
    strategy: str
    options: dict[str, Any]


@dataclass
class Table:
    """What each arm gets and spends on each problem, read in `orders` orders of its pool."""

    task: str
    model: str
    pool: str
    stores: list[str]
    pool_size: int
    answer_with: AnswerWith  # how the pool's samples answer (reasoning, tir, ...): the probe's too
    probe: int
    temperature: float
    ids: list[str]  # problem ids
    questions: list[str]
    rate: np.ndarray  # (P,) share of the pool's samples that are right: oracle difficulty
    x: np.ndarray  # (P, R, F) features
    probe_tokens: np.ndarray  # (P, R)
    probe_length: np.ndarray  # (P, R) mean tokens per probe sample
    arms: list[ArmSpec]
    correct: np.ndarray  # (P, R, A) 1.0 right, 0.0 wrong (a direct arm: its mean over seeds)
    tokens: np.ndarray  # (P, R, A) generated tokens, probe included
    vote_correct: np.ndarray  # (P, R, n) the vote over the order's first k samples, k = 1..n
    vote_tokens: np.ndarray  # (P, R, n)
    # the price rule alone at each of PRICE_ARMS (from the first sample, no probe): (P, R, K)
    alone_correct: np.ndarray
    alone_tokens: np.ndarray
    dropped: int = 0  # problems left out (a pool smaller than pool_size)
    # each problem's difficulty as the data set gives it (MATH's level 1-5), where it does
    levels: list[int | None] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray) -> Table:
        """The table of some problems (by row)."""
        return Table(
            task=self.task,
            model=self.model,
            pool=self.pool,
            stores=self.stores,
            pool_size=self.pool_size,
            answer_with=self.answer_with,
            probe=self.probe,
            temperature=self.temperature,
            ids=[self.ids[i] for i in rows],
            questions=[self.questions[i] for i in rows],
            rate=self.rate[rows],
            x=self.x[rows],
            probe_tokens=self.probe_tokens[rows],
            probe_length=self.probe_length[rows],
            arms=self.arms,
            correct=self.correct[rows],
            tokens=self.tokens[rows],
            vote_correct=self.vote_correct[rows],
            vote_tokens=self.vote_tokens[rows],
            alone_correct=self.alone_correct[rows],
            alone_tokens=self.alone_tokens[rows],
            levels=[self.levels[i] for i in rows] if self.levels else [],
        )


def vote_prefixes(classes: Sequence[int | None], correct: Sequence[bool]) -> np.ndarray:
    """The plain vote's correctness over the first k samples, for every k (ties: first seen)."""
    counts: dict[int, int] = {}
    first: dict[int, int] = {}
    right = {c for c, ok in zip(classes, correct, strict=True) if ok and c is not None}
    out = np.zeros(len(classes))
    lead: int | None = None
    for j, c in enumerate(classes):
        if c is not None:
            counts[c] = counts.get(c, 0) + 1
            first.setdefault(c, j)
            if lead is None or (counts[c], -first[c]) > (counts[lead], -first[lead]):
                lead = c
        out[j] = float(lead is not None and lead in right)
    return out


def continued(
    rule: StoppingRule, pool: Sequence[Observation], probe: int, budget: int, wave: int
) -> tuple[int | None, int, int]:
    """A stopping rule continuing from a probe, as `auto` runs it live: the probe's `probe`
    samples finish first (all of them), then the rule decides; then waves of at most `wave`
    samples, each finishing in order of length, the rule asked after each, the rest of the
    wave charged what it wrote until the one that settled it. (answer, samples, tokens)."""
    finished = list(pool[:probe])
    tokens = sum(o.tokens for o in finished)
    launched = probe
    decision = rule.decide(finished, budget)
    while not decision.stop:
        size = rule.next_wave(finished, budget, wave)
        batch = list(pool[launched : launched + size])
        launched += len(batch)
        if not batch:
            break
        batch.sort(key=lambda o: o.tokens)
        for j, o in enumerate(batch):
            finished.append(o)
            tokens += o.tokens
            decision = rule.decide(finished, budget)
            if decision.stop:
                tokens += sum(min(r.tokens, o.tokens) for r in batch[j + 1 :])
                break
    return decision.leader, launched, tokens


def vote_ks(probe: int, n: int) -> list[int]:
    """The vote arms' sample counts: the probe alone, then 1.5× and 2× steps up to the pool."""
    ks = {probe, n}
    k = probe
    while k < n:
        for step in (k + k // 2, 2 * k):
            if step <= n:
                ks.add(step)
        k *= 2
    return sorted(ks)


def build_table(
    stores: Sequence[Path | str],
    *,
    task: str | None = None,
    probe: int = PROBE,
    orders: int = ORDERS,
    direct: bool = True,
    seed: int = 0,
    answer_with: AnswerWith | None = None,
    restate: bool = False,
) -> Table:
    """The table of the largest unscored pool in the stores (one task and model; with
    `answer_with`, of samples answered that way; with `restate`, read as today), with the
    direct runs of the same task and model as arms too (cost: the probe plus the run)."""
    if probe < 1 or orders < 1:
        raise UsageError(f"probe ({probe}) and orders ({orders}) must be at least 1")
    tables = [
        _table_of(Path(s), task, probe, orders, direct, seed, answer_with, restate) for s in stores
    ]
    if len(tables) == 1:
        return tables[0]
    first = tables[0]
    for t in tables[1:]:
        if (t.model, t.pool_size, t.answer_with, [a.name for a in t.arms]) != (
            first.model,
            first.pool_size,
            first.answer_with,
            [a.name for a in first.arms],
        ):
            raise UsageError(
                "the stores hold different models, pool sizes, answer modes or arms: fit on "
                "one kind of pool (--answer-with picks the mode)"
            )
    cat = {
        name: np.concatenate([getattr(t, name) for t in tables])
        for name in (
            "rate",
            "x",
            "probe_tokens",
            "probe_length",
            "correct",
            "tokens",
            "vote_correct",
            "vote_tokens",
            "alone_correct",
            "alone_tokens",
        )
    }
    return Table(
        task="+".join(dict.fromkeys(t.task for t in tables)),
        model=first.model,
        pool=first.pool,
        stores=[s for t in tables for s in t.stores],
        pool_size=first.pool_size,
        answer_with=first.answer_with,
        probe=probe,
        temperature=first.temperature,
        ids=[i for t in tables for i in t.ids],
        questions=[q for t in tables for q in t.questions],
        arms=first.arms,
        dropped=sum(t.dropped for t in tables),
        levels=[v for t in tables for v in t.levels] if all(t.levels for t in tables) else [],
        **cat,
    )


@contextmanager
def opened_pool(
    path: Path, task: str | None, answer_with: AnswerWith | None, *, restate: bool = False
) -> Iterator[tuple[Store, list[Group], Group]]:
    """A store, open while in use, with its groups (of `task`, where given; with `restate`,
    pools read as today, `load_groups`) and its `largest_pool`."""
    if not path.is_file():
        raise UsageError(no_file(path, "store"))
    store = Store(path, readonly=True)
    try:
        every = load_groups(store, restate=restate)
        groups = [g for g in every if task is None or g.task == task]
        if task is not None and not groups:  # a task the store never ran: name those it did
            ran = sorted({g.task for g in every})
            raise UsageError(
                f"{path}: no runs of task '{task}' (--task; this store has: "
                f"{', '.join(ran) or 'no runs'})"
            )
        yield store, groups, largest_pool(path, groups, task, answer_with)
    finally:
        store.close()


def largest_pool(
    path: Path, groups: list[Group], task: str | None, answer_with: AnswerWith | None
) -> Group:
    """The pool a router is fitted on or judged with: the largest unscored pool of samples
    (answered `answer_with`, where given) that is not a workload's."""
    candidates = [
        g
        for g in groups
        if g.kind == "pool"
        and not g.config.get("workload")
        and (answer_with is None or g.answer_with == answer_with)
    ]
    # a scored pool's samples serve as well (its scores unused), if there is no other
    pools = [g for g in candidates if not g.scored] or candidates
    if not pools:
        where = f" for task '{task}'" if task else ""
        mode = f" answered with {answer_with}" if answer_with else ""
        flag = f" --answer-with {answer_with}" if answer_with else ""
        raise UsageError(
            f"{path}: no pool of samples{where}{mode} to fit from (bench one: "
            f"`ponder bench TASK --split train -s vote -n 16{flag} --store STORE`)"
        )
    return max(pools, key=lambda g: (int(g.sizes.max()), len(g.pids)))


def _table_of(
    path: Path,
    task: str | None,
    probe: int,
    orders: int,
    direct: bool,
    seed: int,
    answer_with: AnswerWith | None,
    restate: bool = False,
) -> Table:
    with opened_pool(path, task, answer_with, restate=restate) as (store, groups, g):
        n = int(g.sizes.max())
        if n <= probe:
            raise UsageError(
                f"{path}: pools of {n} samples leave nothing after a probe of {probe}: "
                f"bench a larger pool (-n 16)"
            )
        return pool_table(store, g, groups, probe=probe, orders=orders, direct=direct, seed=seed)


def pool_table(
    store: Store,
    g: Group,
    groups: list[Group],
    *,
    probe: int = PROBE,
    orders: int = ORDERS,
    direct: bool = True,
    seed: int = 0,
) -> Table:
    """The table of one pooled group of an open store (`groups`: the store's others, whose
    direct runs of the same task and model become arms)."""
    n = int(g.sizes.max())
    return _pool_table(store, store.path, g, groups, n, probe, orders, direct, seed)


def _pool_table(
    store: Store,
    path: Path,
    g: Group,
    groups: list[Group],
    n: int,
    probe: int,
    orders: int,
    direct: bool,
    seed: int,
) -> Table:
    signals = load_signals(store, g)
    full = np.flatnonzero(g.sizes >= n)
    meta = {
        int(pid): (pid_text, question, level_number(level))
        for pid, pid_text, question, level in store.db.execute(
            "SELECT pid, problem_id, question, level FROM problems"
        )
    }
    arms = [ArmSpec(f"vote@{k}", "vote", {"n": k}) for k in vote_ks(probe, n)]
    arms += [
        ArmSpec(f"adaptive({label})@{n}", "adaptive", {**opts, "n": n, "wave": wave})
        for label, opts, _, wave in ADAPTIVE
    ]
    direct_arms: list[tuple[Group, dict[int, float], dict[int, float]]] = []
    if direct:
        for d in groups:
            if d.kind != "direct" or d.task != g.task or d.model != g.model:
                continue
            acc, gen = direct_outcomes(store, d)
            if all(int(g.pids[r]) in acc for r in full):
                direct_arms.append((d, acc, gen))
                unit = dict(d.config.get("unit", {}))
                name = unit.pop("name", d.label)
                arms.append(ArmSpec(d.label, str(name), unit))
    P, A = len(full), len(arms)
    F = len(FEATURES)
    x = np.zeros((P, orders, F))
    probe_tokens = np.zeros((P, orders))
    probe_length = np.zeros((P, orders))
    correct = np.zeros((P, orders, A))
    tokens = np.zeros((P, orders, A))
    vote_correct = np.zeros((P, orders, n))
    vote_tokens = np.zeros((P, orders, n))
    alone_correct = np.zeros((P, orders, len(PRICE_ARMS)))
    alone_tokens = np.zeros((P, orders, len(PRICE_ARMS)))
    rate = np.zeros(P)
    ks = [int(a.options["n"]) for a in arms if a.strategy == "vote"]
    ids, questions, levels = [], [], []
    temperature = float(g.config.get("unit", {}).get("temperature", 0.7))
    for i, r in enumerate(full):
        pid = int(g.pids[r])
        ids.append(meta[pid][0])
        questions.append(meta[pid][1])
        levels.append(meta[pid][2])
        cls = [None if int(c) < 0 else int(c) for c in g.classes[r, :n]]
        ok = [bool(c) for c in g.correct[r, :n]]
        length = [int(t) for t in signals.completion[r, :n]]
        sig = [
            {k: float(v[r, j]) for k, v in signals.signals.items() if math.isfinite(v[r, j])}
            or None
            for j in range(n)
        ]
        right = {c for c, o in zip(cls, ok, strict=True) if o and c is not None}
        rate[i] = sum(ok) / n
        rng = np.random.default_rng([seed, pid])
        for o in range(orders):
            order = np.arange(n) if o == 0 else rng.permutation(n)
            c_o = [cls[j] for j in order]
            ok_o = [ok[j] for j in order]
            t_o = np.array([length[j] for j in order], dtype=float)
            s_o = [sig[j] for j in order]
            pr = Probe(c_o[:probe], [int(t) for t in t_o[:probe]], s_o[:probe])
            x[i, o] = features(questions[-1], pr)
            spent = float(t_o[:probe].sum())
            probe_tokens[i, o] = spent
            probe_length[i, o] = spent / probe
            prefix = vote_prefixes(c_o, ok_o)
            cum = np.cumsum(t_o)
            vote_correct[i, o] = prefix
            vote_tokens[i, o] = cum
            a = 0
            for k in ks:
                correct[i, o, a] = prefix[k - 1]
                tokens[i, o, a] = cum[k - 1]
                a += 1
            obs = [
                Observation(c, int(t), None if s is None else s.get("tail"))
                for c, t, s in zip(c_o, t_o, s_o, strict=True)
            ]
            for k, price in enumerate(PRICE_ARMS):
                alone = replay(PriceStop(price=price), obs, n, 1)
                alone_correct[i, o, k] = float(alone.answer is not None and alone.answer in right)
                alone_tokens[i, o, k] = alone.tokens
            for _, _, rule, wave in ADAPTIVE:
                answer, _, spent_rule = continued(rule, obs, probe, n, wave)
                correct[i, o, a] = float(answer is not None and answer in right)
                tokens[i, o, a] = spent_rule
                a += 1
            for _, acc, gen in direct_arms:
                correct[i, o, a] = acc[pid]
                tokens[i, o, a] = spent + gen[pid]
                a += 1
    return Table(
        task=g.task,
        model=g.model,
        pool=g.label,
        stores=[str(path)],
        pool_size=n,
        answer_with=g.answer_with,
        probe=probe,
        temperature=temperature,
        ids=ids,
        questions=questions,
        rate=rate,
        x=x,
        probe_tokens=probe_tokens,
        probe_length=probe_length,
        arms=arms,
        correct=correct,
        tokens=tokens,
        vote_correct=vote_correct,
        vote_tokens=vote_tokens,
        alone_correct=alone_correct,
        alone_tokens=alone_tokens,
        dropped=len(g.pids) - P,
        levels=levels,
    )


# -- fitting ----------------------------------------------------------------------------------
@dataclass
class Fit:
    """A fitted router and what fitting it measured (out-of-fold predictions on training)."""

    router: RouterModel
    oof_accuracy: np.ndarray  # (P, R, A) calibrated out-of-fold predictions
    oof_difficulty: np.ndarray  # (P, R)
    notes: list[str] = field(default_factory=list)


def fit_router(
    table: Table,
    *,
    price: float | None = None,
    folds: int = 5,
    regularization: float = 1.0,
    min_problems: int = MIN_PROBLEMS,
) -> Fit:
    """Fit every arm's accuracy (logistic regression on the scaled features, calibrated by an
    isotonic regression on its out-of-fold predictions) and extra cost (ridge regression), and
    the difficulty (the share of right samples), with scikit-learn."""
    try:
        from sklearn.isotonic import IsotonicRegression  # noqa: F401
        from sklearn.linear_model import LogisticRegression, Ridge  # noqa: F401
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise sklearn_missing() from None
    # one BLAS thread: many small fits, and threads crawl on a busy 2-core machine
    with threadpool_limits(limits=1):
        return _fit(table, price, folds, regularization, min_problems)


def _fit(
    table: Table, price: float | None, folds: int, regularization: float, min_problems: int
) -> Fit:
    P, R, _ = table.x.shape
    if min_problems > P:
        raise UsageError(
            f"too little training data: {P} problems with a full pool of {table.pool_size} "
            f"samples (from {', '.join(table.stores)}); fitting a router needs at least "
            f"{min_problems} (bench more problems: ponder bench TASK --split train --limit "
            f"{max(min_problems, 100)} -s vote -n {table.pool_size} --store STORE)"
        )
    folds = max(2, min(folds, P // 4))
    # features with a value in training; scaled by their training mean and spread
    flat = table.x.reshape(P * R, -1)
    keep = [j for j in range(flat.shape[1]) if np.isfinite(flat[:, j]).any()]
    names = [FEATURES[j] for j in keep]
    dropped = [FEATURES[j] for j in range(flat.shape[1]) if j not in keep]
    xk = flat[:, keep]
    mean = np.nanmean(xk, axis=0)
    std = np.nanstd(xk, axis=0)
    scale = {n: (float(m), float(s)) for n, m, s in zip(names, mean, std, strict=True)}
    z = np.where(np.isfinite(xk), (xk - mean) / np.where(std > 0, std, 1.0), 0.0)
    groups = np.repeat(np.arange(P), R)
    fold_of = _folds(P, folds)[groups]

    arms: list[Arm] = []
    oof_acc = np.zeros((P, R, len(table.arms)))
    for a, spec in enumerate(table.arms):
        y = table.correct[:, :, a].ravel()
        accuracy, oof = _fit_probability(z, y, names, fold_of, folds, regularization)
        oof_acc[:, :, a] = oof.reshape(P, R)
        extra_y = (table.tokens[:, :, a] - table.probe_tokens).ravel() / np.maximum(
            table.probe_length.ravel(), 1.0
        )
        arms.append(
            Arm(
                name=spec.name,
                strategy=spec.strategy,
                options=spec.options,
                accuracy=accuracy,
                extra=_fit_linear(z, extra_y, names, regularization, low=0.0),
                train_accuracy=float(table.correct[:, :, a].mean()),
                train_tokens=float(table.tokens[:, :, a].mean()),
            )
        )
    rate = np.repeat(table.rate, R)
    difficulty, oof_diff = _fit_probability(z, rate, names, fold_of, folds, regularization)
    if price is None:
        price = default_price(table)
    router = RouterModel(
        ponder=_version(),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        probe=table.probe,
        temperature=table.temperature,
        answer_with=table.answer_with,
        features=names,
        scale=scale,
        difficulty=difficulty,
        arms=arms,
        price=price,
        training=Training(
            stores=[str(s) for s in table.stores],
            task=table.task,
            model=table.model,
            pool=table.pool,
            pool_size=table.pool_size,
            problems=P,
            orders=R,
            fingerprints=sorted({fingerprint(q) for q in table.questions}),
        ),
    )
    fitted = Fit(router, oof_acc, oof_diff.reshape(P, R))
    router.validation = validation(table, fitted, folds)
    router.summary = summary_lines(table, router, dropped)
    return fitted


def _version() -> str:
    from ponder import __version__

    return __version__


def _folds(problems: int, folds: int) -> np.ndarray:
    """Each problem's fold: a seeded shuffle dealt round-robin."""
    order = np.random.default_rng(0).permutation(problems)
    fold = np.empty(problems, dtype=int)
    fold[order] = np.arange(problems) % folds
    return fold


def _fit_probability(
    z: np.ndarray,
    y: np.ndarray,
    names: list[str],
    fold_of: np.ndarray,
    folds: int,
    regularization: float,
) -> tuple[Linear, np.ndarray]:
    """A logistic regression of y ∈ [0, 1] (a fraction counts as weighted 1s and 0s), with
    an isotonic calibration fitted on its out-of-fold predictions; and those predictions,
    calibrated (by a calibration fitted without the row's fold)."""
    from sklearn.isotonic import IsotonicRegression

    full = _logistic(z, y, names, regularization)
    raw = np.zeros(len(y))
    for f in range(folds):
        test = fold_of == f
        model = _logistic(z[~test], y[~test], names, regularization)
        raw[test] = model.raw(z[test], names)
    oof = np.zeros(len(y))
    for f in range(folds):  # each fold's calibrated prediction, calibrated without it
        test = fold_of == f
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(raw[~test], y[~test])
        oof[test] = iso.predict(raw[test])
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
    full.calibration = (
        [float(v) for v in iso.X_thresholds_],
        [float(v) for v in iso.y_thresholds_],
    )
    full.low, full.high = 0.0, 1.0
    return full, oof


def _logistic(z: np.ndarray, y: np.ndarray, names: list[str], regularization: float) -> Linear:
    from sklearn.linear_model import LogisticRegression

    mean = float(np.mean(y)) if len(y) else 0.5
    if mean <= 0.0 or mean >= 1.0 or z.shape[1] == 0:
        p = min(max(mean, 1e-4), 1 - 1e-4)  # one outcome only: a constant
        return Linear(link="logit", intercept=math.log(p / (1 - p)), coef=dict.fromkeys(names, 0.0))
    rows = np.concatenate([z, z])
    labels = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    weights = np.concatenate([y, 1.0 - y])
    keep = weights > 0
    model = LogisticRegression(C=regularization, max_iter=2000)
    model.fit(rows[keep], labels[keep], sample_weight=weights[keep])
    return Linear(
        link="logit",
        intercept=float(model.intercept_[0]),
        coef={n: float(c) for n, c in zip(names, model.coef_[0], strict=True)},
    )


def _fit_linear(
    z: np.ndarray, y: np.ndarray, names: list[str], regularization: float, low: float
) -> Linear:
    from sklearn.linear_model import Ridge

    model = Ridge(alpha=1.0 / regularization).fit(z, y)
    return Linear(
        link="identity",
        intercept=float(model.intercept_),
        coef={n: float(c) for n, c in zip(names, model.coef_, strict=True)},
        low=low,
    )


def default_price(table: Table) -> float:
    """What a generated token is worth by default: the accuracy per token the uniform vote
    buys at the top of its curve on training (its last concave-hull segment). `auto` spends
    more on a problem only where it predicts a better rate than that."""
    acc = table.vote_correct.mean(axis=(0, 1))
    cost = table.vote_tokens.mean(axis=(0, 1))
    chain = hull(cost, acc)
    if len(chain) < 2:
        return 0.0
    a, b = chain[-2], chain[-1]
    return float((acc[b] - acc[a]) / (cost[b] - cost[a]))


# -- using it on a table ------------------------------------------------------------------------
def routed(
    router: RouterModel, table: Table, price: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per problem (mean over its orders), the routed accuracy and generated tokens."""
    arms = arm_index(router, table)
    P, R, _F = table.x.shape
    x = _router_features(router, table)
    acc, tok = router.predict(x, table.probe_tokens.ravel(), table.probe_length.ravel())
    choice = router.choose(acc, tok, price)
    picked = arms[choice].reshape(P, R)
    got = np.take_along_axis(table.correct, picked[..., None], axis=2)[..., 0]
    spent = np.take_along_axis(table.tokens, picked[..., None], axis=2)[..., 0]
    return got.mean(axis=1), spent.mean(axis=1)


def arm_index(router: RouterModel, table: Table) -> np.ndarray:
    """For each of the router's arms, its column in the table (an error if one is missing)."""
    names = [a.name for a in table.arms]
    missing = [a.name for a in router.arms if a.name not in names]
    if missing:
        raise RouterError(
            f"the router's arms {', '.join(missing)} are not in this store's table "
            f"({', '.join(names)}): evaluate on a store benched like its training store"
        )
    if router.probe != table.probe:
        raise RouterError(f"the router probes {router.probe} samples, the table {table.probe}")
    return np.array([names.index(a.name) for a in router.arms])


def _router_features(router: RouterModel, table: Table) -> np.ndarray:
    P, R, F = table.x.shape
    cols = [FEATURES.index(n) for n in router.features]
    result: np.ndarray = table.x.reshape(P * R, F)[:, cols]
    return result


def is_priced(arm: ArmSpec) -> bool:
    """A price-rule arm: `auto`'s own rule (after the probe), so not one of the fixed
    strategies `auto` is set against; the rule alone is the router's other baseline
    (`Comparison.versus_rule`)."""
    return arm.strategy == "adaptive" and arm.options.get("rule") == "price"


def fixed_options(table: Table) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every fixed strategy the table can price, per problem (accuracy, tokens): vote@k for
    every k (no probe needed), each adaptive rule (its first wave is the probe) and each
    direct strategy (without the probe); not the price rule."""
    out = {
        f"vote@{k}": (
            table.vote_correct[:, :, k - 1].mean(axis=1),
            table.vote_tokens[:, :, k - 1].mean(axis=1),
        )
        for k in range(1, table.pool_size + 1)
    }
    for a, arm in enumerate(table.arms):
        if arm.strategy == "vote" or is_priced(arm):
            continue
        # an adaptive rule's first wave is the probe; a direct strategy alone runs no probe
        spent = table.tokens[:, :, a] - (0.0 if arm.strategy == "adaptive" else table.probe_tokens)
        out[arm.name] = (table.correct[:, :, a].mean(axis=1), spent.mean(axis=1))
    return out


def validation(table: Table, fitted: Fit, folds: int) -> dict[str, Any]:
    """Cross-validated numbers for the file: each arm's calibration (Brier, AUROC) and the
    router's accuracy and tokens out of fold, beside each fixed strategy's."""
    router = fitted.router
    P, R, A = table.correct.shape
    arms: dict[str, Any] = {}
    for a, spec in enumerate(table.arms):
        y = table.correct[:, :, a].ravel()
        p = fitted.oof_accuracy[:, :, a].ravel()
        binary = np.isin(y, (0.0, 1.0)).all()
        arms[spec.name] = {
            "accuracy": round(float(y.mean()), 4),
            "tokens": round(float(table.tokens[:, :, a].mean()), 1),
            "brier_out_of_fold": round(float(np.mean((p - y) ** 2)), 4),
            "auroc_out_of_fold": (
                None if not binary or (a_ := auroc(p, y.astype(bool))) is None else round(a_, 4)
            ),
        }
    # the router out of fold: predicted with the out-of-fold accuracies, costs from the model
    x = _router_features(router, table)
    _, tok = router.predict(x, table.probe_tokens.ravel(), table.probe_length.ravel())
    choice = router.choose(fitted.oof_accuracy.reshape(P * R, A), tok)
    got = table.correct.reshape(P * R, A)[np.arange(P * R), choice].reshape(P, R).mean(axis=1)
    spent = table.tokens.reshape(P * R, A)[np.arange(P * R), choice].reshape(P, R).mean(axis=1)
    chosen = np.bincount(choice, minlength=A) / (P * R)
    best_name, (best_acc, best_tok) = max(
        fixed_options(table).items(), key=lambda kv: (kv[1][0].mean(), -kv[1][1].mean())
    )
    d = np.corrcoef(fitted.oof_difficulty.ravel(), np.repeat(table.rate, R))[0, 1]
    return {
        "folds": folds,
        "how": "out of fold: each problem predicted by models fitted without it",
        "arms": arms,
        "router": {
            "price": router.price,
            "accuracy": round(float(got.mean()), 4),
            "tokens": round(float(spent.mean()), 1),
            "chosen": {table.arms[a].name: round(float(c), 4) for a, c in enumerate(chosen) if c},
        },
        "best_fixed": {
            "name": best_name,
            "accuracy": round(float(best_acc.mean()), 4),
            "tokens": round(float(best_tok.mean()), 1),
        },
        "difficulty_correlation": None if not np.isfinite(d) else round(float(d), 4),
    }


def summary_lines(table: Table, router: RouterModel, dropped: list[str]) -> list[str]:
    v = router.validation
    lines = [
        f"Trained on {table.problems} problems of {table.task} ({table.model}), pool "
        f"{table.pool} of {table.pool_size} samples, each read in {router.training.orders} "
        f"orders; probe: the first {router.probe} samples.",
        f"Samples answer with {table.answer_with}: `auto` runs its probe and arms so.",
        f"Arms (after the probe): {', '.join(a.name for a in router.arms)}.",
        f"Chooses per problem the arm maximizing predicted accuracy - {router.price:.3g} x "
        "predicted generated tokens (price: the uniform vote's accuracy per token at the "
        "top of its training curve, unless given).",
        f"Out of fold ({v['folds']} folds by problem): router {100 * v['router']['accuracy']:.1f}% "
        f"at {v['router']['tokens']:,.0f} tokens/problem; best fixed "
        f"{v['best_fixed']['name']} {100 * v['best_fixed']['accuracy']:.1f}% at "
        f"{v['best_fixed']['tokens']:,.0f}.",
    ]
    if dropped:
        lines.append(f"Features without a value in training (not used): {', '.join(dropped)}.")
    if table.dropped:
        lines.append(f"{table.dropped} problems with a smaller pool were left out.")
    return lines


# -- evaluation on unseen problems ------------------------------------------------------------
@dataclass
class Comparison:
    """`auto` against fixed strategies on test problems it never saw."""

    problems: int
    auto: tuple[float, float]  # (accuracy, tokens per problem) at the router's price
    auto_ci: tuple[float, float]
    equal: str  # the best fixed strategy within auto's tokens
    equal_point: tuple[float, float]
    difference: tuple[float, float, float]  # auto − equal: mean, 95% paired CI
    best: str  # the most accurate fixed strategy
    best_point: tuple[float, float]
    to_match: float | None  # tokens per problem auto needs to reach `best`'s accuracy
    curve: list[tuple[float, float, float]]  # (price, accuracy, tokens) of auto
    fixed: dict[str, tuple[float, float]]
    # the learned router against the price rule alone (`auto` without a router) at each of
    # PRICE_ARMS, at equal generated tokens
    versus_rule: list[PricedPoint] = field(default_factory=list)


@dataclass
class PricedPoint:
    """The price rule alone at one price against the router at the price (of a fine grid)
    where it generates the most tokens without generating more than the rule, paired by
    problem."""

    price: float
    accuracy: float
    tokens: float
    router_price: float | None  # None: at no price does the router generate this little
    router_accuracy: float
    router_tokens: float
    difference: tuple[float, float, float]  # router − rule: mean, 95% paired CI


def compare(router: RouterModel, test: Table, *, resamples: int = 2000) -> Comparison:
    """`auto` at the router's price against the best fixed strategy costing no more (paired
    bootstrap over problems), and auto's curve over prices: the tokens it needs to match the
    most accurate fixed strategy. Refuses problems the router was trained on."""
    router.check_unseen(list(zip(test.ids, test.questions, strict=True)))
    acc, tok = routed(router, test)
    fixed = fixed_options(test)
    means = {k: (float(a.mean()), float(t.mean())) for k, (a, t) in fixed.items()}
    within = {k: v for k, v in means.items() if v[1] <= tok.mean() * (1 + 1e-9)}
    if not within:
        within = {
            min(means, key=lambda k: means[k][1]): means[min(means, key=lambda k: means[k][1])]
        }
    equal = max(within, key=lambda k: (within[k][0], -within[k][1]))
    d = bootstrap_mean_ci(acc - fixed[equal][0], resamples=resamples)
    m, lo, hi = bootstrap_mean_ci(acc, resamples=resamples)
    best = max(means, key=lambda k: (means[k][0], -means[k][1]))
    per_price = {price: routed(router, test, price) for price in price_grid(router.price)}
    curve = [(p, float(a.mean()), float(t.mean())) for p, (a, t) in per_price.items()]
    reach = [t for _, a, t in curve if a >= means[best][0] - 1e-12]
    versus_rule = []
    # a fine grid of the router's prices, so that "no more tokens" lands close to the rule's
    fine = {p: routed(router, test, p) for p in [*np.geomspace(1e-8, 1e-1, 71).tolist(), 0.0]}
    for k, rule_price in enumerate(PRICE_ARMS):
        got = test.alone_correct[:, :, k].mean(axis=1)
        spent = float(test.alone_tokens[:, :, k].mean())
        cheaper = [p for p, (_, t) in fine.items() if t.mean() <= spent * (1 + 1e-9)]
        if not cheaper:
            none = PricedPoint(rule_price, float(got.mean()), spent, None, 0.0, 0.0, (0.0,) * 3)
            versus_rule.append(none)
            continue
        price = max(cheaper, key=lambda p: fine[p][1].mean())
        r_acc, r_tok = fine[price]
        d = bootstrap_mean_ci(r_acc - got, resamples=resamples)
        versus_rule.append(
            PricedPoint(
                rule_price,
                float(got.mean()),
                spent,
                price,
                float(r_acc.mean()),
                float(r_tok.mean()),
                d,
            )
        )
    return Comparison(
        problems=test.problems,
        auto=(m, float(tok.mean())),
        auto_ci=(lo, hi),
        equal=equal,
        equal_point=means[equal],
        difference=d,
        best=best,
        best_point=means[best],
        to_match=min(reach) if reach else None,
        curve=curve,
        fixed=means,
        versus_rule=versus_rule,
    )


def price_grid(price: float) -> list[float]:
    """Prices around the router's, cheapest spending first, and 0 (accuracy at any cost)."""
    base = price if price > 0 else 1e-4
    return [base * f for f in (64, 16, 8, 4, 2, 1.5, 1, 0.75, 0.5, 0.25, 0.125, 1 / 32)] + [0.0]


# -- Snell et al.'s figure: allocation by difficulty ---------------------------------------------
@dataclass
class Curve:
    name: str
    points: list[tuple[float, float]]  # (generated tokens per problem, accuracy)
    # "budget": a point per uniform vote@k budget (a table column each); "price": the
    # router's own points over its price grid (drawn, not tabled)
    over: str = "budget"


def snell_curves(router: RouterModel, train: Table, test: Table) -> list[Curve]:
    """Accuracy against the budget on `test` for: uniform (vote@k for every problem); oracle
    difficulty (each problem's bucket by its own pass rate, a k per bucket chosen greedily
    from the training curves of that bucket); the data set's own levels where every problem
    has one (MATH's 1-5, a k per level, chosen the same way); predicted difficulty (the bucket
    the router predicts from the probe; k ≥ the probe); and the router itself over its price
    grid."""
    router.check_unseen(list(zip(test.ids, test.questions, strict=True)))
    n, m = test.pool_size, test.probe
    uniform = [
        (float(test.vote_tokens[:, :, k - 1].mean()), float(test.vote_correct[:, :, k - 1].mean()))
        for k in range(1, n + 1)
    ]
    budgets = [t for t, _ in uniform]
    _P, R = test.x.shape[:2]
    oracle_train = np.repeat([bucket_of(r) for r in train.rate], train.x.shape[1])
    oracle_test = np.repeat([bucket_of(r) for r in test.rate], R)
    pred_train = np.array(
        [bucket_of(r) for r in router.difficulty_of(_router_features(router, train))]
    )
    pred_test = np.array(
        [bucket_of(r) for r in router.difficulty_of(_router_features(router, test))]
    )
    curves = [Curve("uniform (vote@k)", uniform)]
    given: list[tuple[str, np.ndarray, np.ndarray, int]] = []
    if has_levels(train) and has_levels(test):
        given.append(
            (
                "given level (the data set's)",
                np.repeat(np.array(train.levels), train.x.shape[1]),
                np.repeat(np.array(test.levels), R),
                1,
            )
        )
    for name, tr, te, lowest in (
        ("oracle difficulty", oracle_train, oracle_test, 1),
        *given,
        ("predicted difficulty", pred_train, pred_test, m),
    ):
        curves.append(Curve(name, _bucket_curve(train, test, tr, te, budgets, lowest)))
    auto = []
    for price in price_grid(router.price):
        a, t = routed(router, test, price)
        auto.append((float(t.mean()), float(a.mean())))
    curves.append(Curve("auto (router per problem)", auto, over="price"))
    return curves


def has_levels(table: Table) -> bool:
    """Whether every problem of the table has a level from its data set."""
    return bool(table.levels) and all(v is not None for v in table.levels)


def snell_crossfit(table: Table, *, seed: int = 0) -> tuple[list[Curve], list[str]]:
    """Snell's figure from one pool: fit on one half of the problems, draw on the other, and
    the other way round; the two halves' points averaged (each problem judged by a router that
    never saw it). Also notes on what was done."""
    a, b = split_halves(table, seed)
    first = snell_curves(fit_router(a).router, a, b)
    second = snell_curves(fit_router(b).router, b, a)
    wa, wb = a.problems / table.problems, b.problems / table.problems
    curves = [
        Curve(
            c1.name,
            [
                (wa * t1 + wb * t2, wa * y1 + wb * y2)
                for (t1, y1), (t2, y2) in zip(c2.points, c1.points, strict=True)
            ],
            c1.over,
        )
        for c1, c2 in zip(first, second, strict=True)
    ]
    notes = [
        f"Two-fold cross-fit on {table.problems} problems of {table.task}: a router fitted on "
        "each half draws the other half's points; the halves' points are averaged.",
    ]
    return curves, notes


def _bucket_curve(
    train: Table,
    test: Table,
    train_buckets: np.ndarray,
    test_buckets: np.ndarray,
    budgets: list[float],
    lowest: int,
) -> list[tuple[float, float]]:
    """Per budget: a k per bucket chosen on the training curves, evaluated on test rows."""
    n = test.pool_size
    tr_c = train.vote_correct.reshape(-1, n)
    tr_t = train.vote_tokens.reshape(-1, n)
    te_c = test.vote_correct.reshape(-1, n)
    te_t = test.vote_tokens.reshape(-1, n)
    overall_c, overall_t = tr_c.mean(axis=0), tr_t.mean(axis=0)
    present = sorted(set(test_buckets.tolist()))
    values, costs, weights = [], [], []
    for b in present:
        rows = train_buckets == b
        # a bucket training never saw takes the overall curve
        values.append((tr_c[rows].mean(axis=0) if rows.any() else overall_c)[lowest - 1 :])
        costs.append((tr_t[rows].mean(axis=0) if rows.any() else overall_t)[lowest - 1 :])
        weights.append(float((test_buckets == b).sum()))
    out = []
    rows_total = len(test_buckets)
    for budget in budgets:
        chosen, _ = allocate(values, costs, budget * rows_total, weights)
        k_of = {b: lowest + c for b, c in zip(present, chosen, strict=True)}
        ks = np.array([k_of[int(b)] for b in test_buckets])
        idx = np.arange(rows_total)
        out.append((float(te_t[idx, ks - 1].mean()), float(te_c[idx, ks - 1].mean())))
    return out


def split_halves(table: Table, seed: int = 0) -> tuple[Table, Table]:
    """The table's problems in two seeded halves (a smoke test of the pipeline on one pool)."""
    order = np.random.default_rng(seed).permutation(table.problems)
    half = table.problems // 2
    return table.subset(np.sort(order[:half])), table.subset(np.sort(order[half:]))


__all__ = [
    "BUCKETS",
    "MIN_PROBLEMS",
    "Comparison",
    "Curve",
    "Fit",
    "Table",
    "build_table",
    "compare",
    "fit_router",
    "snell_crossfit",
    "snell_curves",
    "split_halves",
]
