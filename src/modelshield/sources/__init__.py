"""Models where they live: Hugging Face Hub repositories, S3 objects, MLflow models and plain HTTPS files,
listed through their own APIs and read through `Source`s that fetch only the bytes the scanners need.

A remote target is a `Target`: the files of one repository revision (or prefix, or model version), each
a `RemoteFile` that opens a `Source`. `modelshield.sources.scan` scans them with the same engine and
handlers as local files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelshield.core.source import Source

if TYPE_CHECKING:  # every scan imports this package for `is_remote`: the HTTP machinery only when used
    from modelshield.sources.http import Counter


class RemoteInputError(ValueError):
    """A remote target that cannot be scanned at all: malformed, unknown, or needing credentials (exit 2)."""


class RemoteUnavailable(RuntimeError):
    """A remote scan was asked for but its client library is not installed."""


@dataclass
class RemoteFile:
    """One file of a target: its name inside the target, size, content digest (None: not cacheable)."""

    name: str
    size: int
    digest: str | None
    open: Callable[[Counter], Source]


@dataclass
class Target:
    """The files behind one remote URI, and what reports name them by (`root` + `/` + name)."""

    uri: str
    root: str
    files: list[RemoteFile]
    #: the commit (Hub), version (MLflow) or None, recorded in the report
    revision: str | None = None
    #: requests spent listing the target
    requests: int = 1
    #: the file or folder of the target that was asked for ("" for all of it)
    select: str = ""


def is_remote(text: str) -> bool:
    """Whether a scan argument names a remote target rather than a path."""
    return text.startswith(("hf://", "https://", "http://", "s3://", "models:/", "runs:/"))
