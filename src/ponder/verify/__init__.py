"""Verifiers by name, built once per engine, and outcome scoring for any of them (a process
verifier scores a candidate's steps and aggregates them)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ponder.errors import UsageError
from ponder.lm.protocol import LanguageModel
from ponder.types import Candidate, Problem
from ponder.verify.aggregate import AGGREGATES, aggregate, clip, deltas, rank_calibrated
from ponder.verify.base import (
    VERIFIERS,
    OutcomeVerifier,
    ProcessVerifier,
    Verdict,
    VerifierSpec,
    split_steps,
)
from ponder.verify.checks import CodeTests, CrossCheck
from ponder.verify.judge import LLMJudge, SelfJudge
from ponder.verify.prm_http import PRMHttp
from ponder.verify.quality import auroc, best_index, selection_quality

if TYPE_CHECKING:
    from ponder.search.base import Context

# Verifiers that can only score steps: outcome use always aggregates their step scores.
_PROCESS_ONLY = {"prm_http"}


class Verifiers:
    """Builds each verifier spec once (judges keep caches, PRMs keep connections)."""

    def __init__(self, open_model: Callable[..., LanguageModel] | None = None) -> None:
        self._open_model = open_model
        self._built: dict[str, Any] = {}

    def get(self, spec: VerifierSpec) -> Any:
        key = spec.key
        if key not in self._built:
            self._built[key] = self._build(spec)
        return self._built[key]

    def _build(self, spec: VerifierSpec) -> Any:
        opts = dict(spec.options)
        try:
            if spec.name == "self_judge":
                return SelfJudge(**opts)
            if spec.name == "llm_judge":
                if self._open_model is None:
                    raise UsageError("llm_judge needs an engine that can open models")
                judge = self._open_model(
                    opts.pop("model", None),
                    base_url=opts.pop("base_url", None),
                    api_key=opts.pop("api_key", None),
                )
                return LLMJudge(judge, **opts)
            if spec.name == "code_tests":
                return CodeTests(**opts)
            if spec.name == "crosscheck":
                return CrossCheck(**opts)
            if spec.name == "prm_http":
                if "url" not in opts:
                    raise UsageError("prm_http needs options.url (the PRM server's base URL)")
                return PRMHttp(**opts)
        except TypeError as e:
            raise UsageError(f"bad options for verifier '{spec.name}': {e}") from None
        raise UsageError(f"unknown verifier '{spec.name}' (choose from: {', '.join(VERIFIERS)})")

    async def score(
        self,
        problem: Problem,
        candidates: Sequence[Candidate],
        spec: VerifierSpec,
        ctx: Context,
    ) -> list[Verdict]:
        verifier = self.get(spec)
        if spec.steps and not hasattr(verifier, "score_steps"):
            raise UsageError(f"verifier '{spec.name}' scores whole candidates, not steps")
        if not spec.steps and spec.name not in _PROCESS_ONLY:
            verdicts = list(await verifier.score(problem, candidates, ctx))
        else:
            verdicts = await self._by_steps(verifier, problem, candidates, spec, ctx)
        if spec.rank_calibrated:
            ranks = rank_calibrated([v.score for v in verdicts])
            verdicts = [replace(v, score=r) for v, r in zip(verdicts, ranks, strict=True)]
        return verdicts

    async def _by_steps(
        self,
        verifier: Any,
        problem: Problem,
        candidates: Sequence[Candidate],
        spec: VerifierSpec,
        ctx: Context,
    ) -> list[Verdict]:
        async def one(cand: Candidate) -> Verdict:
            steps = split_steps(cand.text)
            if not steps:
                return Verdict(reason="empty candidate: no steps to score")
            verdicts = await verifier.score_steps(problem, steps, ctx)
            scores = [v.score for v in verdicts]
            if spec.clip is not None:
                scores = clip(scores, *spec.clip)
            if spec.deltas:
                scores = deltas(scores)
            value = aggregate(scores, spec.aggregate)
            reasons = sorted({v.reason for v in verdicts if v.reason})
            return Verdict(score=value, reason="; ".join(reasons) or None)

        # paths in parallel; within a path the verifier orders its calls for its cache
        return list(await asyncio.gather(*(one(c) for c in candidates)))

    async def aclose(self) -> None:
        for verifier in self._built.values():
            close = getattr(verifier, "aclose", None)
            if close is not None:
                await close()
            judge = getattr(verifier, "judge", None)
            if judge is not None:
                await judge.aclose()
        self._built.clear()


__all__ = [
    "AGGREGATES",
    "VERIFIERS",
    "CodeTests",
    "CrossCheck",
    "LLMJudge",
    "OutcomeVerifier",
    "PRMHttp",
    "ProcessVerifier",
    "SelfJudge",
    "Verdict",
    "VerifierSpec",
    "Verifiers",
    "aggregate",
    "auroc",
    "best_index",
    "clip",
    "deltas",
    "rank_calibrated",
    "selection_quality",
    "split_steps",
]
