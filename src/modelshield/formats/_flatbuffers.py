"""A small bounded flatbuffer reader shared by the flatbuffer formats (LiteRT `TFL3`, ONNX Runtime `ORTM`).

Hand-written rather than the `flatbuffers` runtime with generated accessors: those do no
verification at all (an offset past the end raises anywhere, or silently reads other data), while
this one checks every offset, vtable and vector length against the buffer, never recurses, and
visits at most one vector element per four bytes of file, so aliased vectors cannot multiply work.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from modelshield.core.errors import LimitExceeded, ScanError
from modelshield.core.source import Source


class Malformed(ScanError):
    """The flatbuffer's structure points outside itself or is inconsistent."""


def root_table(source: Source, identifier: bytes) -> int | None:
    """Offset of the flatbuffer's root table, or None if the file is not a flatbuffer of that identifier.

    Beyond the 4-byte file identifier, the root offset must land inside the file and the table's
    vtable must be in bounds and well-sized, which rules out text or binaries that merely contain it.
    """
    head = source.head(8)
    if len(head) < 8 or head[4:8] != identifier:
        return None
    size = source.size
    root = int.from_bytes(head[:4], "little")
    if root < 8 or root + 4 > size:
        return None
    (back,) = struct.unpack("<i", source.read_at(root, 4))
    vtable = root - back
    if vtable < 8 or vtable + 4 > size:
        return None
    vt_size, table_size = struct.unpack("<HH", source.read_at(vtable, 4))
    if vt_size < 4 or vt_size % 2 or vtable + vt_size > size or table_size < 4 or root + table_size > size:
        return None
    return root


class FlatBuffer:
    """Checked reads from a flatbuffer held in memory, with a budget of vector elements."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.budget = len(data) // 4 + 64

    def unpack(self, fmt: str, pos: int) -> int:
        width = struct.calcsize(fmt)
        if pos < 0 or pos + width > len(self.data):
            raise Malformed(f"read of {width} bytes at offset {pos} is outside the {len(self.data)}-byte model")
        value: int = struct.unpack_from(fmt, self.data, pos)[0]
        return value

    def table(self, pos: int) -> Table:
        vtable = pos - self.unpack("<i", pos)
        vt_size = self.unpack("<H", vtable)
        table_size = self.unpack("<H", vtable + 2)
        if vt_size < 4 or vt_size % 2 or vtable + vt_size > len(self.data) or pos + table_size > len(self.data):
            raise Malformed(f"invalid vtable at offset {vtable} for the table at offset {pos}")
        return Table(self, pos, vtable, vt_size, table_size)

    def vector(self, pos: int, width: int) -> tuple[int, int]:
        """Start and length of the vector whose length word is at `pos`, within the budget."""
        length = self.unpack("<I", pos)
        start = pos + 4
        if start + length * width > len(self.data):
            raise Malformed(f"vector of {length} elements at offset {pos} runs past the end of the model")
        self.budget -= length
        if self.budget < 0:
            raise LimitExceeded("max_members", "flatbuffer vectors alias each other beyond one read per element")
        return start, length


class Table(NamedTuple):
    buf: FlatBuffer
    pos: int
    vtable: int
    vt_size: int
    size: int

    def _field(self, slot: int, width: int) -> int | None:
        """Absolute position of a field, or None if absent; the field must lie inside the table."""
        entry = 4 + 2 * slot
        if entry + 2 > self.vt_size:
            return None
        offset = self.buf.unpack("<H", self.vtable + entry)
        if not offset:
            return None
        if offset + width > self.size:
            raise Malformed(f"field {slot} of the table at offset {self.pos} lies outside the table")
        return self.pos + offset

    def scalar(self, slot: int, fmt: str, default: int) -> int:
        at = self._field(slot, struct.calcsize(fmt))
        return default if at is None else self.buf.unpack(fmt, at)

    def _target(self, slot: int) -> int | None:
        at = self._field(slot, 4)
        return None if at is None else at + self.buf.unpack("<I", at)

    def string(self, slot: int) -> str | None:
        target = self._target(slot)
        if target is None:
            return None
        start, length = self.buf.vector(target, 1)
        return self.buf.data[start : start + length].decode("utf-8", "replace")

    def bytes(self, slot: int) -> bytes | None:
        """A `[ubyte]` vector field, or a `string` field's raw bytes."""
        target = self._target(slot)
        if target is None:
            return None
        start, length = self.buf.vector(target, 1)
        return self.buf.data[start : start + length]

    def subtable(self, slot: int) -> Table | None:
        target = self._target(slot)
        return None if target is None else self.buf.table(target)

    def tables(self, slot: int) -> Iterator[Table]:
        target = self._target(slot)
        if target is None:
            return
        start, length = self.buf.vector(target, 4)
        for index in range(length):
            element = start + 4 * index
            yield self.buf.table(element + self.buf.unpack("<I", element))
