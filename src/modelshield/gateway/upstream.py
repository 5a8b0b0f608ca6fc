"""Fetching a whole revision from the upstream Hub into the store, verified against its listing.

Every file is streamed to a temporary file in the store, checked against the size and digest the
listing gives (LFS sha256, or the git blob id of small files) and only then moved to its content
address: a transfer cut off mid-way, a truncated or altered file, never becomes servable content.

Redirects are followed here, not by httpx: the Hub sends LFS files to its CDN, and a redirect is an
instruction from a remote server to make this one, inside the organisation's network, ask somewhere
else. Only the upstream's own origin and the hosts given (`--upstream-host`, by default the Hub's CDN
and storage hosts) are followed, over https (plain http only when the upstream itself is http), at most
`MAX_REDIRECTS` times; anything else (a cloud metadata address, another port on the gateway's machine)
is an upstream error and nothing is fetched from it. The upstream token goes to the upstream's own
origin only, never to a host a redirect names, even an allowed one: huggingface_hub forwards its
token to Hub origins only, and the CDN's URLs are signed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from modelshield.gateway.store import Store
from modelshield.sources.http import httpx_module

#: where the Hub sends downloads (hub-docs, "downloading behind a proxy or firewall"): its CDN and storage
HUB_HOSTS = (
    "huggingface.co",
    "hf.co",
    "cdn-lfs.hf.co",
    "cdn-lfs-us-1.hf.co",
    "cdn-lfs-eu-1.hf.co",
    "cdn-lfs.huggingface.co",
    "cdn-lfs-us-1.huggingface.co",
    "cdn-lfs-eu-1.huggingface.co",
    "cas-bridge.xethub.hf.co",
    "cas-bridge.xethub-eu.hf.co",
    "us.aws.cdn.hf.co",
    "us.gcp.cdn.hf.co",
)
#: the Hub redirects a file once (to its CDN), a renamed repository once more
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, with the scheme's default port when none is given."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _PORTS.get(scheme, 0)
    except ValueError:  # a port out of range
        port = -1
    return scheme, (parts.hostname or "").lower(), port


def _host(entry: str) -> tuple[str, int | None]:
    """`HOST` or `HOST:PORT` as given to --upstream-host (a URL is accepted too)."""
    if "//" not in entry:
        entry = "//" + entry
    parts = urlsplit(entry)
    return (parts.hostname or "").lower(), parts.port


class UpstreamError(Exception):
    """The upstream failed or answered something that does not match its own listing."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


class StoreError(UpstreamError):
    """The gateway could not keep what the upstream sent (its disk is full, or refused the write): 507."""

    def __init__(self, name: str, exc: OSError) -> None:
        super().__init__(f"the gateway's store could not keep {name}: {exc.strerror or type(exc).__name__}", 507)


class Upstream:
    def __init__(self, url: str, token: str | None, hosts: Iterable[str] = HUB_HOSTS) -> None:
        httpx = httpx_module()
        self.url = url.rstrip("/")
        self.origin = origin(self.url)
        self.hosts = frozenset(_host(entry) for entry in hosts)
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.AsyncClient(follow_redirects=False, timeout=httpx.Timeout(60.0, connect=10.0))
        self._errors: tuple[type[BaseException], ...] = (httpx.HTTPError, OSError)

    async def close(self) -> None:
        await self.client.aclose()

    def allowed(self, url: str) -> bool:
        """Whether a redirect to `url` is followed: the upstream's origin or an allowed host, over https
        (or http when the upstream is http itself)."""
        scheme, host, port = origin(url)
        if scheme not in ("https", self.origin[0]) or not host:
            return False
        if (scheme, host, port) == self.origin:
            return True
        return (host, port) in self.hosts or (port == _PORTS.get(scheme) and (host, None) in self.hosts)

    @contextlib.asynccontextmanager
    async def _get(
        self, url: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> AsyncIterator[Any]:
        """The streamed answer to a GET, after the redirects this upstream may give (see the module)."""
        for hop in range(MAX_REDIRECTS + 1):
            request = self.client.build_request("GET", url, params=params, headers=headers)
            # Both checks on the URL as httpx will request it, whatever urlsplit made of it.
            if hop and not self.allowed(str(request.url)):
                raise UpstreamError("upstream redirected to a URL that is not an allowed upstream host")
            if origin(str(request.url)) == self.origin:
                request.headers.update(self._auth)
            response = await self.client.send(request, stream=True)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                try:
                    yield response
                finally:
                    await response.aclose()
                return
            await response.aclose()
            target = urljoin(str(request.url), location)
            if not self.allowed(target):
                scheme, host, port = origin(target)  # never the whole URL: a signed one carries credentials
                raise UpstreamError(f"upstream redirected to {scheme}://{host}:{port}, not an allowed upstream host")
            url, params = target, None
        raise UpstreamError(f"upstream redirected more than {MAX_REDIRECTS} times")

    async def info(self, repo: str, revision: str) -> dict[str, Any]:
        """The repository info at a revision, with LFS digests (`blobs=true`)."""
        url = f"{self.url}/api/models/{quote(repo)}/revision/{quote(revision, safe='')}"
        try:
            async with self._get(url, params={"blobs": "true"}) as response:
                await response.aread()
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
                async with self._get(url, headers={"Accept-Encoding": "identity"}) as response:
                    if response.status_code != 200:
                        raise UpstreamError(f"upstream answered {response.status_code} for {name}")
                    async for chunk in response.aiter_raw():
                        written += len(chunk)
                        if written > size:
                            raise UpstreamError(f"upstream sent more than the {size} bytes listed for {name}")
                        sha256.update(chunk)
                        git.update(chunk)
                        try:
                            out.write(chunk)
                        except OSError as exc:  # ours, not the upstream's: a full disk
                            raise StoreError(name, exc) from exc
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
