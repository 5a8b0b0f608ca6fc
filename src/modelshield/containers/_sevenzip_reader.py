"""7z extraction into bounded in-memory buffers with py7zr, kept apart so py7zr loads only for 7z files."""

from __future__ import annotations

import lzma
import stat
import zlib
from collections.abc import Iterator

import py7zr
from py7zr.exceptions import ArchiveError, DecompressionBombError, PasswordRequired
from py7zr.io import MemIO, Py7zIO, WriterFactory

from modelshield.containers.members import MemberNames, link_findings, name_findings
from modelshield.containers.rules import FLAGGED_MEMBER, SPECIAL_FILE
from modelshield.core.errors import LimitExceeded, ScanError
from modelshield.core.findings import Finding
from modelshield.core.handler import Context
from modelshield.core.limits import Meter
from modelshield.core.scan_rules import LIMIT_EXCEEDED, NOT_ANALYSED
from modelshield.core.source import BytesSource, Source

#: py7zr raises these (and stdlib codec errors: a corrupt LZMA or deflate block) on malformed archives
_ARCHIVE_ERRORS = (
    ArchiveError, EOFError, ValueError, KeyError, IndexError, OSError, TypeError, lzma.LZMAError, zlib.error
)  # fmt: skip


class _Buffer(Py7zIO):
    """One member's decoded bytes, metered against the file's decompression limits."""

    def __init__(self, meter: Meter, packed: int, what: str) -> None:
        self.data = bytearray()
        self._meter = meter
        self._packed = packed
        self._what = what

    def write(self, s: bytes | bytearray) -> int:
        self.data += s
        self._meter.add(len(s), self._packed, len(self.data), self._what)
        return len(s)

    def read(self, size: int | None = None) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def flush(self) -> None:
        return None

    def size(self) -> int:
        return len(self.data)


class _Buffers(WriterFactory):
    def __init__(self, meter: Meter, packed: int) -> None:
        self._meter = meter
        self._packed = packed
        self.products: dict[str, _Buffer] = {}

    def create(self, filename: str) -> Py7zIO:
        product = _Buffer(self._meter, self._packed, f"7z member {filename}")
        self.products[filename] = product
        return product


def scan_7z(source: Source, ctx: Context) -> Iterator[Finding]:
    """The members of a 7z archive, decoded into bounded in-memory buffers and scanned by index."""
    _ = source.size  # py7zr seeks; a decoded stream becomes seekable once materialised
    with source.stream() as raw:
        try:
            archive = py7zr.SevenZipFile(raw, mode="r")
        except PasswordRequired:
            yield ctx.finding(FLAGGED_MEMBER, "7z archive with encrypted headers")
            yield ctx.finding(NOT_ANALYSED, "encrypted 7z archive: members cannot be listed or scanned")
            return
        except _ARCHIVE_ERRORS as exc:
            raise ScanError(f"unreadable 7z archive: {exc}") from exc
        with archive:
            yield from _scan_archive(archive, source, ctx)


def _scan_archive(archive: py7zr.SevenZipFile, source: Source, ctx: Context) -> Iterator[Finding]:
    limits = ctx.policy.limits
    files = list(archive.files)
    if len(files) > limits.max_members:
        yield ctx.finding(LIMIT_EXCEEDED, f"archive lists {len(files)} members (max_members={limits.max_members})")
        files = files[: limits.max_members]
    names = MemberNames()
    buffers = _Buffers(ctx.engine.meter, source.size)
    wanted: list[tuple[str, str, str | None]] = []  # (key, display, name if it is a link)
    budget = limits.max_buffer_bytes
    for index, member in enumerate(files):
        display, found = name_findings(ctx, names, member.filename)
        yield from found
        fmt = member.st_fmt
        if member.is_directory:
            continue
        if fmt is not None and (stat.S_ISCHR(fmt) or stat.S_ISBLK(fmt) or stat.S_ISFIFO(fmt) or member.is_socket):
            yield ctx.finding(SPECIAL_FILE, f"special file member {member.filename!r}", member=display)
            continue
        size = member.uncompressed or 0
        if size > budget:
            yield ctx.finding(
                LIMIT_EXCEEDED,
                f"member declares {size} bytes; 7z members are decoded in memory within "
                f"max_buffer_bytes={limits.max_buffer_bytes} per archive",
                member=display,
            )
            continue
        budget -= size
        key = str(index)
        archive.worker.register_filelike(member.id, MemIO(key, buffers))
        wanted.append((key, display, member.filename if member.is_symlink else None))
    archive.worker.max_extract_size = max(0, limits.max_total_bytes - ctx.engine.meter.total)
    error: ScanError | None = None
    try:
        archive.worker.extract(archive.fp, None, parallel=False)
    except PasswordRequired:
        yield ctx.finding(FLAGGED_MEMBER, "password-protected 7z archive")
        error = ScanError("encrypted 7z content cannot be analysed")
    except DecompressionBombError as exc:
        error = LimitExceeded("max_total_bytes", f"7z archive: {exc}")
    except ScanError as exc:
        error = exc
    except _ARCHIVE_ERRORS as exc:
        error = ScanError(f"7z archive is corrupt: {exc}")
    # Whatever was decoded before an error is scanned: a payload may sit before a deliberate break.
    for key, display, link in wanted:
        product = buffers.products.get(key)
        if product is None:
            continue
        data = bytes(product.data)
        if link is not None:
            yield from link_findings(ctx, display, link, data.decode("utf-8", "replace"))
        yield from ctx.scan_member(display, BytesSource(data))
    if error is not None:
        raise error
