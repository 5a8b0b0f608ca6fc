"""Per-file SHA-256 manifests (`modelshield hash`), streamed so that multi-gigabyte files cost constant memory."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from modelshield.core.files import walk_files

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


def model_files(path: str) -> Iterator[tuple[str, str]]:
    """(name, path) of every file of a model: a file names itself; a folder's files are named relative to it."""
    if not os.path.isdir(path):
        yield path, path
        return
    for full in walk_files(path):
        yield os.path.relpath(full, path).replace(os.sep, "/"), full


def manifest(paths: Iterable[str]) -> Iterator[ManifestEntry]:
    """Hash every file of the given files and folders, in order; raises OSError for an unreadable file."""
    for root in paths:
        for name, full in model_files(root):
            yield ManifestEntry(name, full, sha256_file(full), os.path.getsize(full))


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
