"""A test-side zip writer that can get any header field wrong on purpose."""

from __future__ import annotations

import bz2
import struct
import zlib
from dataclasses import dataclass

STORED, DEFLATED, BZIP2 = 0, 8, 12
S_IFLNK = 0o120000


@dataclass
class Member:
    """One member; every field left as None is written correctly."""

    name: str
    data: bytes
    method: int = STORED
    flags: int = 0
    crc: int | None = None
    local_name: str | None = None
    local_method: int | None = None
    usize: int | None = None
    mode: int | None = None  # unix st_mode; sets 'made by unix'
    in_central: bool = True
    payload: bytes | None = None  # the compressed bytes, if not derived from data


def compress(method: int, data: bytes) -> bytes:
    if method == DEFLATED:
        enc = zlib.compressobj(9, zlib.DEFLATED, -15)
        return enc.compress(data) + enc.flush()
    if method == BZIP2:
        return bz2.compress(data)
    return data


def build(
    members: list[Member],
    *,
    prefix: bytes = b"",
    offsets_include_prefix: bool = False,
    central: bool = True,
    trailing: bytes = b"",
    entries: int | None = None,
) -> bytes:
    """`prefix` is prepended (like `cat prefix archive`); offsets count it only if asked (like `zip -A`)."""
    body = bytearray()
    directory = bytearray()
    base = len(prefix) if offsets_include_prefix else 0
    listed = 0
    for m in members:
        payload = m.payload if m.payload is not None else compress(m.method, m.data)
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        usize = len(m.data) if m.usize is None else m.usize
        name = m.name.encode()
        local_name = (m.local_name if m.local_name is not None else m.name).encode()
        method = m.method if m.local_method is None else m.local_method
        offset = base + len(body)
        body += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, m.flags, method, 0, 0x21, crc, len(payload), usize, len(local_name), 0
        )
        body += local_name + payload
        if not m.in_central:
            continue
        listed += 1
        made_by = (3 << 8 | 20) if m.mode is not None else 20
        external = (m.mode or 0) << 16
        directory += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            made_by,
            20,
            m.flags,
            m.method,
            0,
            0x21,
            crc,
            len(payload),
            usize,
            len(name),
            0,
            0,
            0,
            0,
            external,
            offset,
        )
        directory += name
    if not central:
        return prefix + bytes(body) + trailing
    count = listed if entries is None else entries
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), base + len(body), 0)
    return prefix + bytes(body) + bytes(directory) + eocd + trailing
