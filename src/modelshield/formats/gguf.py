"""GGUF (llama.cpp) models: recognised by their header, not yet analysed (fail closed)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from modelshield.core.source import Source
from modelshield.formats._unanalysed import UnanalysedFormat

MAGIC = b"GGUF"
#: GGUF versions 1-3 exist; version 1 used 32-bit counts, later versions 64-bit ones.
VERSIONS = range(1, 4)


@dataclass(frozen=True)
class GgufHeader:
    version: int
    byte_order: str
    tensor_count: int
    kv_count: int


def read_header(source: Source) -> GgufHeader | None:
    """The GGUF header, or None if the bytes are not GGUF.

    The version is little-endian normally; big-endian files (for s390x) store it byte-swapped,
    which is how readers tell the two apart.
    """
    head = source.head(24)
    if len(head) < 8 or head[:4] != MAGIC:
        return None
    for order in ("<", ">"):
        (version,) = struct.unpack_from(order + "I", head, 4)
        if version in VERSIONS:
            break
    else:
        return None
    count = "I" if version == 1 else "Q"
    need = 8 + 2 * struct.calcsize(count)
    if len(head) < need:
        return None
    tensors, kvs = struct.unpack_from(order + 2 * count, head, 8)
    return GgufHeader(version, "little" if order == "<" else "big", tensors, kvs)


class GgufHandler(UnanalysedFormat):
    name = "gguf"
    label = "GGUF model"
    extensions = frozenset({".gguf"})
    unchecked = "metadata such as tokenizer.chat_template (a Jinja template rendered by some runtimes)"

    def detect(self, source: Source) -> bool:
        return read_header(source) is not None

    def describe(self, source: Source) -> str:
        header = read_header(source)
        assert header is not None
        return (
            f"GGUF v{header.version} ({header.byte_order}-endian) with {header.tensor_count} tensors "
            f"and {header.kv_count} metadata keys"
        )
