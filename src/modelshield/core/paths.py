"""File names that a model file tells its loader to open (external data, checkpoint shards)."""

from __future__ import annotations

import posixpath
import re

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
_DRIVE = re.compile(r"^[A-Za-z]:")


def escape_reason(location: str) -> str | None:
    """Why a referenced file name is not a plain path inside the model's folder (None if it is).

    Backslashes count as separators and drive letters as absolute, since Windows loaders treat them so.
    """
    if "\0" in location:
        return "contains a NUL byte"
    if _DRIVE.match(location) or location.startswith(("/", "\\")):
        return "is an absolute path"
    if _URL.match(location):
        return "is a URL"
    normal = posixpath.normpath(location.replace("\\", "/"))
    if normal == ".." or normal.startswith("../"):
        return "climbs out of the model folder"
    return None
