"""Reading the few small members of a zip that a loader treats as a whole (skops, TorchServe, torch
checkpoints and packages), with the standard library's `zipfile`, as those loaders do; the zip walker
scans every member on its own anyway."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence

from modelshield.core.source import Source

_ERRORS = (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, KeyError)


def zip_names(source: Source) -> Sequence[str] | None:
    """Member names of a zip, or None when the bytes are not one `zipfile` can read."""
    if not source.head(4).startswith(b"PK\x03\x04"):
        return None
    try:
        with zipfile.ZipFile(source.stream()) as archive:
            return archive.namelist()
    except _ERRORS:
        return None


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> tuple[bytes | None, str]:
    """A member's bytes, or None and why: larger than `limit` (declared or decoded) or unreadable."""
    if info.file_size > limit:
        return None, f"{info.file_size} bytes, over the {limit}-byte bound"
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except _ERRORS as exc:
        return None, f"could not be read ({type(exc).__name__})"
    if len(data) > limit:
        return None, f"decodes to more than the {limit}-byte bound"
    return data, ""
