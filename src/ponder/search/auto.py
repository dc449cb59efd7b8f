"""Compute-optimal per problem (Snell et al., 2024). Without a router, sample while one more
sample is worth its price (the price rule, `PriceStop`):

    loop: draw one sample
          gain ← (1 − P(the leader stays the leader)) / (tokens a sample costs · √samples)
          stop when gain < price, or at n samples
    answer: the vote

— the per-problem form of a workload budget's allocation, which spends a set's budget on this
same gain. With a router (a learned one, as in SMART), draw a cheap probe (the first few
samples), read from it and from the question how hard the problem is, and run the strategy and
n the router picks for it, continuing from the probe:

    probe ← m samples                              (the router's probe size and temperature)
    x ← features(question, probe)                  (agreement, confidence, lengths; numbers)
    for each arm a (vote@k, adaptive(rule)@n, a direct strategy):
        acc[a], tokens[a] ← the router's predictions from x
    a* ← argmax_a acc[a] − price × tokens[a]
    run a* on top of the probe (its samples vote too) and answer with it

The router is a file (`ponder router fit STORE --out router.json`): JSON a person can read,
used with numpy alone. On the embedded models, replayed on stored pools, the price rule beats
the best fixed strategy at equal generated tokens and the learned router does not; three live
runs reach the replay's accuracy, their gain not clear of zero (benchmarks/RESULTS.md,
"`auto`: the price rule").
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, PrivateAttr, model_validator

from ponder.allocation import Probe, RouterError, RouterModel, features, file_sha256, load_router
from ponder.answers import cluster
from ponder.consensus import PriceStop
from ponder.runtime.context import Context
from ponder.runtime.strategy import (
    MULTIPLIES,
    STRATEGIES,
    OptionsClash,
    Strategy,
    make_strategy,
    strategy,
)
from ponder.search.adaptive import Adaptive, WaveSampler
from ponder.search.vote import tally
from ponder.types import Candidate, Problem, Result

_LOADED: dict[tuple[str, float], RouterModel] = {}


def router_for(path: str) -> RouterModel:
    """The router file at `path`, checked against this install (cached while unchanged)."""
    where = Path(path)
    key = (str(where.resolve()), where.stat().st_mtime if where.exists() else 0.0)
    if key not in _LOADED:
        model = load_router(where)
        check_install(model, path)
        _LOADED[key] = model
    return _LOADED[key]


def check_install(model: RouterModel, path: str) -> None:
    """Every arm's strategy exists here and takes the arm's options."""
    for arm in model.arms:
        if arm.strategy not in STRATEGIES:
            raise RouterError(
                f"{path}: arm '{arm.name}' runs strategy '{arm.strategy}', which this install "
                f"does not have (installed: {', '.join(STRATEGIES)}); install the plugin that "
                "provides it, or fit the router again here"
            )
        try:
            make_strategy(arm.strategy, **arm.options)
        except Exception as e:
            raise RouterError(
                f"{path}: arm '{arm.name}': this install's '{arm.strategy}' does not take its "
                f"options ({e}); fit the router again here"
            ) from None


@strategy
class Auto(Strategy):
    """Compute-optimal per problem: sample while one more sample is worth its price, or with
    a router, a probe and then the strategy and n the router picks."""

    name: ClassVar[str] = "auto"
    width: ClassVar[str | None] = "n"
    router: str | None = Field(
        default=None,
        description="a router file (`ponder router fit STORE --out router.json`); also "
        "--router FILE [default: none, the price rule]",
    )
    price: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="accuracy one generated token is worth: higher spends less [default: the "
        f"router's; without one, the price rule's {PriceStop().price:g}]",
    )
    n: int = Field(
        default=16,
        ge=1,
        description="samples at most: the price rule's budget; with a router, no arm drawing "
        "more is chosen",
        json_schema_extra=MULTIPLIES,
    )
    temperature: float | None = Field(
        default=None, ge=0.0, description="without a router: sampling temperature [0.7]"
    )
    router_sha256: str | None = Field(
        default=None, description="the router file's sha256 (set from the file; a store's key)"
    )
    _model: RouterModel | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _load(self) -> Auto:
        if self.router is None:
            if self.price == 0.0:
                raise OptionsClash(
                    "price: without a router the price rule needs a price > 0", "price"
                )
            return self
        if self.temperature is not None:
            raise OptionsClash(
                "temperature: a router samples at its pool's; it is auto's own without one",
                "temperature",
            )
        self._model = router_for(self.router)
        if self.n < self._model.probe:
            raise OptionsClash(
                f"n {self.n} is below the router's probe of {self._model.probe}", "n", "router"
            )
        asked = self.answer_with if "answer_with" in self.model_fields_set else None
        self.answer_with = self._model.answer_mode(asked, self.router)
        sha = file_sha256(self.router)
        if self.router_sha256 is not None and self.router_sha256 != sha:
            raise RouterError(
                f"{self.router}: the router file changed since this run was made "
                f"(sha256 {sha[:12]}, the run's {self.router_sha256[:12]})"
            )
        self.router_sha256 = sha
        return self

    def model(self) -> RouterModel:
        assert self._model is not None
        return self._model

    def check_unseen(self, problems: list[Problem]) -> None:
        """Refuse to be evaluated on problems the router was trained on."""
        if self._model is not None:
            self.model().check_unseen([(p.id or p.question[:40], p.question) for p in problems])

    def rule_price(self) -> float:
        """The price the price rule runs at: the one given, else the rule's default."""
        return PriceStop().price if self.price is None else self.price

    def priced(self) -> Adaptive:
        """The price rule as `adaptive` runs it: one sample at a time (each decides the next;
        no idle slot is filled with samples the rule did not ask for)."""
        inner = make_strategy(
            "adaptive",
            rule="price",
            n=self.n,
            temperature=0.7 if self.temperature is None else self.temperature,
            wave=1,
            fill=False,
            answer_with=self.answer_with,
            price=self.rule_price(),
        )
        assert isinstance(inner, Adaptive)
        return inner

    async def run(self, problem: Problem, ctx: Context) -> Result:
        if self._model is None:
            return await self.run_priced(problem, ctx)
        return await self.run_routed(problem, ctx)

    async def run_priced(self, problem: Problem, ctx: Context) -> Result:
        done = await self.priced().run(problem, ctx)
        route: dict[str, Any] = {"policy": "price", "price": self.rule_price()}
        ctx.report("route", **route)
        return self.answered_by(problem, ctx, done, route)

    def answered_by(
        self, problem: Problem, ctx: Context, done: Result, route: dict[str, Any]
    ) -> Result:
        """The inner strategy's result as auto's, with the route that chose it."""
        return ctx.result(
            problem,
            self,
            done.answer,
            done.candidates,
            stopped=done.stopped,
            route=route,
            **{k: v for k, v in done.info.items() if k != "route"},
        )

    async def run_routed(self, problem: Problem, ctx: Context) -> Result:
        model = self.model()
        sampler = WaveSampler(ctx, problem, model.temperature)
        probe = list(await asyncio.gather(*sampler.launch(model.probe)))
        if not probe:
            return ctx.result(problem, self, None, [], stopped="budget", route=None)
        classes = cluster([c.answer for c in probe], problem.kind or "math")
        x = features(
            problem.question,
            Probe(
                classes,
                [c.completion_tokens for c in probe],
                [c.signals.scores if c.signals and c.signals.scores else None for c in probe],
            ),
            model.features,
        )
        spent = sum(c.completion_tokens for c in probe)
        acc, tokens = model.predict(x, spent, spent / len(probe))
        # an arm drawing more samples than n is not a choice (its accuracy: never worth it)
        drawn = np.array([int(a.options.get("n", model.probe)) for a in model.arms])
        acc = np.where(drawn[None, :] <= self.n, acc, -np.inf)
        pick = int(model.choose(acc, tokens, self.price)[0])
        arm = model.arms[pick]
        ranked = np.argsort(
            -(acc[0] - (model.price if self.price is None else self.price) * tokens[0])
        )
        route: dict[str, Any] = {
            "arm": arm.name,
            "difficulty": round(float(model.difficulty_of(x)[0]), 4),
            "predicted": {
                model.arms[int(a)].name: {
                    "accuracy": round(float(acc[0, a]), 4),
                    "tokens": round(float(tokens[0, a]), 1),
                }
                for a in ranked[:4]
                if np.isfinite(acc[0, a])
            },
        }
        ctx.report("route", **route)
        stopped = "budget" if sampler.short else None
        if arm.strategy == "vote":
            more = sampler.launch(max(0, int(arm.options.get("n", len(probe))) - len(probe)))
            candidates = probe + list(await asyncio.gather(*more))
            answer, totals, tie = tally(candidates, [1.0] * len(candidates), problem.kind)
            if sampler.short:
                stopped = "budget"
            votes = {a: int(t) for a, t in totals.items()}
            return ctx.result(
                problem,
                self,
                answer,
                candidates,
                stopped=stopped,
                route=route,
                votes=votes,
                tie=tie,
            )
        if arm.strategy == "adaptive":
            options = {**arm.options, "temperature": model.temperature}
            inner = make_strategy("adaptive", **options)
            assert isinstance(inner, Adaptive)
            done = await inner.run_from(problem, ctx, probe)
            return self.answered_by(problem, ctx, done, route)
        inner_strategy = make_strategy(arm.strategy, **arm.options)
        done = await inner_strategy.run(problem, ctx)
        every: list[Candidate] = probe + done.candidates
        return ctx.result(problem, self, done.answer, every, stopped=done.stopped, route=route)
