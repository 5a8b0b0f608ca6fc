"""Classify bytes that no format handler claimed: empty, text, image or unknown binary."""

from __future__ import annotations

from pathlib import PurePosixPath

_IMAGE_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"RIFF",
    b"II*\x00",
    b"MM\x00*",
)


def classify_plain(head: bytes) -> str:
    """'empty', 'image', 'text' or 'binary' for content that is not a recognised model format."""
    if not head:
        return "empty"
    if any(head.startswith(magic) for magic in _IMAGE_MAGIC):
        return "image"
    sample = head[:4096]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the sample's end is still text.
        if exc.start < len(sample) - 4:
            return "binary"
        text = sample[: exc.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\t\r\n\f" for ch in text)
    return "text" if printable >= 0.95 * max(len(text), 1) else "binary"


def suffix_of(name: str) -> str:
    """The lowercase final suffix of a file or member name ('' if none)."""
    return PurePosixPath(name.replace("\\", "/")).suffix.lower()
