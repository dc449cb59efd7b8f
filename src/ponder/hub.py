"""Fetching a file from the Hugging Face hub through `huggingface_hub`: a short connect
timeout, so an unreachable hub costs seconds before the next source is tried; progress
reported to a callback; `HF_HUB_OFFLINE` read as a boolean (`0` means online).

`HF_ENDPOINT` and `HF_TOKEN` are honoured (by `huggingface_hub`), and so is
`HF_HUB_ETAG_TIMEOUT`, which replaces the connect timeout below.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ponder.env import env_flag
from ponder.errors import PonderError

Progress = Callable[[str, int, int], None]  # (stage, done_bytes, total_bytes)

# Seconds to wait for the hub to answer the first request (the file's metadata). Where the
# hub is unreachable the connection fails at once or after this long, and the next source runs.
CONNECT_TIMEOUT_S = 3.0
DEFAULT_ENDPOINT = "https://huggingface.co"


class HubError(PonderError):
    """The hub could not give the file (unreachable, not found, refused)."""


def hub_offline() -> bool:
    """`HF_HUB_OFFLINE` as a boolean: set to 1/true/yes/on, the hub is not tried."""
    return env_flag("HF_HUB_OFFLINE", False)


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT


def hub_download(
    repo: str,
    filename: str,
    folder: Path,
    *,
    repo_type: str | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    progress: Progress | None = None,
    stage: str = "download (hub)",
) -> Path:
    """Download `filename` of the hub repository `repo` into `folder` (kept between attempts,
    so an interrupted download resumes) and return its path."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    endpoint = endpoint or hub_endpoint()
    timeout = connect_timeout()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        # The file's metadata first, once, with the short timeout: hf_hub_download alone
        # retries an unreachable hub with backoff for tens of seconds (minutes where packets
        # are dropped) before it gives up.
        url = hf_hub_url(repo, filename, repo_type=repo_type, revision=revision, endpoint=endpoint)
        get_hf_file_metadata(url, timeout=timeout)
        path = hf_hub_download(
            repo,
            filename,
            repo_type=repo_type,
            revision=revision,
            local_dir=folder,
            endpoint=endpoint,
            etag_timeout=timeout,
            tqdm_class=_progress_bar(progress, stage) if progress else None,
        )
    except Exception as e:  # unreachable, 404, 401, a broken transfer: one line naming it
        raise HubError(describe(e)) from e
    return Path(path)


def connect_timeout() -> float:
    """Seconds to wait for the hub's first answer: `$HF_HUB_ETAG_TIMEOUT` where set (as
    huggingface_hub reads it), else CONNECT_TIMEOUT_S."""
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or CONNECT_TIMEOUT_S)
    except ValueError:
        return CONNECT_TIMEOUT_S


def describe(error: BaseException) -> str:
    """One line for a hub failure: the innermost network error where there is one (a refused
    connection, a timeout), else the first line of huggingface_hub's message."""
    inner: BaseException = error
    seen = {id(inner)}
    while (nxt := inner.__cause__ or inner.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        inner = nxt
    chosen = inner if type(inner).__module__.startswith(("httpx", "httpcore")) else error
    text = str(chosen).strip().splitlines()
    return f"{type(chosen).__name__}: {text[0] if text else 'no detail'}"


def _progress_bar(progress: Progress, stage: str) -> Any:
    """A tqdm class for `hf_hub_download` that reports each update to `progress` and draws
    nothing itself (the caller draws the bar)."""
    from tqdm import tqdm

    class _Null:
        def write(self, _text: str) -> None:
            pass

        def flush(self) -> None:
            pass

    class Bar(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["file"] = _Null()
            kwargs["disable"] = False
            super().__init__(*args, **kwargs)
            progress(stage, int(self.n), int(self.total or 0))

        def update(self, n: float | None = 1) -> bool | None:
            shown: bool | None = super().update(n)
            progress(stage, int(self.n), int(self.total or 0))
            return shown

    return Bar
