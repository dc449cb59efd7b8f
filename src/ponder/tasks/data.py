"""Finding and reading benchmark files, with errors that name the file and line.

A problem set is a folder named after it (`gsm8k/test.jsonl`, …). Each set is looked for in
these places, in order, and read from the first that holds its file:

1. `$PONDER_DATA_DIR`: a folder laid out like the shared data folder (several may be given,
   separated by `:`);
2. the sets bundled with the package (`ponder/data/`: the ones the demo and the tests read);
3. the sets fetched by `ponder data pull` (the user data folder, e.g. `~/.local/share/ponder/data`);
4. the nearest `shared/data` above the working directory or the package (the project's copy of
   every set, kept beside the repository).

A set found nowhere is an error that says how to fetch it (`ponder data pull NAME`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platformdirs

from ponder.errors import DataError, UsageError, no_file, no_folder

BUNDLED = Path(__file__).resolve().parent.parent / "data"


def pulled_dir() -> Path:
    """Where `ponder data pull` puts sets (the platform's user data folder)."""
    return Path(platformdirs.user_data_dir("ponder")) / "data"


def shared_dir() -> Path | None:
    """The nearest `shared/data` above the working directory or this package, if any."""
    for start in (Path.cwd(), Path(__file__).resolve()):
        for parent in [start, *start.parents]:
            candidate = parent / "shared" / "data"
            if candidate.is_dir():
                return candidate
    return None


def data_roots() -> list[tuple[str, Path]]:
    """(what, folder) for every place a set is looked for, in order."""
    roots = [
        ("$PONDER_DATA_DIR", Path(p).expanduser())
        for p in os.environ.get("PONDER_DATA_DIR", "").split(os.pathsep)
        if p
    ]
    for _, folder in roots:  # a folder named but not there is a mistake, not "look elsewhere"
        if not folder.is_dir():
            raise UsageError(f"PONDER_DATA_DIR: {no_folder(folder)}")
    roots += [("bundled", BUNDLED), ("pulled", pulled_dir())]
    if (shared := shared_dir()) is not None:
        roots.append(("shared", shared))
    return roots


def locate(relative: str) -> tuple[str, Path] | None:
    """(what, path) of the first place holding `relative` (e.g. `gsm8k/test.jsonl`)."""
    for what, root in data_roots():
        if (root / relative).is_file():
            return what, root / relative
    return None


def data_file(relative: str) -> Path:
    """The path of a set's file, e.g. `data_file("gsm8k/test.jsonl")`; a DataError saying how to
    fetch the set when no place holds it."""
    found = locate(relative)
    if found is not None:
        return found[1]
    name = relative.split("/", 1)[0]
    looked = ", ".join(f"{what} {root}" for what, root in data_roots())
    raise DataError(
        f"problem set '{name}' is not on this machine ({relative}): fetch it with "
        f"`ponder data pull {name}` (from the hub, or --from a folder holding a copy); "
        f"looked in: {looked}"
    )


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line."""
    if not path.is_file():
        raise DataError(no_file(path, "file"))
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                # (the first line may carry the byte-order mark some editors write)
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start} of the line)"
                ) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line, object_pairs_hook=_no_repeated_keys)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg}){_hint(line)}") from None
            except RecursionError:
                raise DataError(f"{path}:{lineno}: JSON nested too deeply to read") from None
            except _RepeatedKey as e:
                raise DataError(f"{path}:{lineno}: field '{e}' given twice") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object")
            if "\\ud" in line.lower() and not _encodes(record):
                # JSON's \ud800 escapes decode to a lone surrogate, which is no text (no store,
                # no model can take it)
                raise DataError(f"{path}:{lineno}: a \\u escape of half a surrogate pair")
            yield lineno, record


def _hint(line: str) -> str:
    """What a line that is not JSON most likely is, where it is a known mistake."""
    if "\r" in line.rstrip("\r\n"):
        return "; its lines end in a lone CR: JSON Lines ends each with LF"
    if line.strip() in ("{", "["):
        return "; JSON spread over lines: JSON Lines holds one whole object on each line"
    return ""


class _RepeatedKey(ValueError):
    """A JSON object naming one key twice (json keeps the last one silently)."""


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for key, value in pairs:
        if key in record:
            raise _RepeatedKey(key)
        record[key] = value
    return record


def _encodes(record: object) -> bool:
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
