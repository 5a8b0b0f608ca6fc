"""A minimal protobuf wire-format walker for sniffing (ONNX, SavedModel): tags and lengths only.

It never materialises a length-delimited payload: it reports where each field's value sits, so a
caller can skip a multi-gigabyte `graph` field by its length or read a short string on purpose.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import NamedTuple

from modelshield.core.source import HEAD, BytesSource, Source

VARINT = 0
I64 = 1
LEN = 2
START_GROUP = 3
END_GROUP = 4
I32 = 5
#: Groups nest; protobuf's own parsers stop at 100 levels of nesting.
MAX_GROUP_DEPTH = 100

#: Longest tag (field numbers < 2**29) plus longest varint value: enough to decode any field head.
_HEAD_BYTES = 5 + 10


class WireError(ValueError):
    """The bytes are not well-formed protobuf wire format at this point."""


class CutShort(WireError):
    """The bytes end inside a field: malformed for a whole message, expected for a head."""


class Field(NamedTuple):
    """One field: for VARINT/I64/I32 `value` is the number, for LEN it is the payload length."""

    number: int
    wire_type: int
    offset: int
    value: int


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at `pos`; return (value, position after it)."""
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(buf):
            raise CutShort("varint runs past the end of the data")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value >= 1 << 64:
                raise WireError("varint wider than 64 bits")
            return value, pos
    raise WireError("varint longer than 10 bytes")


def fields(source: Source, start: int, end: int, limit: int) -> Iterator[Field]:
    """The fields of the message occupying `source[start:end]`, at most `limit` of them.

    Raises `WireError` at the first malformed field (bad wire type, field number 0, a value that
    runs past `end`). Stops silently after `limit` fields, so a caller sees a bounded prefix.
    A group (the deprecated wire types 3 and 4) is one field whose `value` is the length of its
    body: every protobuf parser accepts one as an unknown field, so skipping it is what loaders do.
    """
    pos = start
    for _ in range(limit):
        if pos == end:
            return
        field, pos = _field_at(source, pos, end)
        if field.wire_type == END_GROUP:
            raise WireError(f"group end without a start at offset {field.offset}")
        yield field


def plausible_head(source: Source) -> bool:
    """Whether the head of `source` walks as protobuf fields: a cheap test before a detector asks
    for the size (which decodes the whole of a compressed stream). A field that runs past a full
    head is fine; one that runs past the end of a file that fits in the head is not."""
    return _walks(source.head(HEAD))


@functools.lru_cache(maxsize=1)
def _walks(head: bytes) -> bool:
    """`plausible_head` of these bytes, remembered for the last head: every protobuf detector (ONNX,
    SavedModel, GraphDef, Keras metadata...) asks about the same head in turn."""
    if not head:
        return False
    view, whole = BytesSource(head), len(head) < HEAD
    end = len(head) if whole else 1 << 62
    pos = 0
    try:
        while pos < len(head):
            field, pos = _field_at(view, pos, end)
            if field.wire_type == END_GROUP:
                return False
    except CutShort:
        return not whole
    except WireError:
        return False
    return True


def _field_at(source: Source, pos: int, end: int) -> tuple[Field, int]:
    """The field starting at `pos` and the position after it (a group's end tag is a field of its own)."""
    head = source.read_at(pos, min(_HEAD_BYTES, end - pos))
    tag, used = read_varint(head, 0)
    number, wire_type = tag >> 3, tag & 7
    if number == 0 or number >= 1 << 29:
        raise WireError(f"invalid field number {number} at offset {pos}")
    if wire_type == VARINT:
        value, after = read_varint(head, used)
        field, pos = Field(number, wire_type, pos + used, value), pos + after
    elif wire_type == LEN:
        length, after = read_varint(head, used)
        field, pos = Field(number, wire_type, pos + after, length), pos + after + length
    elif wire_type in (I64, I32):
        width = 8 if wire_type == I64 else 4
        if len(head) < used + width:
            raise WireError(f"fixed-width field runs past the end at offset {pos}")
        field = Field(number, wire_type, pos + used, int.from_bytes(head[used : used + width], "little"))
        pos += used + width
    elif wire_type == START_GROUP:
        body_end, after = _skip_group(source, pos + used, end, number)
        field, pos = Field(number, wire_type, pos + used, body_end - pos - used), after
    elif wire_type == END_GROUP:
        field, pos = Field(number, wire_type, pos, 0), pos + used
    else:
        raise WireError(f"unsupported wire type {wire_type} at offset {pos}")
    if pos > end:
        raise WireError(f"field {number} at offset {field.offset} runs past the end of its message")
    return field, pos


def _skip_group(source: Source, pos: int, end: int, number: int) -> tuple[int, int]:
    """Skip the body of group `number` starting at `pos`: (where its end tag starts, where it ends).

    Iterative, with the nesting bounded as protobuf's parsers bound it."""
    open_groups = [number]
    while pos < end:
        tag, used = read_varint(source.read_at(pos, min(_HEAD_BYTES, end - pos)), 0)
        if tag & 7 == START_GROUP and tag >> 3:
            open_groups.append(tag >> 3)
            if len(open_groups) > MAX_GROUP_DEPTH:
                raise WireError(f"groups nested deeper than {MAX_GROUP_DEPTH} at offset {pos}")
            pos += used
            continue
        field, after = _field_at(source, pos, end)
        if field.wire_type == END_GROUP:
            if field.number != open_groups.pop():
                raise WireError(f"group end at offset {pos} does not match its start")
            if not open_groups:
                return pos, after
        pos = after
    raise CutShort("a group runs past the end of its message")


def read_text(source: Source, field: Field, limit: int) -> str | None:
    """A short LEN field as UTF-8 text; None if it is longer than `limit` or not valid UTF-8."""
    if field.wire_type != LEN or field.value > limit:
        return None
    try:
        return source.read_at(field.offset, field.value).decode("utf-8")
    except UnicodeDecodeError:
        return None
