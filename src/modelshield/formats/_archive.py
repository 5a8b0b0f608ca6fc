"""Reading the few small members of a zip that a loader treats as a whole (skops, TorchServe, torch
checkpoints and packages), with the standard library's `zipfile`, as those loaders do; the zip walker
scans every member on its own anyway."""

from __future__ import annotations

import weakref
import zipfile
from collections.abc import Sequence

from modelshield.core.source import Source

_ERRORS = (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, KeyError)


#: Names by zip, for as long as the zip's source lives: four detectors ask about every zip, and
#: reading a directory of thousands of members costs tens of milliseconds each time.
_NAMES: weakref.WeakKeyDictionary[Source, tuple[str, ...] | None] = weakref.WeakKeyDictionary()


def zip_names(source: Source) -> Sequence[str] | None:
    """Member names of a zip, or None when the bytes are not one `zipfile` can read."""
    if not source.head(4).startswith(b"PK\x03\x04"):
        return None
    if source in _NAMES:
        return _NAMES[source]
    names: tuple[str, ...] | None = None
    try:
        with zipfile.ZipFile(source.stream()) as archive:
            names = tuple(archive.namelist())
    except _ERRORS:
        pass
    _NAMES[source] = names
    return names


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
