"""Fetching a whole revision from the upstream Hub into the store, verified against its listing.

Every file is streamed to a temporary file in the store, checked against the size and digest the
listing gives (LFS sha256, or the git blob id of small files) and only then moved to its content
address: a transfer cut off mid-way, a truncated or altered file, never becomes servable content.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any
from urllib.parse import quote

from modelshield.gateway.store import Store
from modelshield.sources.http import httpx_module


class UpstreamError(Exception):
    """The upstream failed or answered something that does not match its own listing."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


class Upstream:
    def __init__(self, url: str, token: str | None) -> None:
        httpx = httpx_module()
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # httpx drops Authorization on redirects to another origin (the Hub's CDN), as the Hub client does.
        self.client = httpx.AsyncClient(
            headers=headers, follow_redirects=True, timeout=httpx.Timeout(60.0, connect=10.0)
        )
        self._errors: tuple[type[BaseException], ...] = (httpx.HTTPError, OSError)

    async def close(self) -> None:
        await self.client.aclose()

    async def info(self, repo: str, revision: str) -> dict[str, Any]:
        """The repository info at a revision, with LFS digests (`blobs=true`)."""
        url = f"{self.url}/api/models/{quote(repo)}/revision/{quote(revision, safe='')}"
        try:
            response = await self.client.get(url, params={"blobs": "true"})
        except self._errors as exc:
            raise UpstreamError(f"upstream unavailable: {type(exc).__name__}") from exc
        if response.status_code in (401, 403, 404):
            code = response.headers.get("X-Error-Code") or "RepoNotFound"
            raise UpstreamError(f"{code}: {repo}@{revision} not found upstream", 404)
        if response.status_code != 200:
            raise UpstreamError(f"upstream answered {response.status_code} for {repo}@{revision}")
        data = response.json()
        if not isinstance(data, dict) or not isinstance(data.get("sha"), str):
            raise UpstreamError(f"upstream info for {repo}@{revision} has no commit")
        return data

    async def fetch(self, store: Store, repo: str, commit: str, sibling: dict[str, Any]) -> dict[str, Any]:
        """Fetch one file of a revision into the store; its manifest entry (sha256, size, etag, lfs)."""
        name = str(sibling["rfilename"])
        lfs = sibling.get("lfs") if isinstance(sibling.get("lfs"), dict) else None
        size = int(lfs["size"]) if lfs else int(sibling.get("size", -1))
        url = f"{self.url}/{quote(repo)}/resolve/{commit}/{quote(name)}"
        fd, temporary = store.temporary()
        sha256, written = hashlib.sha256(), 0
        git = hashlib.sha1(b"blob %d\0" % size)  # noqa: S324 - the git blob id, as the listing gives it
        try:
            with os.fdopen(fd, "wb") as out:
                async with self.client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response:
                    if response.status_code != 200:
                        raise UpstreamError(f"upstream answered {response.status_code} for {name}")
                    async for chunk in response.aiter_raw():
                        written += len(chunk)
                        if written > size:
                            raise UpstreamError(f"upstream sent more than the {size} bytes listed for {name}")
                        sha256.update(chunk)
                        git.update(chunk)
                        out.write(chunk)
            if written != size:
                raise UpstreamError(f"upstream sent {written} of the {size} bytes listed for {name} (truncated)")
            digest = sha256.hexdigest()
            if lfs:
                expected, etag = str(lfs.get("sha256", "")), digest
                actual = digest
            else:
                expected = str(sibling.get("blobId", ""))
                actual = etag = git.hexdigest()
            if actual != expected:
                raise UpstreamError(f"{name} does not match the digest upstream lists for it ({expected[:12]}...)")
            store.keep(temporary, digest)
        except self._errors as exc:
            raise UpstreamError(f"upstream failed while sending {name}: {type(exc).__name__}") from exc
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return {"sha256": digest, "size": written, "etag": etag, "lfs": bool(lfs), "blob_id": sibling.get("blobId")}
