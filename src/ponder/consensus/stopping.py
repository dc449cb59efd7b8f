"""Stopping rules for adaptive self-consistency: after each finished sample, stop sampling or
go on, so easy questions cost a few samples and hard ones the whole budget.

Each rule is plain data (a frozen config) with a pure `decide`: the same samples always give the
same decision, which is what lets `ponder.consensus.replay` price a rule exactly on a stored
pool. Samples without an answer never count as agreement but do count against the budget, and
every rule stops once the budget of samples has finished.

Every rule may also give up (`give_up_after`): once that many samples have finished with no two
answers alike, the vote at the budget would be a plurality of one or two, which is rarely
right, so the rest of the budget is better spent elsewhere (Snell et al., 2024: on the hardest
problems more samples buy little). The answer is then the first sample's, as a vote of ties
would give.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.special import betainc

from ponder.consensus.observations import (
    EPSILON,
    Observation,
    answered,
    confidences,
    leader,
    totals,
)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to stop now, why (in words), and the answer class leading at this point."""

    stop: bool
    reason: str
    leader: int | None


class StoppingRule(BaseModel):
    """A rule deciding, after each finished sample, whether to stop sampling."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]
    min_samples: int = Field(
        default=2, ge=1, description="finished samples before the rule may stop early"
    )
    give_up_after: int | None = Field(
        default=None,
        ge=2,
        description="stop once this many samples have finished with no two answers alike "
        "[default: never]",
    )

    def decide(self, observations: Sequence[Observation], budget: int) -> Decision:
        """Stop or go on, given the samples finished so far (in the order they finished)."""
        votes, note = self.votes(observations)
        lead = leader(votes)[0]
        n = len(observations)
        if n >= budget:
            stop, reason = True, f"budget of {budget} reached"
        elif self.hopeless(observations):
            stop, reason = True, f"giving up: no two of {n} answers agree"
        elif n < self.min_samples:
            stop, reason = False, f"{n} of the {self.min_samples} samples needed first"
        else:
            stop, reason = self.check(observations, votes)
        return Decision(stop, f"{reason}; {note}" if note else reason, lead)

    def hopeless(self, observations: Sequence[Observation]) -> bool:
        """`give_up_after` samples or more have finished and no answer class has two of them."""
        if self.give_up_after is None or len(observations) < self.give_up_after:
            return False
        answers = [o.answer for o in observations if o.answer is not None]
        return len(set(answers)) == len(answers)

    def votes(self, observations: Sequence[Observation]) -> tuple[dict[int, float], str | None]:
        """The vote per answer class this rule reads (plain counts unless it weighs them), and
        a note when it had to fall back."""
        return totals(observations, [1.0] * len(observations)), None

    @abstractmethod
    def check(
        self, observations: Sequence[Observation], votes: dict[int, float]
    ) -> tuple[bool, str]:
        """The rule's own test, once `min_samples` have finished and budget is left."""

    def next_wave(
        self, observations: Sequence[Observation], budget: int, slots: int, in_flight: int = 0
    ) -> int:
        """How many samples to launch now, with `observations` finished and `in_flight` still
        running (0 between waves; rolling, the ones launched earlier and not yet finished).

        The first wave fills the backend's `slots` (at least `min_samples`, since no rule can
        stop before those): a slot left idle saves no wall time. Later launches top the
        samples running up to what the slots hold, and never exceed what the budget leaves."""
        left = budget - len(observations) - in_flight
        if not observations and not in_flight:
            return max(0, min(left, max(self.min_samples, slots)))
        return max(0, min(slots - in_flight, left))


class ESC(StoppingRule):
    """Early-Stopping Self-Consistency (Li et al., 2024, "Escape Sky-high Cost"): stop when the
    last `window` answers all agree. The paper tests each window of samples drawn together;
    testing the last `window` after every sample stops no later."""

    name: ClassVar[str] = "esc"
    window: int = Field(default=4, ge=1, description="consecutive agreeing answers to stop")
    min_samples: int = Field(
        default=4, ge=1, description="finished samples before the rule may stop (default: window)"
    )

    @model_validator(mode="before")
    @classmethod
    def _min_samples_is_window(cls, data: Any) -> Any:
        if isinstance(data, dict) and "min_samples" not in data:
            return {**data, "min_samples": data.get("window", 4)}
        return data

    def check(
        self, observations: Sequence[Observation], votes: dict[int, float]
    ) -> tuple[bool, str]:
        last = observations[-self.window :]
        if len(last) < self.window:
            return False, f"{len(last)} samples, fewer than the window of {self.window}"
        first = last[0].answer
        if first is not None and all(o.answer == first for o in last):
            return True, f"{self.window} of the last {self.window} answers agree"
        return False, f"the last {self.window} answers do not all agree"


class BetaStop(StoppingRule):
    """Adaptive-Consistency's Beta stopping (Aggarwal et al., 2023), as its_hub 1.2 implements
    it: with v1 votes for the leader and v2 for the runner-up, the probability that the leader
    stays the leader is 1 − I₀.₅(v1 + 1, v2 + 1) (a uniform prior on the two's split); stop when
    it reaches `threshold`."""

    name: ClassVar[str] = "beta"
    threshold: float = Field(
        default=0.95, gt=0.0, le=1.0, description="P(leader stays the leader) to stop"
    )

    def check(
        self, observations: Sequence[Observation], votes: dict[int, float]
    ) -> tuple[bool, str]:
        if not votes:
            return False, "no answer yet"
        ranked = [*sorted(votes.values(), reverse=True), 0.0]
        p = leader_stays(ranked[0], ranked[1])
        if p >= self.threshold:
            return True, f"P(leader stays) {p:.3f} ≥ {self.threshold}"
        return False, f"P(leader stays) {p:.3f} < {self.threshold}"


def leader_stays(v1: float, v2: float) -> float:
    """P(the leader with v1 votes stays ahead of the runner-up with v2): 1 − I₀.₅(v1+1, v2+1)."""
    return 1.0 - float(betainc(v1 + 1.0, v2 + 1.0, 0.5))


def unsettled_per_token(
    votes: Iterable[float], mean_tokens: float, samples: int, damping: float
) -> float:
    """What one more sample promises, in accuracy per generated token: the chance the vote can
    still change, 1 − P(leader stays) for the leader's votes against the runner-up's (of the
    answers' vote totals `votes`), per token a sample costs (`mean_tokens`, at least 1),
    damped by `samples`^damping (one more sample moves a vote of many less than a vote of
    few). The workload budget ranks problems by it; PriceStop stops a problem's sampling when
    it falls below a price."""
    top = [*sorted(votes, reverse=True), 0.0, 0.0]
    unsettled = 1.0 - leader_stays(top[0], top[1])
    return unsettled / (max(1.0, mean_tokens) * float(max(1, samples) ** damping))


class PriceStop(StoppingRule):
    """Stop once one more sample promises less than its price: sample while
    `unsettled_per_token` (the chance the vote can still change, per generated token, damped
    by √samples) is at least `price`. It is a workload budget's allocation made per problem:
    a workload spends a set's budget greedily on this same quantity, so when it ends every
    problem's gain has fallen to about one price; here the price is given and each problem
    stops on its own. Problems whose first answers agree, or whose samples are long, stop
    early; short ones that disagree get more. Only `price` is a setting the model's scale
    matters to (its unit: accuracy per token); `damping` was chosen on train pools."""

    name: ClassVar[str] = "price"
    # 7e-4 (about 0.2 accuracy per 300-token sample): chosen on three train pools (GSM8K chain
    # of thought and tool-integrated, MATH) among 2e-3 … 5e-5 by the gain over uniform voting
    # at equal tokens (it spends about vote@2-4's tokens there)
    price: float = Field(
        default=7e-4,
        gt=0.0,
        le=1.0,
        description="accuracy per generated token one more sample must promise to be drawn",
    )
    damping: float = Field(
        default=0.5, ge=0.0, le=4.0, description="the promise is divided by samples^damping"
    )
    min_samples: int = Field(
        default=1, ge=1, description="finished samples before the rule may stop early"
    )

    def check(
        self, observations: Sequence[Observation], votes: dict[int, float]
    ) -> tuple[bool, str]:
        mean = sum(o.tokens for o in observations) / len(observations)
        gain = unsettled_per_token(votes.values(), mean, len(observations), self.damping)
        if gain < self.price:
            return True, f"one more sample promises {gain:.2e} per token < the price {self.price:g}"
        return False, f"one more sample promises {gain:.2e} per token ≥ the price {self.price:g}"


class Agreement(StoppingRule):
    """its_hub's adaptive self-consistency: stop when the leader holds `share` of the answers."""

    name: ClassVar[str] = "agreement"
    share: float = Field(
        default=0.75, gt=0.0, le=1.0, description="the leader's share of answers to stop"
    )
    min_samples: int = Field(
        default=2, ge=1, description="answered samples before the rule may stop early"
    )

    def check(
        self, observations: Sequence[Observation], votes: dict[int, float]
    ) -> tuple[bool, str]:
        n = len(answered(observations))
        if n < self.min_samples:
            return False, f"{n} of the {self.min_samples} answers needed first"
        top = int(max(votes.values()))
        share = top / n
        if share >= self.share:
            return True, f"{top} of {n} answers agree ({share:.2f} ≥ {self.share})"
        return False, f"{top} of {n} answers agree ({share:.2f} < {self.share})"


class WeightedConsensus(StoppingRule):
    """DeepConf online's stop (and CISC-like): stop when the leader holds `threshold` of the
    confidence-weighted vote. Weights are the observations' confidences (one without a
    confidence weighs the mean of the others), clamped to stay positive: DeepConf confidences
    (−mean top-k log-probability) and self-certainty already are, negative signals ("logprob",
    "neg_entropy", "length") are not meant for this rule. With no confidence at all it counts
    plainly and says so."""

    name: ClassVar[str] = "weighted"
    threshold: float = Field(
        default=0.95, gt=0.0, le=1.0, description="the leader's weighted share to stop"
    )

    def votes(self, observations: Sequence[Observation]) -> tuple[dict[int, float], str | None]:
        voters = answered(observations)
        weights, note = confidences(voters)
        if weights is None:
            return totals(voters, [1.0] * len(voters)), (
                "no confidence signal: plain counts" if voters else None
            )
        return totals(voters, [max(w, EPSILON) for w in weights]), note

    def check(
        self, observations: Sequence[Observation], votes: dict[int, float]
    ) -> tuple[bool, str]:
        if not votes:
            return False, "no answer yet"
        share = max(votes.values()) / sum(votes.values())
        if share >= self.threshold:
            return True, f"weighted share {share:.3f} ≥ {self.threshold}"
        return False, f"weighted share {share:.3f} < {self.threshold}"


class CrossCheck(StoppingRule):
    """`cross_vote`'s rule: the samples (chains of thought) vote beside executed programs,
    whose answers' classes are `programs`; a class that a program and a chain both reached
    leads (the most votes among those), else the plain majority of both (a tie: first seen,
    programs first). With `stop_early`, sampling stops the moment a chain reaches a program's
    answer: with one program no later chain can change the answer then (it is the program's),
    so stopping costs no accuracy. Not one of `adaptive`'s rules: it needs the programs."""

    name: ClassVar[str] = "cross"
    programs: tuple[int | None, ...] = ()
    min_samples: int = Field(default=1, ge=1, description="samples before it may stop early")
    stop_early: bool = True

    def votes(self, observations: Sequence[Observation]) -> tuple[dict[int, float], str | None]:
        votes: dict[int, float] = {}
        for cid in [*self.programs, *(o.answer for o in observations)]:
            if cid is not None:
                votes[cid] = votes.get(cid, 0.0) + 1.0
        backed = self.backed(observations)
        if not backed:
            return votes, None
        return {cid: v for cid, v in votes.items() if cid in backed}, None

    def backed(self, observations: Sequence[Observation]) -> set[int]:
        """The classes both a program and a chain reached."""
        return {o.answer for o in observations if o.answer is not None} & {
            cid for cid in self.programs if cid is not None
        }

    def check(
        self, observations: Sequence[Observation], votes: dict[int, float]
    ) -> tuple[bool, str]:
        if self.stop_early and self.backed(observations):
            return True, "a chain of thought reached a program's answer"
        return False, "no chain of thought has reached a program's answer"


STOPPING_RULES: dict[str, type[StoppingRule]] = {
    cls.name: cls for cls in (ESC, BetaStop, Agreement, WeightedConsensus, PriceStop)
}
