"""Errors ponder raises. Each names what went wrong and where."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pydantic import ValidationError


class PonderError(Exception):
    """Base class for every error ponder raises on purpose."""


class UsageError(PonderError, ValueError):
    """Bad input from the user: an unknown name, an empty question, a bad option (`option`:
    its name, when one option is at fault, for a caller that points at it, as a server's
    error `param` does)."""

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class DataError(PonderError):
    """A data file is malformed; the message names the file and line."""


class ModelError(PonderError):
    """A model could not be found, fetched, verified or loaded."""


class BadModelFile(UsageError, ModelError):
    """A model path the user gave that is no GGUF file (missing, a folder, other bytes):
    bad input (exit 2), caught before llama.cpp is asked to load it."""


# How a server failed a request: it refused it (a 4xx answer), failed at it (a 5xx or 429
# answer), answered something that is not a response (garbage, cut short), could not be
# reached (connection refused, reset, dropped) or did not answer in time.
Failure = Literal["refused", "server_error", "bad_response", "unavailable", "timeout"]


class BackendError(PonderError):
    """A backend refused a request, or kept failing after retries.

    A server backend says how (`failure`), with the HTTP `status` it answered and its own
    error object (`upstream`: OpenAI's message / type / param / code, as it sent them) when it
    answered one, and its `retry_after` seconds if it gave them; a server passing requests
    through (`ponder serve`) hands them on to its client."""

    def __init__(
        self,
        message: str,
        *,
        failure: Failure | None = None,
        status: int | None = None,
        upstream: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.failure = failure
        self.status = status
        self.upstream = upstream
        self.retry_after = retry_after

    def retried(self, message: str) -> BackendError:
        """The error a caller that gave up after retrying raises: `message`, and how the last
        attempt failed."""
        return BackendError(
            message,
            failure=self.failure,
            status=self.status,
            upstream=self.upstream,
            retry_after=self.retry_after,
        )


class TransientError(BackendError):
    """A failure worth retrying: timeout, connection reset, 5xx, truncated response."""


class BudgetExceeded(PonderError):
    """A request would push the ledger past a budget cap; nothing was spent."""


def no_file(path: object, what: str) -> str:
    """Why a path given as a `what` (a store, a router file) cannot be read as one: it is
    missing, or it is a folder (said as such: "no such file" for a folder misleads)."""
    if Path(str(path)).is_dir():
        return f"{path}: a folder, not {'an' if what[:1] in 'aeiouAEIOU' else 'a'} {what}"
    return f"{path}: no such {what}"


def no_folder(path: object) -> str:
    """Why a path given as a folder cannot be used as one: it is missing, or a file."""
    return f"{path}: {'a file, not a folder' if Path(str(path)).exists() else 'no such folder'}"


def not_utf8(where: object, e: UnicodeDecodeError) -> str:
    """The message for a file (`where`) whose bytes are not UTF-8, naming the first bad byte."""
    return f"{where}: not UTF-8 text ({e.reason} at byte {e.start})"


def problem_line(loc: Sequence[int | str], msg: str) -> str:
    """One problem of a ValidationError: where, then what (pydantic's "Value error, " prefix
    dropped: the message is ours)."""
    where = ".".join(map(str, loc))
    msg = msg.removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def problems(e: ValidationError, most: int | None = None) -> str:
    """Every problem of `e` (the first `most`), one line joined by "; "."""
    return "; ".join(problem_line(x["loc"], x["msg"]) for x in e.errors()[:most])
