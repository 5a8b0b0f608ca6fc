"""Which store a remote URI names, and its listing as a `Target`."""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import unquote, urlsplit

from modelshield.core.errors import ScanError
from modelshield.core.source import Source
from modelshield.sources import RemoteFile, RemoteInputError, Target
from modelshield.sources.http import DEFAULT_BUDGET, Counter, Fetch, RangeSource


def _url_file(uri: str, client: Any) -> Target:
    """Any HTTP(S) URL of one file: its size comes from the first range response (or the whole body)."""
    parts = urlsplit(uri)
    if not parts.hostname:
        raise RemoteInputError(f"malformed URL {uri!r}: no host")
    name = posixpath.basename(unquote(parts.path)) or "index"
    if name in (".", ".."):
        name = "index"

    first = Counter(DEFAULT_BUDGET)
    try:  # a URL that cannot be read at all is unreadable input (exit 2), as a missing file is
        source = RangeSource.probe(Fetch(client, uri), uri, first)
    except ScanError as exc:
        raise RemoteInputError(f"cannot read {uri}: {exc}") from None

    def opener(counter: Counter) -> Source:
        counter.received, counter.requests = first.received, first.requests
        source.counter = counter
        return source

    # Named without its query: a signed URL's credentials stay out of reports.
    root = f"{parts.scheme}://{parts.netloc}{posixpath.dirname(parts.path)}".rstrip("/")
    return Target(uri, root, [RemoteFile(name, source.size, None, opener)], None, 0, name)


def target(uri: str, client: Any) -> Target:
    """List the files behind `uri`; raises RemoteInputError for malformed or unknown targets."""
    from modelshield.sources import hf  # noqa: PLC0415 - imports huggingface_hub only for the Hub

    if uri.startswith("s3://"):
        from modelshield.sources import s3  # noqa: PLC0415 - optional (boto3)

        return s3.target(uri)
    if uri.startswith(("models:/", "runs:/")):
        from modelshield.sources import mlflow  # noqa: PLC0415 - optional (mlflow)

        return mlflow.target(uri, client)
    hub = hf.parse(uri)
    if hub is not None:
        repo, revision, path = hub
        return hf.target(uri, repo, revision, path, client)
    if uri.startswith(("https://", "http://")):
        return _url_file(uri, client)
    raise RemoteInputError(f"not a remote address modelshield reads: {uri!r}")
