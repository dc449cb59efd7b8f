"""A stand-in for the Hugging Face hub on 127.0.0.1: the `resolve` URLs `huggingface_hub`
downloads files from (HEAD for the metadata, GET for the bytes), for models and datasets."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self) -> None:
        # (repo type, repo, path in repo) -> bytes
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.requests: list[tuple[str, str]] = []

    def add(self, repo: str, path: str, data: bytes, repo_type: str = "model") -> None:
        self.files[(repo_type, repo, path)] = data

    def find(self, url_path: str) -> bytes | None:
        parts = unquote(url_path.split("?", 1)[0]).strip("/").split("/")
        repo_type = "model"
        if parts and parts[0] in ("datasets", "spaces"):
            repo_type, parts = parts[0][:-1], parts[1:]
        if len(parts) < 5 or parts[2] != "resolve":
            return None
        repo, path = "/".join(parts[:2]), "/".join(parts[4:])
        return self.files.get((repo_type, repo, path))


@contextmanager
def running(hub: FakeHub) -> Iterator[str]:
    """Serve `hub`; yields its endpoint URL (for HF_ENDPOINT)."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: bool) -> None:
            hub.requests.append((self.command, self.path))
            data = hub.find(self.path)
            if data is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                for i in range(0, len(data), 4096):  # in pieces, so progress moves
                    self.wfile.write(data[i : i + 4096])

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
