"""Exceptions that carry a scan decision (bounds, unreadable input) up to the engine."""

from __future__ import annotations


class ScanError(Exception):
    """A part of the input could not be analysed; the engine turns it into a fail-closed finding."""


class LimitExceeded(ScanError):
    """A resource bound was hit (decompressed bytes, ratio, depth, members): possibly a bomb."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(f"{limit}: {detail}")
        self.limit = limit
        self.detail = detail


class Truncated(ScanError):
    """The data ends before its own structure says it should."""
