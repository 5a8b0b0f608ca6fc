"""The operator a LiteRT Flex (Select TF ops) node really runs: its `custom_options`, decoded as the
Flex delegate decodes them, without TensorFlow.

`tensorflow/lite/delegates/flex/kernel.cc` (`OpNode::InitializeNodeDef`) reads the options as a
flexbuffer whose root is a vector: element 0 is the name of the op to run, element 1 a serialized
NodeDef whose attributes configure it (its own `op` is only looked up for default attributes). The
delegate claims a node by its custom code starting with `Flex`, so the three names (custom code,
vector name, NodeDef op) can all differ: the kernel that runs is the vector's name. The decoder
mirrors `flexbuffers::GetRoot(...).AsVector()` and `AsString()`, checking every offset (the
runtime checks none).
"""

from __future__ import annotations

from typing import NamedTuple

from modelshield.core.source import BytesSource
from modelshield.formats._protobuf import WireError
from modelshield.formats.tensorflow.savedmodel import Node, WireMessage, read_node

# flexbuffers.h `Type`
_KEY, _STRING, _MAP, _VECTOR = 4, 5, 9, 10


class FlexError(ValueError):
    """The custom options are not what the Flex delegate can decode into an op and a NodeDef."""


class FlexNode(NamedTuple):
    #: the op the delegate runs (vector element 0)
    runs: str
    #: the NodeDef (element 1) whose attributes it runs with
    node: Node


def _uint(data: bytes, pos: int, width: int) -> int:
    """flexbuffers `ReadUInt64`: any width reads 1, 2, 4 or 8 bytes (`ReadSizedScalar` rounds down),
    which matters for the root, whose width is the file's last byte, unchecked."""
    size = 1 if width < 2 else 2 if width < 4 else 4 if width < 8 else 8
    if pos < 0 or pos + size > len(data):
        raise FlexError(f"read of {size} bytes at offset {pos} is outside the {len(data)}-byte options")
    return int.from_bytes(data[pos : pos + size], "little")


class _Ref(NamedTuple):
    """flexbuffers `Reference`: where a value sits, its parent's width, its type and own width."""

    data: bytes
    pos: int
    parent_width: int
    kind: int
    width: int

    @classmethod
    def at(cls, data: bytes, pos: int, parent_width: int, packed: int) -> _Ref:
        return cls(data, pos, parent_width, packed >> 2, 1 << (packed & 3))

    def indirect(self) -> int:
        return self.pos - _uint(self.data, self.pos, self.parent_width)

    def vector(self) -> list[_Ref]:
        """`AsVector()`: untyped vectors and maps (a map's values are a vector); anything else is empty."""
        if self.kind not in (_VECTOR, _MAP):
            return []
        start = self.indirect()
        size = _uint(self.data, start - self.width, self.width)
        if start + size * (self.width + 1) > len(self.data):
            raise FlexError(f"a vector of {size} elements runs past the end of the options")
        types = start + size * self.width
        return [_Ref.at(self.data, start + i * self.width, self.width, self.data[types + i]) for i in range(size)]

    def string(self) -> bytes:
        """`AsString()`: a string (length before it) or a key (NUL-terminated); anything else is empty."""
        if self.kind == _STRING:
            start = self.indirect()
            size = _uint(self.data, start - self.width, self.width)
            if start + size > len(self.data):
                raise FlexError("a string runs past the end of the options")
            return self.data[start : start + size]
        if self.kind == _KEY:
            start = self.indirect()
            end = self.data.find(b"\0", max(start, 0))
            if start < 0 or end < 0:
                raise FlexError("a key runs past the end of the options")
            return self.data[start:end]
        return b""


def decode(options: bytes) -> FlexNode:
    """The op name and NodeDef of a Flex operator's custom options (`FlexError` if they do not decode,
    in which case the delegate fails to initialise the node or reads out of bounds)."""
    if len(options) < 3:
        raise FlexError("the custom options are too short for a flexbuffer")
    width, packed = options[-1], options[-2]
    root = _Ref.at(options, len(options) - 2 - width, width, packed)
    if root.pos < 0:
        raise FlexError(f"flexbuffer root width {width} is more than the options hold")
    elements = root.vector()
    if len(elements) < 2:
        raise FlexError("the root is not a vector of an op name and a NodeDef")
    runs = elements[0].string().decode("utf-8", "replace")
    serialized = elements[1].string()
    try:
        node = read_node(WireMessage(BytesSource(serialized), 0, len(serialized)), all_strings=True)
    except WireError as exc:
        raise FlexError(f"the NodeDef does not parse: {exc}") from exc
    if not runs:
        raise FlexError("the op name is empty")
    return FlexNode(runs, node)
