"""TensorFlow Lite / LiteRT flatbuffer models: recognised by identifier and root table, not yet
analysed (fail closed)."""

from __future__ import annotations

import struct

from modelshield.core.source import Source
from modelshield.formats._unanalysed import UnanalysedFormat

IDENTIFIER = b"TFL3"


def root_table(source: Source) -> int | None:
    """Offset of the flatbuffer's root `Model` table, or None if this is not a TFLite model.

    Beyond the `TFL3` identifier, the root offset must land inside the file and the table's vtable
    must be in bounds and well-sized, which rules out text or binaries that merely contain `TFL3`.
    """
    head = source.head(8)
    if len(head) < 8 or head[4:8] != IDENTIFIER:
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


def schema_version(source: Source, root: int) -> int | None:
    """The `Model.version` field (slot 0), if present."""
    (back,) = struct.unpack("<i", source.read_at(root, 4))
    vtable = root - back
    (vt_size,) = struct.unpack("<H", source.read_at(vtable, 2))
    if vt_size < 6:
        return None
    (slot,) = struct.unpack("<H", source.read_at(vtable + 4, 2))
    raw = source.read_at(root + slot, 4) if slot else b""
    return int.from_bytes(raw, "little") if len(raw) == 4 else None


class TfliteHandler(UnanalysedFormat):
    name = "tflite"
    label = "TensorFlow Lite / LiteRT model"
    extensions = frozenset({".tflite", ".lite"})
    unchecked = "custom and Flex (TensorFlow) operators such as FlexReadFile/FlexWriteFile"

    def detect(self, source: Source) -> bool:
        return root_table(source) is not None

    def describe(self, source: Source) -> str:
        root = root_table(source)
        assert root is not None
        version = schema_version(source, root)
        return "TFLite flatbuffer" + ("" if version is None else f" (schema version {version})")
