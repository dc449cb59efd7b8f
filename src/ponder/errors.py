"""Errors ponder raises. Each names what went wrong and where."""

from __future__ import annotations


class PonderError(Exception):
    """Base class for every error ponder raises on purpose."""


class UsageError(PonderError, ValueError):
    """Bad input from the user: an unknown name, an empty question, a bad option."""


class DataError(PonderError):
    """A data file is malformed; the message names the file and line."""


class ModelError(PonderError):
    """A model could not be found, fetched, verified or loaded."""


class BackendError(PonderError):
    """A backend refused a request, or kept failing after retries."""


class TransientError(BackendError):
    """A failure worth retrying: timeout, connection reset, 5xx, truncated response."""


class BudgetExceeded(PonderError):
    """A request would push the ledger past a budget cap; nothing was spent."""
