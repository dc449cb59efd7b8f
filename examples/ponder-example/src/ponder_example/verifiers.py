"""A verifier: is the answer a plain number?"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from ponder.answers import normalize_number
from ponder.runtime.verifiers import (
    OUTCOME,
    SERVED,
    BuiltVerifier,
    Verdict,
    VerifierEnv,
    VerifyContext,
    verifier,
)
from ponder.types import Candidate, Problem


class Numeric:
    async def score(
        self, problem: Problem, candidates: Sequence[Candidate], ctx: VerifyContext
    ) -> list[Verdict]:
        return [
            Verdict(reason="no answer")
            if c.answer is None
            else Verdict(score=1.0 if normalize_number(c.answer) is not None else 0.0)
            for c in candidates
        ]


class NumericOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@verifier("numeric", NumericOptions, capabilities={OUTCOME, SERVED})
def numeric(options: NumericOptions, env: VerifierEnv) -> BuiltVerifier:
    """1 when a candidate's answer is a plain number, else 0."""
    return BuiltVerifier("numeric", outcome=Numeric())
