"""`ponder data pull`: fetch a problem set into the user data folder, from the Hugging Face hub
or from a local folder holding a copy, every file checked against the catalog's sha256.

Hub sources, tried in order: a hub dataset known to hold the same bytes (`DataSet.hub`), then a
hub dataset laid out like the data folder (`<set>/<file>`) named by `--hub-repo` or
`$PONDER_DATA_HUB_REPO`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from ponder.errors import DataError, UsageError
from ponder.hub import HubError, Progress, hub_download, hub_offline
from ponder.tasks.catalog import SETS, DataFile, DataSet, HubFile
from ponder.tasks.data import locate, pulled_dir


class Located(BaseModel):
    """Where a set is: 'bundled', 'pulled', '$PONDER_DATA_DIR', 'shared', or 'missing'."""

    name: str
    where: str
    folder: Path | None


def data_set(name: str) -> DataSet:
    if name not in SETS:
        raise UsageError(f"unknown problem set '{name}' (choose from: {', '.join(SETS)})")
    return SETS[name]


def where_is(ds: DataSet) -> Located:
    """The first place holding every file of the set (as the loaders would find it)."""
    places = [locate(f"{ds.name}/{f.name}") for f in ds.files]
    if any(p is None for p in places):
        return Located(name=ds.name, where="missing", folder=None)
    what, path = places[0]  # type: ignore[misc]
    return Located(name=ds.name, where=what, folder=path.parent)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def pull(
    name: str,
    *,
    folder: Path | None = None,
    hub_repo: str | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> Located:
    """Fetch set `name` into the user data folder (unless some place already holds it, or
    `force`); from `folder` when given, else from the hub. Nothing is kept unless every file
    matches its sha256."""
    ds = data_set(name)
    here = where_is(ds)
    if here.where != "missing" and not force:
        return here
    target = pulled_dir() / ds.name
    staging = pulled_dir() / f".{ds.name}.part"
    if folder is not None:
        _from_folder(ds, folder, staging)
    else:
        _from_hub(ds, hub_repo or os.environ.get("PONDER_DATA_HUB_REPO") or None, staging, progress)
    if target.exists():
        shutil.rmtree(target)
    staging.replace(target)
    return Located(name=ds.name, where="pulled", folder=target)


def _check(ds: DataSet, f: DataFile, path: Path, source: str) -> None:
    digest = sha256_of(path)
    if digest != f.sha256:
        raise DataError(
            f"{source}: {ds.name}/{f.name} does not match the catalog (sha256 {digest[:16]}…, "
            f"want {f.sha256[:16]}…): not kept"
        )


def _fresh(staging: Path) -> None:
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)


def _from_folder(ds: DataSet, folder: Path, staging: Path) -> None:
    src = folder.expanduser() / ds.name
    if not src.is_dir():
        raise DataError(f"--from {folder}: no folder '{ds.name}' in it (expected {src})")
    _fresh(staging)
    try:
        for f in ds.files:
            path = src / f.name
            if not path.is_file():
                raise DataError(f"--from {folder}: {ds.name}/{f.name} is missing")
            _check(ds, f, path, f"--from {folder}")
            shutil.copyfile(path, staging / f.name)
        for lic in ds.license_files:
            if (src / lic).is_file():
                shutil.copyfile(src / lic, staging / lic)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def hub_sources(ds: DataSet, mirror: str | None) -> list[Callable[[DataFile], HubFile]]:
    """Per-file hub locations to try, in order: the known copy, then a mirror repository."""
    sources: list[Callable[[DataFile], HubFile]] = []
    if all(f.name in ds.hub for f in ds.files):
        sources.append(lambda f: ds.hub[f.name])
    if mirror:
        sources.append(
            lambda f: HubFile(repo=mirror, revision="main", filename=f"{ds.name}/{f.name}")
        )
    return sources


def _from_hub(ds: DataSet, mirror: str | None, staging: Path, progress: Progress | None) -> None:
    sources = hub_sources(ds, mirror)
    if not sources:
        raise DataError(
            f"no hub copy of '{ds.name}' is known: pull it from a folder holding a copy "
            f"(ponder data pull {ds.name} --from ../shared/data), or name a hub dataset laid "
            "out like the data folder (--hub-repo OWNER/NAME)"
        )
    if hub_offline():
        raise DataError(
            f"'{ds.name}' comes from the hub, and HF_HUB_OFFLINE is set: unset it, or pull "
            f"--from a folder holding a copy"
        )
    failures: list[str] = []
    downloads = pulled_dir() / ".hub"
    for where in sources:
        _fresh(staging)
        try:
            for f in ds.files:
                hf = where(f)
                label = f"hub {hf.repo}@{hf.revision[:12]}:{hf.filename}"
                path = hub_download(
                    hf.repo,
                    hf.filename,
                    downloads / hf.repo.replace("/", "--"),
                    repo_type="dataset",
                    revision=hf.revision,
                    progress=progress,
                    stage=f"{ds.name}/{f.name}",
                )
                try:
                    _check(ds, f, path, label)
                    shutil.move(path, staging / f.name)
                finally:
                    path.unlink(missing_ok=True)
            return
        except (HubError, DataError) as e:
            failures.append(str(e) if isinstance(e, DataError) else f"{label}: {e}")
            shutil.rmtree(staging, ignore_errors=True)
    raise DataError(f"could not pull '{ds.name}': " + "; ".join(failures))
