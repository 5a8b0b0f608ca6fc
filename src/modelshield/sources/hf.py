"""Hugging Face Hub repositories: `hf://ORG/NAME[@REVISION][/PATH]` and the Hub's own web addresses.

The revision's files are listed with huggingface_hub (`HfApi.model_info(files_metadata=True)`: one
request giving the commit, each file's size and its LFS sha256 or git blob id), against `HF_ENDPOINT` and
with the token huggingface_hub finds (`HF_TOKEN`, or a login), read when the scan starts. Files are then
read from `{endpoint}/{repo}/resolve/{commit}/{file}` by range requests; the Hub redirects large files to
a storage host, which never receives the token.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from modelshield.core.dependencies import Dependency
from modelshield.core.paths import escape_reason
from modelshield.core.source import Source
from modelshield.deps.resolve import download_failure
from modelshield.sources import RemoteFile, RemoteInputError, RemoteUnavailable, Target
from modelshield.sources.http import Counter, Fetch, RangeSource

DEFAULT_ENDPOINT = "https://huggingface.co"
_REPO = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_HF_URI = re.compile(r"^hf://(?P<repo>[^/@]+/[^/@]+)(?:@(?P<rev>[^/]+))?(?P<path>/.*)?$")
_WEB_KINDS = ("resolve", "blob", "tree")


def endpoint() -> str:
    """The Hub's address, as huggingface_hub takes it (`HF_ENDPOINT`), read now rather than at import."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _token() -> str | None:
    from huggingface_hub import get_token  # noqa: PLC0415 - optional

    token = get_token()
    return str(token) if token else None


def _check_repo(repo: str, uri: str) -> None:
    if not _REPO.match(repo):
        raise RemoteInputError(f"malformed Hub address {uri!r}: expected ORG/NAME, got {repo!r}")


def _check_path(path: str, uri: str) -> str:
    path = path.strip("/")
    reason = escape_reason(path) if path else None
    if reason or "\\" in path or any(p in ("", ".", "..") for p in path.split("/") if path):
        raise RemoteInputError(f"malformed Hub address {uri!r}: the path {path!r} {reason or 'is not plain'}")
    return path


def parse(uri: str) -> tuple[str, str | None, str] | None:
    """`(repo, revision, path)` of a Hub URI or web address (of the default or `HF_ENDPOINT` host);
    None when `uri` is not a Hub address; raises RemoteInputError when it is one but malformed."""
    if uri.startswith("hf://"):
        found = _HF_URI.match(uri)
        if found is None:
            raise RemoteInputError(f"malformed Hub address {uri!r}: expected hf://ORG/NAME[@REVISION][/PATH]")
        repo, rev, path = found.group("repo"), found.group("rev"), found.group("path") or ""
        _check_repo(repo, uri)
        return repo, unquote(rev) if rev else None, _check_path(unquote(path), uri)
    parts = urlsplit(uri)
    hosts = {urlsplit(DEFAULT_ENDPOINT).netloc, urlsplit(endpoint()).netloc}
    if parts.netloc not in hosts or parts.query or parts.fragment:
        return None
    base = urlsplit(endpoint()).path.rstrip("/") if parts.netloc == urlsplit(endpoint()).netloc else ""
    segments = [unquote(s) for s in parts.path[len(base) :].strip("/").split("/")]
    if len(segments) < 2 or segments[0] in ("api", "datasets", "spaces"):
        raise RemoteInputError(f"not a Hub model address: {uri!r} (expected {DEFAULT_ENDPOINT}/ORG/NAME)")
    repo = "/".join(segments[:2])
    _check_repo(repo, uri)
    rest = segments[2:]
    if not rest:
        return repo, None, ""
    if rest[0] not in _WEB_KINDS or len(rest) < 2:
        raise RemoteInputError(f"not a Hub model address: {uri!r} (expected .../resolve/REVISION/FILE)")
    return repo, rest[1], _check_path("/".join(rest[2:]), uri)


def _listing_error(exc: Exception, repo: str, revision: str | None) -> RemoteInputError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    what = f"{repo}@{revision}" if revision else repo
    reason = download_failure(exc)
    if status in (401, 403) and "gated" not in reason:
        reason = (
            f"authentication needed, or no such repository (HTTP {status}): set HF_TOKEN to a token that can read it"
        )
    return RemoteInputError(f"cannot list hf://{what}: {reason}")


def _digest(sibling: Any) -> str | None:
    lfs = getattr(sibling, "lfs", None)
    sha256 = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
    if isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256):
        return f"sha256:{sha256}"
    blob = getattr(sibling, "blob_id", None)
    return f"git:{blob}" if isinstance(blob, str) and re.fullmatch(r"[0-9a-f]{40}", blob) else None


def target(uri: str, repo: str, revision: str | None, path: str, client: Any) -> Target:
    """List a revision's files (all, the one file `path`, or those under the folder `path`)."""
    try:
        from huggingface_hub import HfApi  # noqa: PLC0415 - optional (the `hub` extra)
    except ImportError:
        raise RemoteUnavailable("scanning the Hub needs huggingface_hub: pip install 'modelshield[hub]'") from None
    base, token = endpoint(), _token()
    try:
        info = HfApi(endpoint=base, token=token).model_info(repo, revision=revision, files_metadata=True)
    except Exception as exc:
        raise _listing_error(exc, repo, revision) from None
    commit = str(info.sha or revision or "main")
    auth = {"authorization": f"Bearer {token}"} if token else {}
    files: list[RemoteFile] = []
    for sibling in sorted(info.siblings or [], key=lambda s: s.rfilename):
        name = sibling.rfilename
        if path and name != path and not name.startswith(path + "/"):
            continue
        if not isinstance(name, str) or escape_reason(name) or any(p in ("", ".", "..") for p in name.split("/")):
            raise RemoteInputError(f"hf://{repo}@{commit} lists a file name that is not a plain path: {name!r}")
        url = f"{base}/{repo}/resolve/{commit}/{quote(name)}"
        shown = f"hf://{repo}@{commit}/{name}"

        def opener(counter: Counter, url: str = url, size: int | None = sibling.size, shown: str = shown) -> Source:
            fetch = Fetch(client, url, auth)
            if size is None:
                return RangeSource.probe(fetch, shown, counter)
            return RangeSource(fetch, size, shown, counter)

        files.append(RemoteFile(name, sibling.size if sibling.size is not None else -1, _digest(sibling), opener))
    if path and not files:
        raise RemoteInputError(f"hf://{repo}@{commit} has no file or folder {path!r}")
    return Target(uri, f"hf://{repo}@{commit}", files, commit, 1, path)


def dependency_uri(dependency: Dependency) -> str:
    """The `hf://` URI of a Hub dependency, for scanning it remotely."""
    revision = f"@{quote(dependency.revision, safe='')}" if dependency.revision else ""
    return f"hf://{dependency.ref}{revision}"
