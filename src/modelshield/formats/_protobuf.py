"""A minimal protobuf wire-format walker for sniffing (ONNX, SavedModel): tags and lengths only.

It never materialises a length-delimited payload: it reports where each field's value sits, so a
caller can skip a multi-gigabyte `graph` field by its length or read a short string on purpose.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

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
    """Decode a base-128 varint at `pos`; return (value, position after it).

    At most 10 bytes; bits past the 64th are dropped, as protobuf's parsers (C++, upb) and LevelDB's
    drop them: an `ir_version` with junk in its tenth byte is still a model ONNX Runtime loads."""
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(buf):
            raise CutShort("varint runs past the end of the data")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos
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


# -- whole-message decoding, as the protobuf runtimes parse ----------------------------------------
#
# The walker above is for sniffing. `decode` parses a whole message the way the C++ runtime and upb do,
# so that a scanner sees the same message a loader builds: a singular embedded message that appears
# more than once is merged into one, a singular scalar keeps its last value, a closed enum keeps only
# values it defines, repeated numbers are accepted packed and unpacked, unknown fields (groups too)
# are skipped, and nesting stops at the runtimes' depth limit. A schema names only the fields a caller
# keeps or that the runtime validates (embedded messages, packed numbers): everything else is an
# unknown field to skip, which is exactly how the runtime treats a scalar it stores without checking.

#: Nesting depth of embedded messages and groups the runtimes parse (upb's and C++'s default limit).
MAX_DEPTH = 100

#: What a schema does with a field (keyed by tag: field number and wire type together).
STRING, BYTES, INT64, ENUM, MESSAGE, MESSAGES, CHECK, PACKED_VARINT, PACKED_FIXED32, PACKED_FIXED64 = range(10)

#: Validated-only messages up to this many bytes are remembered once valid, up to _MAX_VALID of them.
_SMALL, _MAX_VALID = 64, 65536
#: A packed run of varints as the runtimes accept it: each at most 10 bytes (bits past 64 dropped).
_VARINTS = re.compile(rb"(?:[\x80-\xff]{0,9}[\x00-\x7f])*")


class Spec(NamedTuple):
    """What to do with one field: `kind`, the attribute it is kept in, the embedded message's schema,
    and for an enum the values it defines (others go to the unknown fields and change nothing)."""

    kind: int
    attr: str = ""
    schema: Schema | None = None
    values: frozenset[int] = frozenset()


class Schema:
    """One message type: the object it is decoded into (None: validated only), its fields by tag, and
    which elements of a repeated field of this type are worth keeping once decoded (`keep`)."""

    def __init__(
        self, name: str, factory: Callable[[], Any] | None = None, keep: Callable[[Any], bool] | None = None
    ) -> None:
        self.name = name
        self.factory = factory
        self.keep = keep
        self.specs: dict[int, Spec] = {}
        #: what validating without keeping needs: embedded messages (all as CHECK) and packed numbers
        self.checks: dict[int, Spec] = {}

    def define(self, fields: dict[tuple[int, int], Spec]) -> None:
        """Fields by (number, wire type): set after construction so that schemas can refer to each other."""
        self.specs = {number << 3 | wire_type: spec for (number, wire_type), spec in fields.items()}
        self.checks = {
            key: spec._replace(kind=CHECK, attr="") if spec.kind in (MESSAGE, MESSAGES) else spec
            for key, spec in self.specs.items()
            if spec.kind in (MESSAGE, MESSAGES, CHECK, PACKED_VARINT, PACKED_FIXED32, PACKED_FIXED64)
        }


class Decoded(NamedTuple):
    message: Any
    #: messages left out after `limit` were kept (still validated)
    truncated: bool


class _Cut(Exception):
    """`limit` embedded messages were decoded: the rest of the message is not read."""


def decode(buf: bytes, schema: Schema, limit: int) -> Decoded:
    """Decode `buf` as one `schema` message, decoding at most `limit` embedded messages (kept or not).

    Raises `WireError` wherever the runtimes reject the bytes. Work is linear in the input: every byte
    is read once, merging included (a repeated embedded message is parsed into the one already there).
    Past `limit` decoding stops (`truncated`): what was decoded is returned for the caller to judge and
    report as not fully analysed, so a file of millions of empty messages costs what `limit` costs, not
    what its size allows."""
    decoder = _Decoder(buf, limit)
    message = schema.factory() if schema.factory is not None else None
    try:
        decoder.parse(0, len(buf), schema, message, MAX_DEPTH)
    except _Cut:
        return Decoded(message, True)
    return Decoded(message, False)


def _int64(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


def _int32(value: int) -> int:
    """An enum's value as the runtimes store it: the low 32 bits of the varint, signed."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value


class _Decoder:
    def __init__(self, buf: bytes, limit: int) -> None:
        self.buf = buf
        self.limit = limit
        #: embedded messages decoded (kept or dropped)
        self.decoded = 0
        #: small validated-only messages already found valid, by (schema, depth, bytes)
        self.valid: set[tuple[Schema | None, int, bytes]] = set()

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        """A varint ending before `end`, and the position after it."""
        value, after = read_varint(self.buf, pos)
        if after > end:
            raise CutShort(f"varint runs past the end of its message at offset {pos}")
        return value, after

    def size(self, pos: int, end: int) -> tuple[int, int]:
        """A tag or a length: the runtimes read these as 32-bit varints, at most 5 bytes."""
        value, after = self.varint(pos, end)
        if after - pos > 5 or value >> 32:
            raise WireError(f"tag or length wider than 32 bits at offset {pos}")
        return value, after

    def parse(self, pos: int, end: int, schema: Schema, message: Any, depth: int) -> None:
        """The fields of `buf[pos:end]` into `message`, or validated only when it is None."""
        buf, specs = self.buf, schema.specs if message is not None else schema.checks
        while pos < end:
            tag = buf[pos]
            if tag < 0x80:
                pos += 1
            elif pos + 1 < end and buf[pos + 1] < 0x80:  # field numbers 16 to 2047
                tag, pos = (tag & 0x7F) | buf[pos + 1] << 7, pos + 2
            else:
                tag, pos = self.size(pos, end)
            wire_type = tag & 7
            if tag < 8:
                raise WireError(f"invalid field number 0 in {schema.name} at offset {pos}")
            spec = specs.get(tag)
            if wire_type == LEN:
                if pos < end and buf[pos] < 0x80:
                    length, pos = buf[pos], pos + 1
                elif pos + 1 < end and buf[pos + 1] < 0x80:
                    length, pos = (buf[pos] & 0x7F) | buf[pos + 1] << 7, pos + 2
                else:
                    length, pos = self.size(pos, end)
                stop = pos + length
                if stop > end:
                    raise CutShort(f"field {tag >> 3} of {schema.name} runs past the end at offset {pos}")
                if spec is None:
                    pass
                elif spec.kind == STRING:  # only in `specs`: `message` is not None
                    setattr(message, spec.attr, buf[pos:stop].decode("utf-8", "surrogateescape"))
                elif spec.kind == PACKED_VARINT:
                    if _VARINTS.fullmatch(buf, pos, stop) is None:
                        raise WireError(f"malformed packed varints at offset {pos}")
                elif spec.kind == CHECK:  # the common case, inline: value infos, types, shapes
                    if depth <= 0:
                        raise WireError(f"messages nested deeper than {MAX_DEPTH} at offset {pos}")
                    if stop - pos > _SMALL:
                        self.parse(pos, stop, spec.schema, None, depth - 1)  # type: ignore[arg-type]
                    elif stop > pos:  # value infos repeat the same few types: each is validated once
                        key = (spec.schema, depth, buf[pos:stop])
                        if key not in self.valid:
                            self.parse(pos, stop, spec.schema, None, depth - 1)  # type: ignore[arg-type]
                            if len(self.valid) < _MAX_VALID:
                                self.valid.add(key)
                else:
                    self.value(spec, pos, stop, message, depth)
                pos = stop
            elif wire_type == VARINT:
                if pos < end and buf[pos] < 0x80:
                    value, pos = buf[pos], pos + 1
                else:
                    value, pos = self.varint(pos, end)
                if spec is not None:  # a kept scalar: only in `specs`, so `message` is not None
                    if spec.kind == INT64:
                        setattr(message, spec.attr, _int64(value))
                    elif _int32(value) in spec.values:
                        setattr(message, spec.attr, _int32(value))
            elif wire_type in (I64, I32):
                pos += 8 if wire_type == I64 else 4
                if pos > end:
                    raise CutShort(f"fixed-width field of {schema.name} runs past the end at offset {pos}")
            elif wire_type == START_GROUP:
                pos = self.skip_group(pos, end, tag >> 3, depth)
            else:
                raise WireError(f"unexpected wire type {wire_type} in {schema.name} at offset {pos}")

    def value(self, spec: Spec, pos: int, stop: int, message: Any, depth: int) -> None:
        """A length-delimited field the schema names, other than the common ones `parse` handles inline;
        `message` is not None (a message validated only is parsed with its schema's `checks`)."""
        kind = spec.kind
        if kind == BYTES:
            setattr(message, spec.attr, self.buf[pos:stop])
        elif kind in (MESSAGE, MESSAGES):
            if depth <= 0:
                raise WireError(f"messages nested deeper than {MAX_DEPTH} at offset {pos}")
            schema = spec.schema
            assert schema is not None
            self.decoded += 1
            if self.decoded > self.limit:
                raise _Cut
            sub = getattr(message, spec.attr) if kind == MESSAGE else None
            if sub is None:
                sub = schema.factory() if schema.factory is not None else None
                if kind == MESSAGE:
                    setattr(message, spec.attr, sub)  # merged into by a later occurrence
                else:
                    getattr(message, spec.attr).append(sub)
            self.parse(pos, stop, schema, sub, depth - 1)
            if kind == MESSAGES and sub is not None and schema.keep is not None and not schema.keep(sub):
                getattr(message, spec.attr).pop()  # an element is never merged into: dropping it changes nothing
        elif (stop - pos) % (4 if kind == PACKED_FIXED32 else 8):
            raise WireError(f"packed fixed-width numbers of a partial length at offset {pos}")

    def skip_group(self, pos: int, end: int, number: int, depth: int) -> int:
        """Skip an unknown group's body and end tag; each group level costs one level of depth."""
        open_groups = [number]
        while open_groups:
            if len(open_groups) > depth:
                raise WireError(f"groups nested deeper than {MAX_DEPTH} at offset {pos}")
            if pos >= end:
                raise CutShort("a group runs past the end of its message")
            tag, pos = self.size(pos, end)
            wire_type = tag & 7
            if tag < 8:
                raise WireError(f"invalid field number 0 at offset {pos}")
            if wire_type == VARINT:
                pos = self.varint(pos, end)[1]
            elif wire_type == LEN:
                length, pos = self.size(pos, end)
                pos += length
            elif wire_type in (I64, I32):
                pos += 8 if wire_type == I64 else 4
            elif wire_type == START_GROUP:
                open_groups.append(tag >> 3)
            elif wire_type == END_GROUP:
                if open_groups.pop() != tag >> 3:
                    raise WireError(f"group end at offset {pos} does not match its start")
            else:
                raise WireError(f"unexpected wire type {wire_type} at offset {pos}")
            if pos > end:
                raise CutShort("a field inside a group runs past the end of its message")
        return pos
