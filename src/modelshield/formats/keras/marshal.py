"""What marshalled Python bytecode names, read without unmarshalling it.

Keras stores Lambda functions as `marshal.dumps(func.__code__)`. `marshal.loads` is not safe on hostile
bytes (it can crash the interpreter) and is version-specific, so this is a small bounded reader of the
marshal format (CPython's Python/marshal.c) that only collects what evidence needs: the names a code
object uses (`co_names`: globals and attributes such as `os`, `system`), its string constants and its
nested functions. Anything it cannot parse falls back to the printable identifiers in the bytes.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

MAX_OBJECTS = 200_000
MAX_DEPTH = 64
#: How many header int32s precede `co_code`: 3.11+ and 3.0-3.7 (5), 3.8-3.10 (6), Python 2 (4).
_HEADER_INTS = (5, 6, 4)
_FLAG_REF = 0x80
_NULL = object()
_IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_.]{1,80}")


class MarshalError(ValueError):
    """The bytes are not a marshalled object this reader understands."""


@dataclass
class _Code:
    name: str
    filename: str
    names: list[Any]
    consts: list[Any]


@dataclass
class CodeSummary:
    """What the bytecode refers to; `parsed` is False when only printable strings could be extracted."""

    parsed: bool
    names: list[str] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    filename: str = ""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.refs: list[Any] = []
        self.objects = 0
        self.codes: list[_Code] = []

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MarshalError(f"{n} bytes wanted at offset {self.pos}, past the end")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int32(self) -> int:
        value: int = struct.unpack("<i", self.take(4))[0]
        return value

    def obj(self, depth: int) -> Any:
        self.objects += 1
        if self.objects > MAX_OBJECTS or depth > MAX_DEPTH:
            raise MarshalError("marshal data nests or repeats beyond the reader's bounds")
        code = self.take(1)[0]
        kind = chr(code & ~_FLAG_REF)
        slot = None
        if code & _FLAG_REF and kind != "r":
            slot = len(self.refs)
            self.refs.append(None)
        value = self._value(kind, depth)
        if slot is not None:
            self.refs[slot] = value
        return value

    def _value(self, kind: str, depth: int) -> Any:
        singletons = {"0": _NULL, "N": None, "F": False, "T": True, "S": StopIteration, ".": Ellipsis}
        if kind in singletons:
            return singletons[kind]
        if kind == "i":
            return self.int32()
        if kind == "I":
            return struct.unpack("<q", self.take(8))[0]
        if kind == "l":
            digits = abs(self.int32())
            self.take(2 * digits)
            return 0
        if kind in "gy":
            self.take(8 if kind == "g" else 16)
            return 0.0
        if kind in "fx":
            for _ in range(1 if kind == "f" else 2):
                self.take(self.take(1)[0])
            return 0.0
        if kind == "s":
            return self.take(self.int32())
        if kind in "tuaA":
            return self.take(self.int32()).decode("utf-8", "replace")
        if kind in "zZ":
            return self.take(self.take(1)[0]).decode("latin-1")
        if kind == "r":
            index = self.int32()
            if not 0 <= index < len(self.refs):
                raise MarshalError(f"reference {index} to an object not read yet")
            return self.refs[index]
        if kind in "([<>":
            return [self.obj(depth + 1) for _ in range(self._count())]
        if kind == ")":
            return [self.obj(depth + 1) for _ in range(self.take(1)[0])]
        if kind == "{":
            items = []
            while (key := self.obj(depth + 1)) is not _NULL:
                items += [key, self.obj(depth + 1)]
            return items
        if kind == ":":
            return [self.obj(depth + 1) for _ in range(3)]
        if kind == "c":
            return self._code(depth)
        raise MarshalError(f"unknown marshal type {kind!r} at offset {self.pos - 1}")

    def _count(self) -> int:
        count = self.int32()
        if count < 0 or count > len(self.data) - self.pos:
            raise MarshalError(f"container of {count} items cannot fit in the data")
        return count

    def _code(self, depth: int) -> _Code:
        start = self.pos
        for ints in _HEADER_INTS:
            at = start + 4 * ints
            if at < len(self.data) and self.data[at] & ~_FLAG_REF == ord("s"):
                break
        else:
            raise MarshalError("code object without bytecode where a known Python version puts it")
        self.pos = start + 4 * ints
        self.obj(depth + 1)  # co_code
        fields = [self.obj(depth + 1) for _ in range(7)]
        self.int32()  # co_firstlineno
        self.obj(depth + 1)  # line table
        modern = ints == 5 and isinstance(fields[3], bytes)  # 3.11+: co_localspluskinds is bytes
        if modern:
            self.obj(depth + 1)  # exception table
        filename, name = (fields[4], fields[5]) if modern else (fields[5], fields[6])
        code = _Code(_text(name), _text(filename), _flat(fields[1]), _flat(fields[0]))
        self.codes.append(code)
        return code


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else ""


def _flat(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _constants(values: list[Any], into: dict[str, None], depth: int = 0) -> None:
    for value in values:
        if isinstance(value, str):
            into[value] = None
        elif isinstance(value, list) and depth < MAX_DEPTH:
            _constants(value, into, depth + 1)


def summarise(data: bytes) -> CodeSummary:
    """The names, string constants and function names of a marshalled code object."""
    reader = _Reader(data)
    try:
        top = reader.obj(0)
        if not isinstance(top, _Code):
            raise MarshalError("not a code object")
    except MarshalError:
        words = dict.fromkeys(m.group().decode("ascii") for m in _IDENTIFIER.finditer(data))
        return CodeSummary(parsed=False, strings=list(words))
    names: dict[str, None] = {}
    strings: dict[str, None] = {}
    for code in reader.codes:
        names.update(dict.fromkeys(n for n in code.names if isinstance(n, str)))
        _constants(code.consts, strings)
    return CodeSummary(True, list(names), list(strings), [c.name for c in reader.codes], top.filename)
