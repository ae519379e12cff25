"""A real, minimal Hugging Face hub on 127.0.0.1, for tests: with HF_ENDPOINT pointed at it, the pinned
huggingface_hub's `repo_info`, `snapshot_download` and `hf_hub_download` fetch from it as from the hub.

It serves model repos given as {path: bytes}, each at one commit (a hash of its files) that the
revision "main" resolves to, and answers the calls those functions make:

- GET /api/models/{repo}[/revision/{revision}]: the repo's id, commit and file names;
- GET /api/models/{repo}/tree/{revision}: the file listing (path, size, git blob id), one page;
- HEAD and GET /{repo}/resolve/{revision}/{path}: X-Repo-Commit, ETag and Content-Length, then the bytes.

A repo, revision or file it does not have gets the hub's 404 with its X-Error-Code (RepoNotFound,
RevisionNotFound, EntryNotFound), which huggingface_hub turns into its own errors. Every request is
recorded in `requests` as (method, path), and every file whose bytes were sent in `sent` as
"repo/path", so a test can tell what was asked and what was downloaded.

    with FakeHub({"org/model": {"config.json": b"{}"}}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


def git_blob_id(data: bytes) -> str:
    """The id git gives a file's contents, which the hub sends as a small file's ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def commit_id(files: Mapping[str, bytes]) -> str:
    """A repo's commit: 40 hex digits that change with any of its files (same files, same commit)."""
    listing = "\n".join(f"{path} {git_blob_id(data)}" for path, data in sorted(files.items()))
    return hashlib.sha1(listing.encode()).hexdigest()


class FakeHub:
    """Model repos served over HTTP as the hub serves them; `url` is the HF_ENDPOINT to give."""

    def __init__(self, repos: Mapping[str, Mapping[str, bytes]]) -> None:
        self.repos = {repo: dict(files) for repo, files in repos.items()}
        self.commits = {repo: commit_id(files) for repo, files in self.repos.items()}
        self.requests: list[tuple[str, str]] = []
        self.sent: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the hub first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                hub._answer(self, body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                hub._answer(self, body=False)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `requests`
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-hub")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the answers --------------------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        with self._lock:
            self.requests.append((handler.command, path))
        api = path.startswith("/api/models/")
        rest = path.removeprefix("/api/models/") if api else path.removeprefix("/")
        repo = next((r for r in sorted(self.repos, key=len, reverse=True) if rest.startswith(f"{r}/")), None)
        if repo is None and api and rest in self.repos:
            repo = rest
        if repo is None:
            return self._error(handler, 404, "RepoNotFound", "Repository not found", body)
        operation, _, tail = rest.removeprefix(f"{repo}/").partition("/")
        revision, _, file = tail.partition("/")
        if api and path == f"/api/models/{repo}":  # repo_info without a revision: the default branch
            operation, revision = "revision", "main"
        commit = self.commits[repo]
        if revision not in ("main", commit):
            return self._error(handler, 404, "RevisionNotFound", f"Invalid rev id: {revision}", body)
        files = self.repos[repo]
        headers = {"X-Repo-Commit": commit}
        if api and operation == "revision":
            info = {
                "id": repo,
                "sha": commit,
                "private": False,
                "siblings": [{"rfilename": p} for p in files],
            }
            return self._send(handler, 200, json.dumps(info).encode(), "application/json", headers, body)
        if api and operation == "tree":
            listing = [
                {"type": "file", "path": p, "size": len(data), "oid": git_blob_id(data)}
                for p, data in sorted(files.items())
            ]
            return self._send(handler, 200, json.dumps(listing).encode(), "application/json", headers, body)
        if not api and operation == "resolve":
            if file not in files:
                return self._error(handler, 404, "EntryNotFound", f"{file} does not exist", body, headers)
            headers["ETag"] = f'"{git_blob_id(files[file])}"'
            if body:
                with self._lock:
                    self.sent.append(f"{repo}/{file}")
            return self._send(handler, 200, files[file], "application/octet-stream", headers, body)
        return self._error(handler, 404, "EntryNotFound", f"no such endpoint: {path}", body, headers)

    def _error(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        code: str,
        message: str,
        body: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps({"error": message}).encode()
        extra = {**(headers or {}), "X-Error-Code": code, "X-Error-Message": message}
        self._send(handler, status, data, "application/json", extra, body)

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        data: bytes,
        content_type: str,
        headers: dict[str, str],
        body: bool,
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if body:
            handler.wfile.write(data)
