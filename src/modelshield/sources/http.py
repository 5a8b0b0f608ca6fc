"""A `Source` over HTTP range requests: scanners read a remote file as they read one on disk, and only
the bytes their formats need cross the network.

Reads are served from a bounded cache of fixed blocks; missing blocks are fetched with one request per
run of adjacent blocks (coalescing), and a read that continues the previous one doubles the read-ahead
window (a pickle or a decoded stream is read sequentially; a zip directory and its members are not).
Every byte received counts against a per-file budget. A server that ignores `Range` (answers 200) is
read once, streamed into a temporary file on disk up to that budget; a server that sends more than asked
is read only as far as asked. Any transfer failure is sticky: it is the source's `error`, which the
engine reports as a fail-closed finding, and no later read returns data.
"""

from __future__ import annotations

import functools
import re
import tempfile
from collections import OrderedDict
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from modelshield.core.errors import LimitExceeded, ScanError
from modelshield.core.source import Source
from modelshield.sources import RemoteUnavailable

BLOCK = 4096
#: Blocks kept in memory per file (32 MiB: a bound on memory, not on bytes fetched).
MAX_CACHED_BLOCKS = 8192
#: The read-ahead window grows up to this many blocks (1 MiB) while reads are sequential.
MAX_AHEAD_BLOCKS = 256
#: Default bytes fetched per file before the scan of that file stops (a fail-closed SCN005).
DEFAULT_BUDGET = 512 * 1024 * 1024
MAX_REDIRECTS = 10
MAX_CONNECTIONS = 64
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def httpx_module() -> Any:
    """The httpx API: huggingface_hub 1.x ships it as `httpx`, 2.x as the `httpx2` fork."""
    try:
        import httpx2  # noqa: PLC0415 - optional (the `hub` extra)

        return httpx2
    except ImportError:
        pass
    try:
        import httpx  # noqa: PLC0415

        return httpx
    except ImportError:
        raise RemoteUnavailable("remote scans need httpx: pip install 'modelshield[hub]'") from None


@functools.cache
def shared_client() -> Any:
    """One HTTP client for the process, shared by the threads of every remote scan (creating one loads the
    system's certificates, a twentieth of a second); redirects are followed by hand, see `Fetch`."""
    httpx = httpx_module()
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
    return httpx.Client(follow_redirects=False, timeout=httpx.Timeout(30.0, connect=10.0), limits=limits)


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


class Counter:
    """Bytes received and requests made for one file, and the budget they may not pass."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.received = 0
        self.requests = 0

    def add(self, n: int, what: str) -> None:
        self.received += n
        if self.received > self.budget:
            raise LimitExceeded("max_fetch_bytes", f"more than {self.budget} bytes fetched for {what}")


class Fetcher(Protocol):
    """What a `RangeSource` reads through: `open` answers a `Range` request with a response that has
    `status_code`, `headers`, `iter_raw()` and `close()` (an HTTP response, or an S3 answer shaped so)."""

    def open(self, extra: dict[str, str]) -> Any: ...


class Fetch:
    """GET requests for one URL: redirects followed by hand so that credentials (`auth_headers`) go only
    to the origin they were given for; the final URL is reused for later ranges."""

    def __init__(self, client: Any, url: str, auth_headers: dict[str, str] | None = None) -> None:
        self.client = client
        self.url = url
        self._auth_origin = origin(url)
        self._auth = auth_headers or {}

    def _headers(self, url: str, extra: dict[str, str]) -> dict[str, str]:
        headers = dict(extra)
        if origin(url) == self._auth_origin:
            headers.update(self._auth)
        return headers

    def open(self, extra: dict[str, str]) -> Any:
        """A streamed response after redirects (the caller closes it); raises ScanError on failure."""
        httpx = httpx_module()
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            request = self.client.build_request("GET", url, headers=self._headers(url, extra))
            try:
                response = self.client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise ScanError(f"transfer failed: {type(exc).__name__}: {exc}") from exc
            if response.status_code in (301, 302, 303, 307, 308) and "location" in response.headers:
                response.close()
                url = urljoin(url, response.headers["location"])
                self.url = url
                continue
            if response.status_code >= 400:
                response.close()
                raise ScanError(f"transfer failed: HTTP {response.status_code} from {origin(url)[1]}")
            return response
        raise ScanError(f"transfer failed: more than {MAX_REDIRECTS} redirects")


def read_body(response: Any, limit: int, counter: Counter, what: str) -> bytes:
    """At most `limit` bytes of a response body (the rest is never read), counted."""
    httpx = httpx_module()
    chunks: list[bytes] = []
    got = 0
    try:
        for chunk in response.iter_raw():
            take = chunk[: limit - got]
            counter.add(len(chunk), what)
            chunks.append(take)
            got += len(take)
            if got >= limit:
                break
    except httpx.HTTPError as exc:
        raise ScanError(f"transfer of {what} failed after {got} bytes: {type(exc).__name__}: {exc}") from exc
    finally:
        response.close()
    return b"".join(chunks)


class RangeSource(Source):
    """A remote file of known size read through HTTP range requests."""

    def __init__(self, fetch: Fetcher, size: int, what: str, counter: Counter) -> None:
        self.fetch = fetch
        self._size = size
        self.what = what
        self.counter = counter
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._ahead = 0
        self._next = -1
        self._spool: Any = None  # the whole body on disk, when the server ignores ranges

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, n: int) -> bytes:
        end = min(offset + max(n, 0), self._size)
        if offset < 0 or offset >= end:
            return b""
        if self.error is not None:
            raise self.error
        try:
            if self._spool is not None:
                self._spool.seek(offset)
                return bytes(self._spool.read(end - offset))
            first, last = offset // BLOCK, (end - 1) // BLOCK
            self._fill(first, last)
            if self._spool is not None:
                return self.read_at(offset, n)
            data = b"".join(self._blocks[b] for b in range(first, last + 1))
        except ScanError as exc:
            self.error = exc  # sticky: the engine reports it, and nothing after it is trusted
            raise
        except Exception as exc:  # a client library's own error: the transfer failed all the same
            self.error = ScanError(f"transfer of {self.what} failed: {type(exc).__name__}: {exc}")
            raise self.error from exc
        start = offset - first * BLOCK
        return data[start : start + end - offset]

    def _fill(self, first: int, last: int) -> None:
        sequential = first in (self._next, self._next - 1)
        self._ahead = min(max(1, self._ahead * 2), MAX_AHEAD_BLOCKS) if sequential else 0
        self._next = last + 1
        blocks_total = (self._size + BLOCK - 1) // BLOCK
        wanted = list(range(first, min(last + self._ahead, blocks_total - 1) + 1))
        missing = [b for b in wanted if b not in self._blocks]
        for b in wanted:
            if b in self._blocks:
                self._blocks.move_to_end(b)
        runs: list[list[int]] = []
        for b in missing:
            if runs and runs[-1][-1] == b - 1:
                runs[-1].append(b)
            else:
                runs.append([b])
        for run in runs:
            self._get(run[0], run[-1])
            if self._spool is not None:
                return
        while len(self._blocks) > MAX_CACHED_BLOCKS:
            self._blocks.popitem(last=False)

    @classmethod
    def probe(cls, fetch: Fetcher, what: str, counter: Counter) -> RangeSource:
        """A source whose size is not listed: the first block's response tells it (or the whole body does)."""
        source = cls(fetch, 1, what, counter)
        response = fetch.open({"Range": f"bytes=0-{BLOCK - 1}", "Accept-Encoding": "identity"})
        counter.requests += 1
        found = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if response.status_code == 206 and found is not None and found.group(3) != "*" and found.group(1) == "0":
            source._size = int(found.group(3))
            data = read_body(response, min(BLOCK, source._size), counter, what)
            if len(data) < min(BLOCK, source._size):
                raise ScanError(f"transfer of {what} failed: {len(data)} bytes of the first block")
            source._blocks[0] = data
            return source
        declared = response.headers.get("content-length", "")
        if response.status_code != 200 or not declared.isdigit():
            response.close()
            raise ScanError(f"{what}: HTTP {response.status_code} without a usable length")
        source._size = int(declared)
        source._spool_body(response)
        return source

    def _get(self, first: int, last: int) -> None:
        start, stop = first * BLOCK, min((last + 1) * BLOCK, self._size)
        self.counter.requests += 1
        response = self.fetch.open({"Range": f"bytes={start}-{stop - 1}", "Accept-Encoding": "identity"})
        if response.status_code == 200:
            self._spool_body(response)
            return
        if response.status_code != 206:
            response.close()
            raise ScanError(f"transfer of {self.what} failed: HTTP {response.status_code} to a range request")
        found = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if found is None or int(found.group(1)) != start:
            response.close()
            shown = response.headers.get("content-range")
            raise ScanError(f"transfer of {self.what} failed: asked for bytes {start}-{stop - 1}, got {shown!r}")
        if found.group(3) != "*" and int(found.group(3)) != self._size:
            # Bytes past the listed size would be loaded but never scanned.
            response.close()
            raise ScanError(f"{self.what} is {found.group(3)} bytes on the server but listed as {self._size}")
        data = read_body(response, stop - start, self.counter, self.what)
        if len(data) < stop - start:
            raise ScanError(f"transfer of {self.what} failed: {len(data)} of {stop - start} bytes at {start}")
        for b in range(first, last + 1):
            self._blocks[b] = data[(b - first) * BLOCK : (b - first + 1) * BLOCK]

    def _spool_body(self, response: Any) -> None:
        """The server sent the whole file: keep it on disk (bounded memory), within the budget."""
        httpx = httpx_module()
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.counter.budget - self.counter.received:
            response.close()
            raise LimitExceeded(
                "max_fetch_bytes",
                f"the server ignores range requests and {self.what} is {declared} bytes, more than the "
                f"{self.counter.budget} bytes that may be fetched for one file",
            )
        spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        got = 0
        try:
            for chunk in response.iter_raw():
                self.counter.add(len(chunk), self.what)
                spool.write(chunk[: max(0, self._size - got)])
                got += len(chunk)
                if got > self._size:
                    break
        except httpx.HTTPError as exc:
            spool.close()
            raise ScanError(f"transfer of {self.what} failed after {got} bytes: {type(exc).__name__}: {exc}") from exc
        except ScanError:
            spool.close()
            raise
        finally:
            response.close()
        if got != self._size:
            spool.close()
            raise ScanError(f"transfer of {self.what} failed: {got} bytes received, {self._size} listed")
        self._spool = spool
        self._blocks.clear()

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
