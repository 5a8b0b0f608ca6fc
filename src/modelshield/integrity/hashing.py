"""Per-file SHA-256 manifests (`modelshield hash`), streamed so that multi-gigabyte files cost constant memory."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from modelshield.core.files import Skipped, check_file, walk

#: Read size on Python 3.10 (3.11+ uses hashlib.file_digest): large reads keep per-call overhead negligible.
CHUNK_SIZE = 1 << 20


class ManifestEntry(NamedTuple):
    """One file: its name in the manifest (relative to the folder given), where it is, and its digest."""

    name: str
    path: str
    sha256: str
    size: int


def sha256_file(path: str) -> str:
    """The file's SHA-256 (hex), read in large chunks into one reused buffer."""
    import hashlib  # noqa: PLC0415 - loading OpenSSL costs start-up time that a scan does not need

    with open(path, "rb") as handle:
        if sys.version_info >= (3, 11):
            return hashlib.file_digest(handle, "sha256").hexdigest()
        digest = hashlib.sha256()
        buffer = memoryview(bytearray(CHUNK_SIZE))
        while count := handle.readinto(buffer):
            digest.update(buffer[:count])
        return digest.hexdigest()


def model_files(path: str) -> Iterator[tuple[str, str] | Skipped]:
    """(name, path) of every file of a model (a file names itself; a folder's files are named relative
    to it), and every path under a folder that was not read."""
    if not os.path.isdir(path):
        yield check_file(path) or (path, path)
        return
    for entry in walk(path):
        if isinstance(entry, Skipped):
            yield entry
        else:
            yield os.path.relpath(entry, path).replace(os.sep, "/"), entry


def manifest(paths: Iterable[str]) -> Iterator[ManifestEntry | Skipped]:
    """Hash every file of the given files and folders, in order; a file that cannot be read, and every
    path under a folder that was not read, comes out as `Skipped` in its place."""
    for root in paths:
        for item in model_files(root):
            if isinstance(item, Skipped):
                yield item
                continue
            name, full = item
            try:
                yield ManifestEntry(name, full, sha256_file(full), os.path.getsize(full))
            except OSError as exc:
                yield Skipped(full, f"cannot read {full}: {exc.strerror or exc}")


def sha256sum_line(entry: ManifestEntry) -> str:
    """A `sha256sum` line; names with a backslash or newline are escaped the way `sha256sum -c` expects."""
    name = entry.name
    if "\\" in name or "\n" in name or "\r" in name:
        name = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{entry.sha256}  {name}"
    return f"{entry.sha256}  {name}"


def manifest_json(entries: Iterable[ManifestEntry]) -> dict[str, Any]:
    return {
        "algorithm": "sha256",
        "files": [{"path": e.name, "sha256": e.sha256, "size": e.size} for e in entries],
    }
