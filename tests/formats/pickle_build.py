"""Opcode-level builders for hand-assembled pickles used by the pickle tests."""

from __future__ import annotations

import pickle
import struct

from modelshield import FileResult
from modelshield.core.rules import Severity


def proto(n: int) -> bytes:
    return bytes([0x80, n])


def glob(module: str, name: str) -> bytes:
    """GLOBAL opcode (protocol 0 spelling, valid in every protocol)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def text(value: str) -> bytes:
    """SHORT_BINUNICODE (protocol 4) or BINUNICODE for long strings."""
    data = value.encode()
    if len(data) < 256:
        return b"\x8c" + bytes([len(data)]) + data
    return b"X" + struct.pack("<I", len(data)) + data


def binbytes(value: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(value)) + value


def binint1(value: int) -> bytes:
    return b"K" + bytes([value])


def frame(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


MARK, STOP, TUPLE, TUPLE1, TUPLE2, REDUCE, BUILD, POP, DUP = b"(", b".", b"t", b"\x85", b"\x86", b"R", b"b", b"0", b"2"
MEMOIZE, STACK_GLOBAL, EMPTY_DICT, EMPTY_LIST, NONE, SETITEM = b"\x94", b"\x93", b"}", b"]", b"N", b"s"
EMPTY_TUPLE, APPENDS, INST, OBJ, NEWOBJ = b")", b"e", b"i", b"o", b"\x81"


def call(module: str, name: str, *args: bytes, p: int = 4) -> bytes:
    """`module.name(*args)` via GLOBAL + TUPLE + REDUCE, then STOP."""
    return proto(p) + glob(module, name) + MARK + b"".join(args) + TUPLE + REDUCE + STOP


MAGIC = 0x1950A86A20F9469CFC6C


def legacy_torch(main: bytes, storages: dict[str, bytes], trailing: bytes = b"") -> bytes:
    """The stacked layout of `torch.save(_use_new_zipfile_serialization=False)`."""
    keys = pickle.dumps(sorted(storages), protocol=2)
    data = b"".join(struct.pack("<q", len(raw) // 4) + raw for _, raw in sorted(storages.items()))
    return (
        pickle.dumps(MAGIC, protocol=2)
        + pickle.dumps(1001, protocol=2)
        + pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
        + main
        + keys
        + data
        + trailing
    )


def tensor_pickle(key: str, extra: bytes = b"") -> bytes:
    """An OrderedDict-free main pickle: one tensor rebuilt from a FloatStorage persistent id."""
    pid = MARK + text("storage") + glob("torch", "FloatStorage") + text(key) + text("cpu") + b"K\x04" + b"N" + TUPLE
    args = MARK + pid + b"Q" + b"K\x00" + MARK + b"K\x04" + TUPLE + MARK + b"K\x01" + TUPLE + b"\x89"
    args += glob("collections", "OrderedDict") + b")R" + TUPLE
    return proto(2) + extra + glob("torch._utils", "_rebuild_tensor_v2") + args + b"R" + STOP


def binget(index: int) -> bytes:
    return b"h" + bytes([index])


def binput(index: int) -> bytes:
    return b"q" + bytes([index])


def rules(result: FileResult, at_least: Severity = Severity.INFO) -> set[str]:
    """Rule ids of the findings at or above a severity."""
    return {f.rule_id for f in result.findings if f.level >= at_least}


def evidence(result: FileResult, rule_id: str) -> list[str]:
    return [f.evidence for f in result.findings if f.rule_id == rule_id]
