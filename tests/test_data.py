"""Benchmark data: the sets bundled with the package, where each set is looked for, and
`ponder data pull` from a folder or the hub, every file checked by sha256."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path

import pytest

from fake_hub import FakeHub, running
from helpers import run_ponder
from ponder.errors import DataError, UsageError
from ponder.hub import HubError, hub_download
from ponder.tasks import data
from ponder.tasks.catalog import SETS, DataFile, DataSet, HubFile
from ponder.tasks.data import BUNDLED, data_file, data_roots, locate
from ponder.tasks.pull import pull, where_is
from ponder.tasks.registry import TASKS, get_task

TOY = b'{"question": "1 + 1?", "answer": "#### 2"}\n'


@pytest.fixture
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No $PONDER_DATA_DIR, no shared folder, an empty user data folder (returned)."""
    monkeypatch.delenv("PONDER_DATA_DIR", raising=False)
    monkeypatch.delenv("PONDER_DATA_HUB_REPO", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(data, "shared_dir", lambda: None)
    return tmp_path / "xdg" / "ponder" / "data"


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> DataSet:
    """A one-file set in the catalog, for pulling."""
    ds = DataSet(
        name="toy",
        files=(DataFile(name="test.jsonl", size=len(TOY), sha256=hashlib.sha256(TOY).hexdigest()),),
        license="MIT",
        source="made up for a test",
    )
    monkeypatch.setitem(SETS, "toy", ds)
    return ds


def copy_of_toy(root: Path, body: bytes = TOY) -> Path:
    (root / "toy").mkdir(parents=True)
    (root / "toy" / "test.jsonl").write_bytes(body)
    (root / "toy" / "LICENSE").write_text("MIT License\n")
    return root


# -- what ships with the package ---------------------------------------------------------------
def test_every_bundled_file_is_the_catalog_bytes_with_its_licenses() -> None:
    bundled = [ds for ds in SETS.values() if ds.bundled]
    assert {ds.name for ds in bundled} >= {"gsm8k", "math500", "mbpp"}
    readme = (BUNDLED / "README.md").read_text()
    for ds in bundled:
        for f in ds.files:
            path = BUNDLED / ds.name / f.name
            body = path.read_bytes()
            assert (len(body), hashlib.sha256(body).hexdigest()) == (f.size, f.sha256), path
            assert f.sha256 in readme, f"{ds.name}/{f.name}: sha256 not in the README"
        for lic in ds.license_files:
            assert (BUNDLED / ds.name / lic).is_file(), f"{ds.name}/{lic}"
        assert f"`{ds.name}/" in readme
    # nothing else is bundled: every folder is a bundled set of the catalog
    folders = {p.name for p in BUNDLED.iterdir() if p.is_dir()}
    assert folders == {ds.name for ds in bundled}
    assert sum(p.stat().st_size for p in BUNDLED.rglob("*") if p.is_file()) < 8_000_000


def test_every_task_has_a_catalog_entry_naming_its_files() -> None:
    for name, part in TASKS.parts().items():
        task = part.obj
        folder, _, file = task.file.partition("/")
        assert folder == name and file in {f.name for f in SETS[name].files}, task.file
        for relative in [task.file, *(s.file for s in task.splits.values())]:
            # a split may be cut from another set's file (MATH-500's train share of MATH test)
            folder, _, file = relative.partition("/")
            assert file in {f.name for f in SETS[folder].files}, relative


def test_a_clean_machine_reads_the_bundled_sets(clean: Path) -> None:
    assert [what for what, _ in data_roots()] == ["bundled", "pulled"]
    assert data_file("gsm8k/train.jsonl") == BUNDLED / "gsm8k" / "train.jsonl"
    assert len(get_task("gsm8k").load()) == 1319
    assert where_is(SETS["gsm8k"]).where == "bundled"


def test_a_set_not_here_says_how_to_fetch_it(clean: Path) -> None:
    assert where_is(SETS["aime24"]).where == "missing"
    with pytest.raises(DataError, match=r"problem set 'aime24' is not on this machine") as e:
        get_task("aime24").load()
    assert "ponder data pull aime24" in str(e.value) and "bundled" in str(e.value)


def test_the_lookup_order(clean: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$PONDER_DATA_DIR, then bundled, then pulled, then the nearest shared/data."""
    shared = tmp_path / "shared" / "data"
    (shared / "gsm8k").mkdir(parents=True)
    (shared / "gsm8k" / "test.jsonl").write_bytes(TOY)
    (shared / "amc23").mkdir()
    (shared / "amc23" / "test.jsonl").write_bytes(TOY)
    monkeypatch.setattr(data, "shared_dir", lambda: shared)
    assert locate("gsm8k/test.jsonl") == ("bundled", BUNDLED / "gsm8k" / "test.jsonl")
    assert locate("amc23/test.jsonl") == ("shared", shared / "amc23" / "test.jsonl")
    (clean / "amc23").mkdir(parents=True)
    (clean / "amc23" / "test.jsonl").write_bytes(TOY)
    assert locate("amc23/test.jsonl") == ("pulled", clean / "amc23" / "test.jsonl")
    mine = tmp_path / "mine"
    (mine / "gsm8k").mkdir(parents=True)
    (mine / "gsm8k" / "test.jsonl").write_bytes(TOY)
    monkeypatch.setenv("PONDER_DATA_DIR", str(mine))
    assert locate("gsm8k/test.jsonl") == ("$PONDER_DATA_DIR", mine / "gsm8k" / "test.jsonl")
    assert [p.question for p in get_task("gsm8k").load()] == ["1 + 1?"]
    # a set $PONDER_DATA_DIR lacks is still found elsewhere
    assert locate("gsm8k/train.jsonl") == ("bundled", BUNDLED / "gsm8k" / "train.jsonl")


def test_the_shared_folder_is_found_above_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "repo" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo" / "sub")
    assert data.shared_dir() == tmp_path / "shared" / "data"


# -- pulling ----------------------------------------------------------------------------------
def test_pull_from_a_folder_checks_and_keeps_the_set(
    clean: Path, toy: DataSet, tmp_path: Path
) -> None:
    copy = copy_of_toy(tmp_path / "copy")
    assert where_is(toy).where == "missing"
    got = pull("toy", folder=copy)
    assert got.where == "pulled" and got.folder == clean / "toy"
    assert (clean / "toy" / "test.jsonl").read_bytes() == TOY
    assert (clean / "toy" / "LICENSE").is_file()
    assert where_is(toy).where == "pulled"
    assert pull("toy", folder=copy).where == "pulled"  # here already: nothing to do
    assert not list(clean.glob(".toy*"))  # no staging left behind


def test_pull_from_a_folder_refuses_other_bytes(clean: Path, toy: DataSet, tmp_path: Path) -> None:
    copy = copy_of_toy(tmp_path / "copy", body=TOY.replace(b"2", b"3"))
    with pytest.raises(DataError, match=r"toy/test.jsonl does not match the catalog"):
        pull("toy", folder=copy)
    assert not (clean / "toy").exists() and not list(clean.glob(".toy*"))
    with pytest.raises(DataError, match=r"no folder 'toy' in it"):
        pull("toy", folder=tmp_path / "nowhere")
    with pytest.raises(UsageError, match=r"unknown problem set 'nope' \(choose from: gsm8k"):
        pull("nope")


def test_pull_from_the_hub_known_copy_then_a_mirror(
    clean: Path, toy: DataSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = FakeHub()
    hub.add("someone/mirror", "toy/test.jsonl", TOY, repo_type="dataset")
    hub.add("org/toy", "data.jsonl", TOY.replace(b"2", b"3"), repo_type="dataset")
    known = toy.model_copy(
        update={
            "hub": {"test.jsonl": HubFile(repo="org/toy", revision="abc", filename="data.jsonl")}
        }
    )
    monkeypatch.setitem(SETS, "toy", known)
    seen: list[tuple[str, int, int]] = []
    with running(hub) as endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        with pytest.raises(DataError, match=r"could not pull 'toy': hub org/toy@abc:data.jsonl"):
            pull("toy")  # the known copy has other bytes, and no mirror is named
        got = pull("toy", hub_repo="someone/mirror", progress=lambda *e: seen.append(e))
    assert got.where == "pulled" and (clean / "toy" / "test.jsonl").read_bytes() == TOY
    assert ("HEAD", "/datasets/org/toy/resolve/abc/data.jsonl") in hub.requests
    assert ("GET", "/datasets/someone/mirror/resolve/main/toy/test.jsonl") in hub.requests
    assert seen[-1] == ("toy/test.jsonl", len(TOY), len(TOY))


def test_pull_without_a_hub_copy_or_with_the_hub_off_says_what_to_do(
    clean: Path, toy: DataSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DataError, match=r"no hub copy of 'toy' is known: .* --from"):
        pull("toy")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"HF_HUB_OFFLINE is set"):
        pull("toy", hub_repo="someone/mirror")


def test_an_unreachable_hub_fails_within_seconds(
    clean: Path, toy: DataSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    started = time.monotonic()
    with pytest.raises(DataError, match=r"ConnectError"):
        pull("toy", hub_repo="someone/mirror")
    assert time.monotonic() - started < 10


def test_a_hub_that_never_answers_costs_the_connect_timeout(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections are accepted by the kernel; nothing is ever sent back
    try:
        started = time.monotonic()
        with pytest.raises(HubError, match=r"Timeout"):
            hub_download(
                "org/m", "f.gguf", tmp_path, endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}"
            )
        assert time.monotonic() - started < 15  # 3 s, not huggingface_hub's minutes of retries
    finally:
        silent.close()


# -- the command line -------------------------------------------------------------------------
def test_data_list_shows_where_each_set_is_its_size_and_license() -> None:
    done = run_ponder("data", "list", "--json")
    assert done.returncode == 0, done.stderr
    listed = {row["name"]: row for row in json.loads(done.stdout)["sets"]}
    assert set(listed) == set(SETS)
    assert listed["gsm8k"]["where"] in ("bundled", "$PONDER_DATA_DIR")
    assert listed["gsm8k"]["bytes"] == 749_738 + 4_166_206
    assert listed["gsm8k"]["license"] == "MIT"
    text = run_ponder("data", "list")
    assert text.returncode == 0 and "gsm8k" in text.stdout and "4.9 MB" in text.stdout
    assert "ponder data pull NAME" in text.stdout


def test_data_pull_from_the_command_line(tmp_path: Path) -> None:
    bad = run_ponder("data", "pull", "nope")
    assert bad.returncode == 2 and "unknown problem set 'nope'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    done = run_ponder("data", "pull", "gsm8k")  # bundled: nothing to fetch
    assert done.returncode == 0 and "gsm8k: bundled" in done.stdout
    # a --from that is not a folder is said, even where no set needs it (it was exit 0)
    gone = run_ponder("data", "pull", "gsm8k", "--from", str(tmp_path / "nope"))
    assert gone.returncode == 2 and f"--from {tmp_path / 'nope'}: no such folder" in gone.stderr
