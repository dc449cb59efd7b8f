"""Compute-optimal per problem (Snell et al., 2024; a learned router as in SMART): draw a
cheap probe (the first few samples), read from it and from the question how hard the problem
is, and run the strategy and n a fitted router picks for it, continuing from the probe:

    probe ← m samples                              (the router's probe size and temperature)
    x ← features(question, probe)                  (agreement, confidence, lengths; numbers)
    for each arm a (vote@k, adaptive(rule)@n, a direct strategy):
        acc[a], tokens[a] ← the router's predictions from x
    a* ← argmax_a acc[a] − price × tokens[a]
    run a* on top of the probe (its samples vote too) and answer with it

The router is a file (`ponder router fit STORE --out router.json`): JSON a person can read,
used with numpy alone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, PrivateAttr, model_validator

from ponder.allocation import Probe, RouterError, RouterModel, features, file_sha256, load_router
from ponder.answers import cluster
from ponder.runtime.context import Context
from ponder.runtime.strategy import STRATEGIES, Strategy, make_strategy, strategy
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
    """Compute-optimal: a probe, then the strategy and n a fitted router picks per problem."""

    name: ClassVar[str] = "auto"
    router: str | None = Field(
        default=None,
        description="the router file (`ponder router fit STORE --out router.json`); "
        "also --router FILE",
    )
    price: float | None = Field(
        default=None,
        ge=0.0,
        description="accuracy one generated token is worth: higher spends less [default: the "
        "router's]",
    )
    router_sha256: str | None = Field(
        default=None, description="the router file's sha256 (set from the file; a store's key)"
    )
    _model: RouterModel | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _load(self) -> Auto:
        if self.router is None:
            raise RouterError(
                "strategy 'auto' needs a router file: -o router=FILE or --router FILE (fit one "
                "with `ponder router fit STORE --out router.json`)"
            )
        self._model = router_for(self.router)
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
        self.model().check_unseen([(p.id or p.question[:40], p.question) for p in problems])

    async def run(self, problem: Problem, ctx: Context) -> Result:
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
            return ctx.result(
                problem,
                self,
                done.answer,
                done.candidates,
                stopped=done.stopped,
                route=route,
                **{k: v for k, v in done.info.items() if k not in ("route",)},
            )
        inner_strategy = make_strategy(arm.strategy, **arm.options)
        done = await inner_strategy.run(problem, ctx)
        every: list[Candidate] = probe + done.candidates
        return ctx.result(problem, self, done.answer, every, stopped=done.stopped, route=route)
