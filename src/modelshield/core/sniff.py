"""Classify bytes that no format handler claimed: empty, text, image or unknown binary, and Git LFS
pointers (which stand where a model should be)."""

from __future__ import annotations

import re

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


#: Git LFS pointers are under 1024 bytes (git-lfs reads no larger blob as one): a `version` line, then
#: `key value` lines, among them `oid sha256:<64 hex>` and `size <bytes>`.
LFS_POINTER_LIMIT = 1024
_LFS_VERSIONS = (b"https://git-lfs.github.com/spec/v1", b"https://hawser.github.com/spec/v1")
_LFS_LINE = re.compile(rb"^([a-z0-9.-]+) (\S.*?)\r?$")
_LFS_OID = re.compile(rb"^sha256:[0-9a-f]{64}$")


def lfs_pointer(head: bytes) -> str | None:
    """`oid sha256:... size N` if the whole content is a Git LFS pointer (the text git-lfs leaves in a
    clone made without it, in place of the file), else None."""
    if len(head) >= LFS_POINTER_LIMIT or not head.startswith(b"version "):
        return None
    fields: dict[bytes, bytes] = {}
    for line in head.rstrip(b"\r\n").split(b"\n"):
        match = _LFS_LINE.match(line)
        if match is None:
            return None
        fields[match[1]] = match[2]
    oid, size = fields.get(b"oid", b""), fields.get(b"size", b"")
    if fields[b"version"] not in _LFS_VERSIONS or not _LFS_OID.match(oid) or not size.isdigit():
        return None
    return f"oid {oid.decode()} size {int(size)}"


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
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    last = parts[-1] if parts else ""
    dot = last.rfind(".")
    return last[dot:].lower() if 0 < dot < len(last) - 1 else ""


TAR_BLOCK = 512
_V7_TYPES = b"01234567\x00"


def looks_like_tar_header(block: bytes) -> bool:
    """Whether 512 bytes are a tar header (ustar magic, or a v7 header with a valid checksum).

    Other readings of a tar defer to it: a zip or HDF5 file stored in a tar shows its own signature
    at the tar's end or after its first header, yet it is a member, not a second format.
    """
    if len(block) < TAR_BLOCK or not _checksum_ok(block):
        return False
    return block[257:262] == b"ustar" or (block[0] != 0 and block[156:157] in _V7_TYPES)


def _checksum_ok(block: bytes) -> bool:
    """Whether a 512-byte header carries a valid checksum (unsigned or the historic signed variant)."""
    field = block[148:156].split(b"\x00", 1)[0].strip()
    if not field:
        return False
    try:
        stored = int(field, 8)
    except ValueError:
        return False
    rest = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(rest)
    signed = sum(b - 256 if b > 127 else b for b in rest)
    return stored in (unsigned, signed)
