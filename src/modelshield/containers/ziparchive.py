"""Zip archives (PyTorch checkpoints, .npz, .keras, plain zips) read by our own lenient walker.

The standard library's `zipfile` is stricter than the loaders attackers target: PyTorch's miniz reader
ignores CRCs, flag bits and local-header names, so every such discrepancy is reported here and the member is
still decoded the way a lenient loader would. Members are located through the central directory; local
headers the directory does not list, and archives without a usable directory, are found by walking
local-header signatures.

CRC policy: a member's CRC-32 is checked only when reading it is cheap: stored members up to
`STORED_CRC_LIMIT`, compressed members up to `DECODED_CRC_LIMIT` (those are decoded into memory once and
that copy is what gets scanned), and at most `ARCHIVE_CRC_BUDGET` bytes per archive. Multi-gigabyte stored
tensors are therefore never read just to verify a checksum, which loaders do not verify either.
"""

from __future__ import annotations

import bz2
import lzma
import stat
import struct
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from modelshield.containers.members import MemberNames, link_findings, name_findings
from modelshield.containers.rules import (
    ARCHIVE_RULES,
    BAD_CRC,
    BROKEN_DIRECTORY,
    FLAGGED_MEMBER,
    HEADER_MISMATCH,
    HIDDEN_MEMBER,
    NAME_MISMATCH,
    OVERLAPPING_MEMBERS,
    PREPENDED_DATA,
    TRAILING_DATA,
)
from modelshield.core.engine import failure_finding
from modelshield.core.errors import LimitExceeded, ScanError
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.scan_rules import LIMIT_EXCEEDED, NOT_ANALYSED
from modelshield.core.sniff import TAR_BLOCK, looks_like_tar_header
from modelshield.core.source import CHUNK, BytesSource, DecodedSource, Decompressor, SliceSource, Source
from modelshield.formats.tensorflow.tflite import associated_files_start

LOCAL_SIG = b"PK\x03\x04"
CENTRAL_SIG = b"PK\x01\x02"
EOCD_SIG = b"PK\x05\x06"
ZIP64_LOCATOR_SIG = b"PK\x06\x07"
ZIP64_EOCD_SIG = b"PK\x06\x06"

_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_LOCAL = struct.Struct("<4s5H3L2H")
_MAX_COMMENT = 0xFFFF

STORED, DEFLATED, BZIP2, LZMA = 0, 8, 12, 14
METHOD_NAMES = {0: "stored", 8: "deflate", 9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstd", 95: "xz", 99: "aes"}

#: 0x1 traditional encryption, 0x20 patched data, 0x40 strong encryption, 0x2000 encrypted central directory
SUSPICIOUS_FLAGS = {0x1: "encrypted", 0x20: "patched data", 0x40: "strong encryption", 0x2000: "masked header"}
_UTF8_FLAG = 0x800
_LZMA_EOS_FLAG = 0x2
_DESCRIPTOR_FLAG = 0x8

STORED_CRC_LIMIT = 1024 * 1024
DECODED_CRC_LIMIT = 16 * 1024 * 1024
ARCHIVE_CRC_BUDGET = 64 * 1024 * 1024
#: overlapping pairs reported one by one before a summary (a bomb can have thousands)
MAX_OVERLAP_REPORTS = 10
_LINK_TARGET_LIMIT = 4096


@dataclass
class _Entry:
    """One member as a header describes it; `offset` is the absolute offset of its local header."""

    raw_name: bytes
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    offset: int
    external: int = 0
    host: int = 0
    name: str = ""
    local: _Entry | None = None
    data_start: int = 0

    def __post_init__(self) -> None:
        self.name = _decode_name(self.raw_name, self.flags)

    @property
    def end(self) -> int:
        return self.data_start + self.csize

    @property
    def is_symlink(self) -> bool:
        return self.host == 3 and stat.S_ISLNK(self.external >> 16)


class _Directory(NamedTuple):
    """Where the end record says the central directory is, after correcting for prepended bytes."""

    eocd_offset: int
    eocd_end: int
    cd_start: int
    cd_size: int
    entries: int
    shift: int


def _decode_name(raw: bytes, flags: int) -> str:
    if flags & _UTF8_FLAG:
        return raw.decode("utf-8", "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp437")


def _zip64_values(extra: bytes, wanted: list[bool]) -> list[int | None]:
    """Values of the ZIP64 extra field (id 1) for the 32-bit fields that were saturated, in order."""
    pos = 0
    while pos + 4 <= len(extra):
        field_id, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + size]
        if field_id == 1:
            values: list[int | None] = []
            at = 0
            for want in wanted:
                if want and at + 8 <= len(body):
                    values.append(struct.unpack_from("<Q", body, at)[0])
                    at += 8
                else:
                    values.append(None)
            return values
        pos += 4 + size
    return [None] * len(wanted)


def _locate(source: Source) -> _Directory | None:
    """Find the end-of-central-directory record within the last 64 KiB + 22 bytes (one read)."""
    size = source.size
    window = min(size, _MAX_COMMENT + _EOCD.size)
    tail_start = size - window
    tail = source.read_at(tail_start, window)
    fallback: _Directory | None = None
    pos = tail.rfind(EOCD_SIG)
    while pos >= 0:
        if pos + _EOCD.size <= len(tail):
            found = _directory_at(source, tail, pos, tail_start)
            if found is not None:
                if found.eocd_end == size:
                    return found
                fallback = fallback or found
        pos = tail.rfind(EOCD_SIG, 0, pos)
    return fallback


def _directory_at(source: Source, tail: bytes, pos: int, tail_start: int) -> _Directory | None:
    """The directory an end record at `pos` of `tail` describes, if it points at one."""
    _, _, _, _, entries, cd_size, cd_offset, comment_len = _EOCD.unpack_from(tail, pos)
    eocd_offset = tail_start + pos
    cd_end = eocd_offset
    locator_at = pos - _ZIP64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at : locator_at + 4] == ZIP64_LOCATOR_SIG:
        record_at = eocd_offset - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size
        record = source.read_at(record_at, _ZIP64_EOCD.size) if record_at >= 0 else b""
        if len(record) == _ZIP64_EOCD.size and record.startswith(ZIP64_EOCD_SIG):
            fields = _ZIP64_EOCD.unpack(record)
            entries, cd_size, cd_offset = fields[7], fields[8], fields[9]
            cd_end = record_at
    shift = cd_end - cd_size - cd_offset
    if shift < 0:
        return None
    cd_start = cd_offset + shift
    if entries and source.read_at(cd_start, 4) != CENTRAL_SIG:
        return None
    eocd_end = min(eocd_offset + _EOCD.size + comment_len, source.size)
    return _Directory(eocd_offset, eocd_end, cd_start, cd_size, entries, shift)


def _parse_central(data: bytes, shift: int, limit: int) -> tuple[list[_Entry], bool]:
    """Central entries (at most `limit`), and whether the directory parsed cleanly to its end."""
    entries: list[_Entry] = []
    pos = 0
    while pos < len(data) and len(entries) < limit:
        if pos + _CENTRAL.size > len(data) or data[pos : pos + 4] != CENTRAL_SIG:
            return entries, False
        fields = _CENTRAL.unpack_from(data, pos)
        made_by, flags, method, crc, csize, usize = fields[1], fields[3], fields[4], fields[7], fields[8], fields[9]
        name_len, extra_len, comment_len, external, offset = fields[10], fields[11], fields[12], fields[15], fields[16]
        name_at = pos + _CENTRAL.size
        raw_name = data[name_at : name_at + name_len]
        extra = data[name_at + name_len : name_at + name_len + extra_len]
        wide = _zip64_values(extra, [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF, offset == 0xFFFFFFFF])
        usize = wide[0] if wide[0] is not None else usize
        csize = wide[1] if wide[1] is not None else csize
        offset = wide[2] if wide[2] is not None else offset
        entries.append(_Entry(raw_name, flags, method, crc, csize, usize, offset + shift, external, made_by >> 8))
        pos = name_at + name_len + extra_len + comment_len
    return entries, True


def _read_local(source: Source, offset: int) -> _Entry | None:
    """The local header at `offset`, with `data_start` set, or None if there is none."""
    raw = source.read_at(offset, _LOCAL.size)
    if len(raw) < _LOCAL.size or not raw.startswith(LOCAL_SIG):
        return None
    _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len = _LOCAL.unpack(raw)
    names = source.read_at(offset + _LOCAL.size, name_len + extra_len)
    raw_name, extra = names[:name_len], names[name_len:]
    wide = _zip64_values(extra, [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF])
    usize = wide[0] if wide[0] is not None else usize
    csize = wide[1] if wide[1] is not None else csize
    entry = _Entry(raw_name, flags, method, crc, csize, usize, offset)
    entry.data_start = offset + _LOCAL.size + name_len + extra_len
    return entry


def _find(source: Source, needle: bytes, start: int, end: int) -> int:
    """First offset of `needle` in [start, end), reading in chunks; -1 if absent."""
    pos = start
    while pos < end:
        block = source.read_at(pos, min(CHUNK, end - pos))
        if not block:
            break
        hit = block.find(needle)
        if hit >= 0:
            return pos + hit if pos + hit + len(needle) <= end else -1
        if pos + len(block) >= end:
            break
        pos += len(block) - len(needle) + 1
    return -1


def _walk_local(source: Source, start: int, end: int, limit: int) -> list[_Entry]:
    """Local headers found in [start, end) by signature, as a streaming reader would find them."""
    found: list[_Entry] = []
    pos = _find(source, LOCAL_SIG, start, end)
    while pos >= 0 and len(found) < limit:
        entry = _read_local(source, pos)
        if entry is None:  # a signature too close to the end for a whole header
            break
        if entry.flags & _DESCRIPTOR_FLAG and entry.csize == 0:
            # Sizes follow the data; the data runs to the next header (decoders stop at their own end).
            nxt = _find(source, b"PK", entry.data_start, end)
            entry.csize = (nxt if nxt >= 0 else end) - entry.data_start
        entry.csize = max(0, min(entry.csize, end - entry.data_start))
        found.append(entry)
        pos = _find(source, LOCAL_SIG, max(entry.end, pos + 1), end)
    return found


def _lzma_member(data: Source) -> tuple[Callable[[], Decompressor], Source]:
    """Zip's LZMA: a 2-byte version, 2-byte properties length, then LZMA1 properties and raw data."""
    header = data.read_at(0, 4)
    if len(header) < 4:
        raise ScanError("lzma member too short for its header")
    props_len = int.from_bytes(header[2:4], "little")
    props = data.read_at(4, props_len)
    if props_len < 5 or len(props) < 5 or props[0] >= 9 * 5 * 5:
        raise ScanError("lzma member has invalid properties")
    lc, rest = props[0] % 9, props[0] // 9
    filters = [
        {
            "id": lzma.FILTER_LZMA1,
            "lc": lc,
            "lp": rest % 5,
            "pb": rest // 5,
            "dict_size": int.from_bytes(props[1:5], "little"),
        }
    ]
    body = SliceSource(data, 4 + props_len, data.size - 4 - props_len)
    return (lambda: lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)), body


def _decoder(method: int, data: Source) -> tuple[Callable[[], Decompressor], Source] | None:
    if method == DEFLATED:
        return (lambda: zlib.decompressobj(-15)), data
    if method == BZIP2:
        return bz2.BZ2Decompressor, data
    if method == LZMA:
        return _lzma_member(data)
    return None


def _crc(source: Source) -> int:
    """CRC-32 of a stored member, read in place (a buffered stream costs ten times the CRC of a small one)."""
    value = offset = 0
    while chunk := source.read_at(offset, CHUNK):
        value = zlib.crc32(chunk, value)
        offset += len(chunk)
    return value


class ZipHandler(Handler):
    """Zip archives, including PyTorch checkpoints and pickle+zip polyglots."""

    name = "zip"
    label = "zip archive"
    extensions = frozenset(
        {".zip", ".pt", ".pth", ".bin", ".ckpt", ".keras", ".npz", ".pt2", ".ptl", ".mar", ".skops", ".llamafile"}
    )
    rules = ARCHIVE_RULES

    def detect(self, source: Source) -> bool:
        if source.head(4) == LOCAL_SIG:
            return True
        # Probing the tail of an undecoded stream would decode all of it just to look at its end.
        if isinstance(source, DecodedSource) or source.size < _EOCD.size:
            return False
        if looks_like_tar_header(source.head(TAR_BLOCK)):
            return False  # a zip stored in a tar ends near the tar's end: the tar walk reaches it
        if associated_files_start(source) is not None:
            return False  # TFLite Metadata's associated files: the LiteRT model scans them as its member
        return _locate(source) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        limits = ctx.policy.limits
        directory = _locate(source)
        entries: list[_Entry] = []
        intact = False
        if directory is None:
            yield ctx.finding(BROKEN_DIRECTORY, "no end-of-central-directory record; walking local headers")
        else:
            if directory.cd_size > limits.max_buffer_bytes:
                raise LimitExceeded("max_buffer_bytes", f"central directory of {directory.cd_size} bytes")
            data = source.read_at(directory.cd_start, directory.cd_size)
            entries, intact = _parse_central(data, directory.shift, limits.max_members + 1)
            if not intact:
                yield ctx.finding(
                    BROKEN_DIRECTORY,
                    f"central directory is corrupt after {len(entries)} entries; walking local headers",
                    offset=directory.cd_start,
                )
            elif len(entries) != directory.entries and len(entries) <= limits.max_members:
                yield ctx.finding(
                    BROKEN_DIRECTORY,
                    f"end record declares {directory.entries} entries, the directory holds {len(entries)}",
                    offset=directory.eocd_offset,
                )
            if source.size > directory.eocd_end:
                yield ctx.finding(
                    TRAILING_DATA,
                    f"{source.size - directory.eocd_end} bytes after the end of the archive",
                    offset=directory.eocd_end,
                )
        over_limit = len(entries) > limits.max_members
        if over_limit:
            entries = entries[: limits.max_members]
            yield ctx.finding(LIMIT_EXCEEDED, f"archive lists more than max_members={limits.max_members} members")
        for entry in entries:
            entry.local = _read_local(source, entry.offset)
            entry.data_start = entry.local.data_start if entry.local else entry.offset
        body_end = directory.cd_start if directory else source.size
        # Without a usable directory every local header is a member; with one, unlisted headers are hidden.
        hidden_rule = HIDDEN_MEMBER if intact else None
        # Past the bound the unparsed listed members would look hidden: the bound is the finding.
        extra = [] if over_limit else self._unlisted(source, entries, body_end, limits.max_members)
        if not entries and not extra and directory is None:
            raise ScanError("zip archive with neither a central directory nor a local header")

        listed = [e for e in entries if e.local is not None]
        start = min((e.offset for e in listed + extra), default=body_end)
        if start > 0:
            yield from self._prefix(source, ctx, start)
        yield from self._overlaps(ctx, listed + extra)

        yield from ctx.judge_listing([e.name for e in entries + extra])
        names = MemberNames()
        budget = [ARCHIVE_CRC_BUDGET]
        for entry in entries:
            display, found = name_findings(ctx, names, entry.name)
            yield from found
            if entry.local is None:
                yield ctx.finding(
                    NOT_ANALYSED, f"no local header at offset {entry.offset} for member {entry.name!r}", member=display
                )
                continue
            yield from self._compare(ctx, display, entry, entry.local)
            yield from self._member(source, ctx, display, entry, budget)
        for entry in extra:
            display, found = name_findings(ctx, names, entry.name)
            yield from found
            if hidden_rule is not None:
                yield ctx.finding(
                    hidden_rule,
                    f"local header for {entry.name!r} at offset {entry.offset} is not in the central directory",
                    member=display,
                    offset=entry.offset,
                )
            yield from self._flags(ctx, display, entry.flags)
            yield from self._member(source, ctx, display, entry, budget)

    def _unlisted(self, source: Source, entries: list[_Entry], body_end: int, limit: int) -> list[_Entry]:
        """Local headers that no central entry points to, searched for in the gaps between members."""
        known = sorted((e for e in entries if e.local is not None), key=lambda e: e.offset)
        if not known:
            return _walk_local(source, 0, body_end, limit)
        found: list[_Entry] = []
        cursor = 0
        for entry in [*known[1:], None]:
            gap_end = entry.offset if entry is not None else body_end
            if gap_end > cursor:
                found += _walk_local(source, cursor, gap_end, limit - len(found))
            if entry is not None:
                cursor = max(cursor, entry.end, entry.offset + 1)
        listed = {e.offset for e in known}
        return [e for e in found if e.offset not in listed]

    def _prefix(self, source: Source, ctx: Context, start: int) -> Iterator[Finding]:
        others = [h.label for h in ctx.engine.detect(source) if h is not self]
        note = f"the whole file is also scanned as {' and '.join(others)}" if others else "scanned as <prefix>"
        yield ctx.finding(PREPENDED_DATA, f"{start} bytes precede the first member ({note})", offset=0)
        if not others:
            yield from ctx.scan_member("<prefix>", SliceSource(source, 0, start))

    def _overlaps(self, ctx: Context, entries: list[_Entry]) -> Iterator[Finding]:
        ordered = sorted(entries, key=lambda e: (e.offset, e.end))
        reported = 0
        furthest: _Entry | None = None
        for entry in ordered:
            if furthest is not None and entry.offset < furthest.end:
                reported += 1
                if reported <= MAX_OVERLAP_REPORTS:
                    yield ctx.finding(
                        OVERLAPPING_MEMBERS,
                        f"member {entry.name!r} at {entry.offset} lies inside {furthest.name!r} "
                        f"({furthest.offset}-{furthest.end})",
                        offset=entry.offset,
                    )
            if furthest is None or entry.end > furthest.end:
                furthest = entry
        if reported > MAX_OVERLAP_REPORTS:
            yield ctx.finding(OVERLAPPING_MEMBERS, f"{reported} overlapping members in total")

    def _flags(self, ctx: Context, display: str, flags: int) -> Iterator[Finding]:
        bits = [f"0x{bit:x} ({what})" for bit, what in SUSPICIOUS_FLAGS.items() if flags & bit]
        if bits:
            yield ctx.finding(
                FLAGGED_MEMBER,
                f"general purpose flags {', '.join(bits)}; decoded by its compression method anyway",
                member=display,
            )

    def _compare(self, ctx: Context, display: str, central: _Entry, local: _Entry) -> Iterator[Finding]:
        """Report where the local header disagrees with the central entry (the central one is used)."""
        if local.raw_name != central.raw_name:
            yield ctx.finding(
                NAME_MISMATCH,
                f"central directory name {central.name!r}, local header name {local.name!r}",
                member=display,
                local_name=local.name,
            )
        yield from self._flags(ctx, display, central.flags | local.flags)
        differ = []
        if local.method != central.method:
            differ.append(f"method {local.method} locally vs {central.method} centrally")
        if not local.flags & _DESCRIPTOR_FLAG:
            for field in ("csize", "usize", "crc"):
                if getattr(local, field) != getattr(central, field):
                    differ.append(f"{field} {getattr(local, field)} locally vs {getattr(central, field)} centrally")
        if differ:
            yield ctx.finding(HEADER_MISMATCH, "; ".join(differ), member=display)

    def _member(
        self, source: Source, ctx: Context, display: str, entry: _Entry, budget: list[int]
    ) -> Iterator[Finding]:
        if entry.name.endswith("/") and entry.csize == 0:
            return
        data = SliceSource(source, entry.data_start, entry.csize)
        if data.size < entry.csize:
            yield ctx.finding(
                NOT_ANALYSED, f"member data ends {entry.csize - data.size} bytes short of its size", member=display
            )
        if entry.method == STORED:
            member: Source = data
            if entry.csize != entry.usize:
                yield ctx.finding(
                    HEADER_MISMATCH,
                    f"stored member with compressed size {entry.csize} but uncompressed size {entry.usize}",
                    member=display,
                )
            if data.size <= STORED_CRC_LIMIT and _take(budget, data.size):
                yield from self._check_crc(ctx, display, entry, _crc(data))
        else:
            decoding = _decoder(entry.method, data)
            if decoding is None:
                method = METHOD_NAMES.get(entry.method, "unknown")
                yield ctx.finding(
                    NOT_ANALYSED, f"compression method {entry.method} ({method}) is not supported", member=display
                )
                return
            make, body = decoding
            member = DecodedSource(body, make, ctx.engine.meter, f"zip member {display}")
            if entry.usize <= DECODED_CRC_LIMIT and _take(budget, entry.usize):
                has_end_marker = entry.method != LZMA or bool(entry.flags & _LZMA_EOS_FLAG)
                decoded = yield from self._decode_small(ctx, display, entry, member, has_end_marker)
                if decoded is not None:
                    member = decoded
        if entry.is_symlink:
            target = member.head(_LINK_TARGET_LIMIT).decode("utf-8", "replace")
            yield from link_findings(ctx, display, entry.name, target)
        yield from ctx.scan_member(display, member)

    def _decode_small(
        self, ctx: Context, display: str, entry: _Entry, member: DecodedSource, has_end_marker: bool
    ) -> Generator[Finding, None, Source | None]:
        """Decode a small member once, check its size and CRC; returns its bytes, or None to stream it."""
        try:
            reader = member.stream()
            content = reader.read(entry.usize)
            beyond = reader.read(1) if has_end_marker else b""
        except ScanError as exc:
            # Reported here: an analyser that only sniffs the member's head would never meet it.
            yield failure_finding(ctx.location.child(display), exc)
            return None
        if beyond:
            yield ctx.finding(
                HEADER_MISMATCH, f"member decodes to more than its declared {entry.usize} bytes", member=display
            )
            return None
        if len(content) != entry.usize:
            yield ctx.finding(
                HEADER_MISMATCH,
                f"member decodes to {len(content)} bytes, declared {entry.usize}",
                member=display,
            )
        yield from self._check_crc(ctx, display, entry, zlib.crc32(content))
        return BytesSource(content)

    def _check_crc(self, ctx: Context, display: str, entry: _Entry, actual: int) -> Iterator[Finding]:
        if actual != entry.crc:
            yield ctx.finding(BAD_CRC, f"stored CRC-32 {entry.crc:08x}, data has {actual:08x}", member=display)


def _take(budget: list[int], amount: int) -> bool:
    """Spend `amount` of the archive's CRC budget if it is available."""
    if amount > budget[0]:
        return False
    budget[0] -= amount
    return True
