"""A fitted router as plain data: the file `ponder router fit` writes and `-s auto` reads.

The file is JSON a person can read: the features and how they are scaled, for each *arm* (a
strategy and its n, run after the probe) the coefficients of the model of its accuracy (a
logistic regression, then an isotonic calibration table) and of its cost, the difficulty
model, the training split (problem count, their fingerprints, the stores) and the
cross-validated numbers. Predicting needs only numpy: scikit-learn fits, it is not needed to
use a router.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ponder.allocation.features import FEATURES
from ponder.errors import UsageError, no_file, problems
from ponder.types import AnswerWith

FORMAT = "ponder-router"
VERSION = 1
# Difficulty buckets (Snell et al.): by the share of samples that are right, easiest last.
BUCKET_EDGES = (0.2, 0.4, 0.6, 0.8)
BUCKETS = ("solved 0-20%", "solved 20-40%", "solved 40-60%", "solved 60-80%", "solved 80-100%")


class RouterError(UsageError):
    """A router file that cannot be used here (another version, an unknown strategy)."""


def fingerprint(question: str) -> str:
    """What identifies a problem across stores and task names: its question, spaced and cased
    alike, hashed."""
    text = " ".join(question.split()).lower()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def bucket_of(rate: float) -> int:
    """The difficulty bucket (0 hardest … 4 easiest) of a pass rate."""
    return int(np.searchsorted(BUCKET_EDGES, rate, side="right"))


class Linear(BaseModel):
    """A linear model over the scaled features: logit (a probability), or identity; with an
    optional isotonic calibration table (x: the raw prediction, y: the calibrated one)."""

    model_config = ConfigDict(extra="forbid")
    link: Literal["logit", "identity"]
    intercept: float
    coef: dict[str, float]
    calibration: tuple[list[float], list[float]] | None = None
    low: float | None = None  # predictions are clipped to [low, high]
    high: float | None = None

    @model_validator(mode="after")
    def _a_table_to_interpolate(self) -> Linear:
        if self.calibration is not None:
            xs, ys = self.calibration
            if not xs or len(xs) != len(ys):
                raise ValueError(
                    f"calibration: {len(xs)} x and {len(ys)} y values (want as many, at least one)"
                )
            if any(b < a for a, b in itertools.pairwise(xs)):
                raise ValueError("calibration: its x values must not decrease")
        return self

    def raw(self, z: np.ndarray, names: list[str]) -> np.ndarray:
        w = np.array([self.coef.get(n, 0.0) for n in names])
        out = z @ w + self.intercept
        if self.link == "logit":
            out = 1.0 / (1.0 + np.exp(-np.clip(out, -60, 60)))
        result: np.ndarray = out
        return result

    def predict(self, z: np.ndarray, names: list[str]) -> np.ndarray:
        out = self.raw(z, names)
        if self.calibration is not None:
            xs, ys = self.calibration
            out = np.interp(out, xs, ys)
        result: np.ndarray = np.clip(
            out,
            -np.inf if self.low is None else self.low,
            np.inf if self.high is None else self.high,
        )
        return result


class Arm(BaseModel):
    """One choice the router can make after the probe: run `strategy` with `options`,
    continuing from the probe's samples where the strategy samples (vote, adaptive)."""

    model_config = ConfigDict(extra="forbid")
    name: str  # e.g. vote@8, adaptive(rule=beta)@16, greedy
    strategy: str
    options: dict[str, Any] = Field(default_factory=dict)
    accuracy: Linear  # P(right | features)
    extra: Linear  # tokens generated after the probe, in probe-sample lengths
    train_accuracy: float  # on the training problems (mean over orders)
    train_tokens: float  # generated tokens per problem, probe included


class Training(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stores: list[str]
    task: str
    model: str
    pool: str  # the pooled group the arms were evaluated from
    pool_size: int
    problems: int
    orders: int  # probe orders per problem (the pool in random orders)
    fingerprints: list[str]  # of every training question: evaluation refuses these


class RouterModel(BaseModel):
    """A fitted router (see the module's doc)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    format: str = FORMAT
    version: int = VERSION
    ponder: str
    created: str
    summary: list[str] = Field(default_factory=list)  # what a person reads first
    probe: int = Field(ge=1)  # samples in the probe
    temperature: float = Field(ge=0)  # of every sample (the pool's)
    # how every sample answers (the pool's): the probe and the arms that sample run this way
    answer_with: AnswerWith = "reasoning"
    features: list[str]
    scale: dict[str, tuple[float, float]]  # feature → (mean, std); a missing value is its mean
    difficulty: Linear  # the predicted share of right samples (calibrated on training)
    arms: list[Arm] = Field(min_length=1)
    price: float  # accuracy one generated token is worth: maximize accuracy - price × tokens
    validation: dict[str, Any] = Field(default_factory=dict)
    training: Training

    @model_validator(mode="after")
    def _features_this_ponder_computes(self) -> RouterModel:
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ValueError(
                f"features this ponder does not compute: {', '.join(unknown)} "
                f"(it computes {', '.join(FEATURES)})"
            )
        unscaled = [f for f in self.features if f not in self.scale]
        if unscaled:
            raise ValueError(f"scale: no mean and spread for {', '.join(unscaled)}")
        return self

    def answer_mode(self, asked: str | None, where: str) -> AnswerWith:
        """The answer mode to sample with: the router's own (its predictions hold for that
        mode only); `asked`, another mode given by the user, is an error naming both."""
        if asked is not None and asked != self.answer_with:
            raise RouterError(
                f"--answer-with {asked}: the router {where} was fitted on samples answered "
                f"with {self.answer_with}, not {asked}; drop --answer-with or fit a router on "
                f"a pool of {asked} samples"
            )
        return self.answer_with

    # -- prediction ---------------------------------------------------------------------
    def scaled(self, x: np.ndarray) -> np.ndarray:
        """Raw features (rows × features, NaN unknown) standardized, unknowns at 0."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        mean = np.array([self.scale[n][0] for n in self.features])
        std = np.array([self.scale[n][1] for n in self.features])
        z = (x - mean) / np.where(std > 0, std, 1.0)
        result: np.ndarray = np.where(np.isfinite(z), z, 0.0)
        return result

    def predict(
        self, x: np.ndarray, probe_tokens: np.ndarray | float, probe_length: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(accuracy, tokens), each rows × arms: each arm's predicted chance of a right answer
        and its generated tokens, probe included (`probe_tokens`: what the probe wrote;
        `probe_length`: its mean per sample)."""
        z = self.scaled(x)
        acc = np.stack([a.accuracy.predict(z, self.features) for a in self.arms], axis=1)
        extra = np.stack([a.extra.predict(z, self.features) for a in self.arms], axis=1)
        spent = np.atleast_1d(np.asarray(probe_tokens, dtype=float))[:, None]
        per = np.atleast_1d(np.asarray(probe_length, dtype=float))[:, None]
        return acc, spent + np.maximum(extra, 0.0) * per

    def choose(
        self, accuracy: np.ndarray, tokens: np.ndarray, price: float | None = None
    ) -> np.ndarray:
        """Per row, the arm maximizing accuracy − price × tokens (ties: the cheaper)."""
        p = self.price if price is None else price
        gain = np.atleast_2d(accuracy) - p * np.atleast_2d(tokens)
        order = np.lexsort((np.atleast_2d(tokens), -gain), axis=1)
        result: np.ndarray = order[:, 0]
        return result

    def difficulty_of(self, x: np.ndarray) -> np.ndarray:
        """The predicted share of right samples per row (higher: easier)."""
        return self.difficulty.predict(self.scaled(x), self.features)

    def strategies(self) -> list[str]:
        return sorted({a.strategy for a in self.arms})

    def seen(self) -> set[str]:
        return set(self.training.fingerprints)

    def check_unseen(self, questions: list[tuple[str, str]]) -> None:
        """Refuse problems (id, question) the router was trained on: an evaluation on them
        would measure memory, not routing."""
        seen = self.seen()
        hits = [pid for pid, q in questions if fingerprint(q) in seen]
        if hits:
            shown = ", ".join(hits[:3]) + (", …" if len(hits) > 3 else "")
            raise RouterError(
                f"{len(hits)} of {len(questions)} problems are in this router's training set "
                f"({shown}): evaluate it on problems it never saw (fit it on the train split, "
                "e.g. `ponder bench gsm8k --split train`)"
            )


def load_router(path: Path | str) -> RouterModel:
    """A router file, checked: its format and version, and that it parses."""
    path = Path(path)
    if path.is_dir():
        raise RouterError(no_file(path, "router file"))
    if not path.is_file():
        raise RouterError(
            f"{path}: no such router file (make one with `ponder router fit STORE --out {path}`)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RouterError(f"{path}: not a router file (not JSON: {e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RouterError(f'{path}: not a router file (no "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise RouterError(
            f"{path}: router file version {data.get('version')!r} (written by ponder "
            f"{data.get('ponder', '?')}), but this ponder reads version {VERSION}: fit it again "
            "with `ponder router fit`"
        )
    try:
        return RouterModel.model_validate(data)
    except ValidationError as e:
        raise RouterError(f"{path}: a malformed router file ({problems(e, 3)})") from None


def file_sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
