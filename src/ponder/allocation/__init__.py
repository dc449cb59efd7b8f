"""Compute-optimal allocation: features of a problem and of a cheap probe (its first
samples), a fitted router read from its file (which strategy and n to run after the probe),
and the greedy that spends one budget where it buys the most accuracy. Plain data and numpy:
fitting lives in ponder.bench.router (scikit-learn), using a router needs neither."""

from ponder.allocation.features import FEATURES, Probe, features, probe_features, question_features
from ponder.allocation.greedy import allocate, hull
from ponder.allocation.model import (
    BUCKET_EDGES,
    BUCKETS,
    Arm,
    Linear,
    RouterError,
    RouterModel,
    Training,
    bucket_of,
    file_sha256,
    fingerprint,
    load_router,
)

__all__ = [
    "BUCKETS",
    "BUCKET_EDGES",
    "FEATURES",
    "Arm",
    "Linear",
    "Probe",
    "RouterError",
    "RouterModel",
    "Training",
    "allocate",
    "bucket_of",
    "features",
    "file_sha256",
    "fingerprint",
    "hull",
    "load_router",
    "probe_features",
    "question_features",
]
