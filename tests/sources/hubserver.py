"""A Hugging Face Hub-compatible HTTP server for tests and benchmarks, on loopback only.

It serves folders as model repositories in the shape the real huggingface_hub client reads:
`/api/models/{repo}/revision/{rev}` (with `?blobs=true`: sizes, git blob ids, LFS sha256),
`/api/models/{repo}/tree/{rev}`, and `/{repo}/resolve/{rev}/{file}` with `ETag`, `X-Repo-Commit`,
`X-Linked-Size` and `X-Linked-Etag`. Files of `lfs_threshold` bytes or more are LFS files: `resolve`
redirects them to a second loopback server ("storage", another port, so another origin) as the Hub
redirects to its CDN. Both honour `Range` unless `ignore_ranges` is set; `fail_after` cuts a response
off after that many body bytes; `private` repositories answer 401 without the right bearer token.
Every request is logged (`requests`), with whether it carried an Authorization header.
Adding a repository again moves its `main` to the new commit; the earlier commits stay resolvable.
`redirect_to` sends LFS redirects to another base URL (a host the gateway must not follow to), and
`redirect_loop` makes `resolve` redirect to itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
#: running servers: hub URL -> its storage's HOST:PORT (what a gateway in front of it must be allowed to follow)
_STORAGE: dict[str, str] = {}


def storage_hosts(url: str) -> list[str]:
    """The `--upstream-host` values a gateway in front of the test server at `url` needs."""
    return [_STORAGE[url]] if url in _STORAGE else []


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class _File:
    path: Path
    size: int
    blob_id: str
    sha256: str | None  # LFS files only


@dataclass
class _Repo:
    files: dict[str, _File]
    commit: str
    private: bool = False


@dataclass
class Logged:
    server: str  # "hub" or "storage"
    method: str
    path: str
    authorized: bool
    range: str | None


@dataclass
class HubServer:
    """Start with `start()` (or as a context manager); `url` is the endpoint to give as HF_ENDPOINT."""

    lfs_threshold: int = 1024
    token: str | None = None
    ignore_ranges: bool = False
    fail_after: int | None = None
    #: extra body bytes sent after each ranged answer (a server that sends more than asked)
    overshoot: int = 0
    #: subtracted from every size the listing gives (a listing that hides a file's tail)
    understate: int = 0
    #: extra names the listing gives (hostile names that no folder can hold)
    fake_names: list[str] = field(default_factory=list)
    #: base URL LFS files are redirected to instead of the storage server
    redirect_to: str | None = None
    #: `resolve` answers a redirect to itself, forever
    redirect_loop: bool = False
    requests: list[Logged] = field(default_factory=list)
    #: body bytes written by both servers (for benchmarks of clients that do not report what they read)
    bytes_sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _repos: dict[str, _Repo] = field(default_factory=dict)
    _blobs: dict[str, Path] = field(default_factory=dict)
    _history: dict[tuple[str, str], _Repo] = field(default_factory=dict)
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)

    def add_repo(self, repo: str, folder: str | os.PathLike[str], *, private: bool = False) -> str:
        """Serve every file under `folder` as `repo` at revision `main`; returns the commit id."""
        files: dict[str, _File] = {}
        root = Path(folder)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            size = path.stat().st_size
            lfs = size >= self.lfs_threshold
            sha = _sha256(path) if lfs else None
            blob = git_blob_id(path.read_bytes()) if not lfs else hashlib.sha1(sha.encode()).hexdigest()
            files[name] = _File(path, size, blob, sha)
            if sha:
                self._blobs[sha] = path
        listing = json.dumps(sorted((n, f.blob_id) for n, f in files.items())).encode()
        commit = hashlib.sha1(repo.encode() + listing).hexdigest()
        self._repos[repo] = _Repo(files, commit, private)
        self._history[(repo, commit)] = self._repos[repo]
        return commit

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def storage_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def start(self) -> HubServer:
        for kind in ("hub", "storage"):
            server = _Quiet(("127.0.0.1", 0), _handler(self, kind))
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        _STORAGE[self.url] = self.storage_url.removeprefix("http://")
        return self

    def stop(self) -> None:
        _STORAGE.pop(self.url, None)
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling ----------------------------------------------------------------------------

    def repo(self, repo: str, revision: str) -> tuple[_Repo | None, str | None]:
        """The repository and an error code (`RepoNotFound`, `RevisionNotFound`) for a request."""
        found = self._repos.get(repo)
        if found is None:
            return None, "RepoNotFound"
        if revision not in ("main", found.commit):
            earlier = self._history.get((repo, revision))
            return (earlier, None) if earlier else (None, "RevisionNotFound")
        return found, None

    def info(self, repo: str, entry: _Repo) -> dict[str, Any]:
        siblings = []
        for name, f in entry.files.items():
            sibling: dict[str, Any] = {"rfilename": name, "size": f.size - self.understate, "blobId": f.blob_id}
            if f.sha256:
                sibling["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": 134}
            siblings.append(sibling)
        siblings += [{"rfilename": name, "size": 1, "blobId": "0" * 40} for name in self.fake_names]
        return {"id": repo, "modelId": repo, "sha": entry.commit, "private": entry.private, "siblings": siblings}

    def tree(self, entry: _Repo) -> list[dict[str, Any]]:
        rows = []
        for name, f in entry.files.items():
            row: dict[str, Any] = {"type": "file", "oid": f.blob_id, "size": f.size, "path": name}
            if f.sha256:
                row["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            rows.append(row)
        return rows


class _Quiet(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops the connections of parallel clients (retried after 1 s)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that stop reading (as the scanner does past what it asked for) reset connections


def _handler(hub: HubServer, kind: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _log(self) -> None:
            hub.requests.append(
                Logged(kind, self.command, self.path, "authorization" in self.headers, self.headers.get("range"))
            )

        def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _error(self, status: int, code: str | None, message: str) -> None:
            self._json(status, {"error": message}, {"X-Error-Code": code} if code else None)

        def _authorized(self, entry: _Repo) -> bool:
            return not entry.private or self.headers.get("authorization") == f"Bearer {hub.token}"

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            self._log()
            path = unquote(urlsplit(self.path).path)
            if kind == "storage":
                blob = hub._blobs.get(path.strip("/"))
                if blob is None:
                    self._error(404, None, "no such object")
                    return
                self._file(blob, {"ETag": f'"{path.strip("/")}"'})
                return
            api = re.match(r"^/api/models/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(?:/(.*))?)?$", path)
            if api:
                repo, what, revision, _sub = api.groups()
                what, revision = what or "revision", revision or "main"
                entry, code = hub.repo(repo, revision)
                if entry is None:
                    self._error(404, code, f"{code}: {repo}@{revision}")
                elif not self._authorized(entry):
                    self._error(401, None, "Invalid username or password.")
                else:
                    self._json(200, hub.info(repo, entry) if what == "revision" else hub.tree(entry))
                return
            resolve = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
            if resolve is None:
                self._error(404, None, "not found")
                return
            repo, revision, name = resolve.groups()
            entry, code = hub.repo(repo, revision)
            if entry is None or not self._authorized(entry):
                self._error(404 if entry is None else 401, code, "not found")
                return
            f = entry.files.get(name)
            if f is None:
                self._error(404, "EntryNotFound", "entry not found")
                return
            headers = {"X-Repo-Commit": entry.commit, "ETag": f'"{f.sha256 or f.blob_id}"'}
            if hub.redirect_loop:
                headers["Location"] = self.path
            elif f.sha256:
                base = hub.redirect_to or hub.storage_url
                headers["Location"] = f"{base}/{f.sha256}?X-Signature={quote(repo)}"
            if "Location" in headers:
                if f.sha256:
                    headers |= {"X-Linked-Size": str(f.size), "X-Linked-Etag": f'"{f.sha256}"'}
                self.send_response(302)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._file(f.path, headers)

        def _file(self, path: Path, headers: dict[str, str]) -> None:
            size = path.stat().st_size
            start, stop, status = 0, size, 200
            wanted = _RANGE.match(self.headers.get("range", ""))
            if wanted and not hub.ignore_ranges:
                start = int(wanted.group(1))
                stop = min(size, int(wanted.group(2)) + 1 if wanted.group(2) else size)
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
            extra = min(hub.overshoot, size - stop) if status == 206 else 0
            self.send_header("Content-Length", str(stop - start + extra))
            self.end_headers()
            if self.command == "HEAD":
                return
            stop += extra
            limit = stop - start if hub.fail_after is None else min(stop - start, hub.fail_after)
            with path.open("rb") as handle:
                handle.seek(start)
                sent = 0
                while sent < limit:
                    chunk = handle.read(min(1 << 20, limit - sent))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    with hub._lock:
                        hub.bytes_sent += len(chunk)
            if sent < stop - start:  # cut off mid-transfer
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

    return Handler
