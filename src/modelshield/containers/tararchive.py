"""Tar archives (legacy PyTorch checkpoints, NeMo bundles, the inside of .tar.gz), read without extracting.

The standard library's `tarfile` only parses headers here; a member's data is a zero-copy slice of the
archive, so the engine sniffs large members without reading them.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from modelshield.containers.members import MemberNames, link_findings, name_findings
from modelshield.containers.rules import DUPLICATE_NAME, LINK_ESCAPE, PATH_ESCAPE, SPECIAL_FILE, TRAILING_DATA
from modelshield.core.errors import ScanError
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.scan_rules import LIMIT_EXCEEDED, NOT_ANALYSED
from modelshield.core.sniff import looks_like_tar_header
from modelshield.core.source import SliceSource, Source

BLOCK = 512


def _open(raw: BinaryIO) -> tarfile.TarFile:
    """Parse the first header (tarfile does so on open), turning its errors into a scan error."""
    try:
        return tarfile.open(fileobj=raw, mode="r:")
    except tarfile.TarError as exc:
        raise ScanError(f"unreadable tar archive: {exc}") from exc


class TarHandler(Handler):
    name = "tar"
    label = "tar archive"
    extensions = frozenset({".tar", ".nemo"})
    rules = (PATH_ESCAPE, LINK_ESCAPE, SPECIAL_FILE, DUPLICATE_NAME)

    def detect(self, source: Source) -> bool:
        return looks_like_tar_header(source.head(BLOCK))

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        limit = ctx.policy.limits.max_members
        # tarfile seeks; a decoded stream becomes seekable once materialised (within max_buffer_bytes).
        _ = source.size
        names = MemberNames()
        with source.stream() as raw, _open(raw) as tar:
            count = 0
            end = 0
            while True:
                try:
                    member = tar.next()
                except tarfile.TarError as exc:
                    raise ScanError(f"tar archive is corrupt or truncated after {count} members: {exc}") from exc
                if member is None:
                    yield from _check_end(source, ctx, end, count)
                    return
                end = member.offset_data + -(-member.size // BLOCK) * BLOCK
                count += 1
                if count > limit:
                    yield ctx.finding(LIMIT_EXCEEDED, f"archive holds more than max_members={limit} members")
                    return
                tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every header; we need none
                yield from self._member(source, ctx, names, member)

    def _member(self, source: Source, ctx: Context, names: MemberNames, member: tarfile.TarInfo) -> Iterator[Finding]:
        display, found = name_findings(ctx, names, member.name)
        yield from found
        if member.issym():
            yield from link_findings(ctx, display, member.name, member.linkname)
        elif member.islnk():
            yield from link_findings(ctx, display, member.name, member.linkname, hard=True)
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = "character device" if member.ischr() else "block device" if member.isblk() else "FIFO"
            yield ctx.finding(SPECIAL_FILE, f"{kind} member {member.name!r}", member=display)
        elif member.issparse():
            yield ctx.finding(NOT_ANALYSED, "sparse tar member: its content is not reassembled", member=display)
        elif member.isreg() or member.type not in tarfile.SUPPORTED_TYPES:  # tarfile reads unknown types as files
            if member.offset_data + member.size > source.size:
                yield ctx.finding(
                    NOT_ANALYSED,
                    f"member declares {member.size} bytes but the archive ends first (truncated)",
                    member=display,
                )
            yield from ctx.scan_member(display, SliceSource(source, member.offset_data, member.size))


def _check_end(source: Source, ctx: Context, end: int, count: int) -> Iterator[Finding]:
    """tarfile stops quietly at a header it cannot read, and ignores what follows the end-of-archive
    blocks: a break is reported, and bytes after the end are scanned (a zip appended to a tar)."""
    rest = source.read_at(end, min(max(0, source.size - end), 64 * BLOCK))
    data = rest.lstrip(b"\0")
    if not data:
        return
    start = end + len(rest) - len(data)
    if start - end < 2 * BLOCK:
        yield ctx.finding(
            NOT_ANALYSED,
            f"unreadable data after member {count} at offset {end}: the archive is truncated or corrupt",
            offset=end,
        )
        return
    yield ctx.finding(TRAILING_DATA, f"{source.size - start} bytes after the end of the archive", offset=start)
    yield from ctx.scan_member("<trailing data>", SliceSource(source, start, source.size - start))
