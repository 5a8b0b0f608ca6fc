"""Resolving a dependency to files on this machine: paths relative to the file that names them, and
Hub repositories through the local Hugging Face cache. The network is touched only by `download`."""

from __future__ import annotations

import importlib.util
import os
import re
from typing import NamedTuple

from modelshield.core.dependencies import Dependency
from modelshield.core.files import inside
from modelshield.core.findings import truncate
from modelshield.core.paths import escape_reason

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class DownloadUnavailable(RuntimeError):
    """`--download` was asked for but huggingface_hub is not installed."""


class Resolution(NamedTuple):
    """Where a dependency is (`path`), or why it could not be found (`reason`).

    `root` is the cache folder for Hub repositories: every file scanned for the dependency must resolve
    inside it, so that a planted link cannot make the scan (or the loader) read elsewhere.
    """

    status: str  # "local", "cached", "downloaded", "remote" (laid out by modelshield.sources) or "unresolved"
    path: str | None = None
    reason: str | None = None
    root: str | None = None
    suspicious: bool = False  # a link out of the cache, not merely a missing dependency
    failed: bool = False  # asked for (`--download`) and could not be fetched


def hub_cache() -> str:
    """The Hugging Face Hub cache folder, found as huggingface_hub finds it."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return os.path.expanduser(os.environ[variable])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return os.path.join(os.path.expanduser(home), "hub")


def require_download() -> None:
    if importlib.util.find_spec("huggingface_hub") is None:
        raise DownloadUnavailable("--download needs huggingface_hub: pip install 'modelshield[hub]'")


def _download(repository: str, revision: str | None, cache: str) -> str:
    """The snapshot folder of `repository`, downloaded into the cache (the only network access)."""
    from huggingface_hub import snapshot_download  # noqa: PLC0415 - optional, and only with --download

    return str(snapshot_download(repository, revision=revision, cache_dir=cache))


def _cached(dependency: Dependency, cache: str) -> Resolution:
    repo = os.path.join(cache, "models--" + dependency.ref.replace("/", "--"))
    revision = dependency.revision or "main"
    shown = f"{dependency.ref}@{revision}"
    if escape_reason(revision) or "\\" in revision:
        return Resolution("unresolved", reason=f"revision {revision!r} is not a plain name")
    commit = revision if _COMMIT.match(revision) else None
    ref_file = os.path.join(repo, "refs", revision)
    if commit is None and os.path.isfile(ref_file) and inside(ref_file, cache):
        with open(ref_file, encoding="utf-8", errors="replace") as handle:
            text = handle.read(100).strip()
        commit = text if _COMMIT.match(text) else None
    snapshot = os.path.join(repo, "snapshots", commit) if commit else None
    if snapshot is None or not os.path.isdir(snapshot):
        return Resolution("unresolved", reason=f"{shown} is not in the Hugging Face cache ({cache})")
    if not inside(snapshot, cache):
        reason = f"the cached snapshot of {shown} links outside the cache ({os.path.realpath(snapshot)})"
        return Resolution("unresolved", reason=reason, suspicious=True)
    return Resolution("cached", snapshot, root=cache)


def resolve(dependency: Dependency, naming_file: str, download: bool = False) -> Resolution:
    """Find a dependency offline (or download a Hub repository missing from the cache when asked)."""
    if dependency.kind == "url":
        return Resolution("unresolved", reason="a URL, which the scanner never fetches")
    if dependency.kind == "path":
        path = os.path.normpath(os.path.join(os.path.dirname(naming_file), dependency.ref))
        if os.path.exists(path):
            return Resolution("local", path)
        return Resolution("unresolved", reason=f"no such file or folder: {path}")
    cache = hub_cache()
    found = _cached(dependency, cache)
    if found.status != "unresolved" or found.suspicious or not download:
        return found
    try:
        snapshot = _download(dependency.ref, dependency.revision, cache)
    except Exception as exc:  # network, authentication, missing repository: the dependency stays unscanned
        reason = f"download of {dependency.ref} failed: {download_failure(exc)}"
        return Resolution("unresolved", reason=reason, failed=True)
    return Resolution("downloaded", snapshot, root=cache)


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return truncate(lines[0] if lines else type(exc).__name__, 160)


def download_failure(exc: BaseException) -> str:
    """Why huggingface_hub could not fetch a repository, in one line: its errors are paragraphs with
    advice and URLs, and a connection failure arrives wrapped in a 'cannot find it in the cache' error.
    Recognised by class name and HTTP status, so that no huggingface_hub version is required."""
    chain = _causes(exc)
    names = {cls.__name__ for error in chain for cls in type(error).__mro__}
    statuses = [getattr(getattr(e, "response", None), "status_code", None) for e in chain]
    status = next((s for s in statuses if isinstance(s, int)), None)
    if "GatedRepoError" in names:
        return f"the repository is gated (HTTP {status}): accept its conditions on the Hub, then log in"
    if "RevisionNotFoundError" in names:
        return f"no such revision on the Hub (HTTP {status})"
    if "RepositoryNotFoundError" in names:
        return f"repository not found, or private and not visible with your credentials (HTTP {status})"
    if status in (401, 403):
        return f"authentication failed (HTTP {status}): log in with `huggingface-cli login` or set HF_TOKEN"
    if status is not None:
        return f"the Hub answered HTTP {status}"
    offline = {"ConnectError", "ConnectionError", "TimeoutException", "Timeout", "OfflineModeIsEnabled"}
    unreachable = next((e for e in reversed(chain) if offline & {c.__name__ for c in type(e).__mro__}), None)
    if unreachable is not None:
        return f"the Hub could not be reached ({_first_line(unreachable)})"
    return f"{type(exc).__name__}: {_first_line(exc)}"
