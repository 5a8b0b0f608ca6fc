"""The data loop's fused shapes end exactly where the general loop takes over.

Each case is a shape real data pickles are made of (a dict of names to numbers, protocol 2's BINUNICODE
with LONG_BINPUT, lists grown by APPEND, protocol 0's text lines and DICT/LIST), or that shape broken
(a call in the middle of it, a memo fetch of a missing index, a frame that ends inside it, a cut). Each
is run through the machine with the data loop and without it: findings, errors, the memo (size,
accounted bytes, what it dropped), the stack and the result must be the same, and the data loop must
really have run part of it.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

import pytest

from modelshield import Policy
from modelshield.core.callables import Trust
from modelshield.core.engine import Engine
from modelshield.core.errors import LimitExceeded
from modelshield.core.findings import Location
from modelshield.core.handler import Context
from modelshield.core.source import BytesSource
from modelshield.formats.pickle.machine import Machine, Malformed
from modelshield.formats.pickle.names import Judge
from modelshield.formats.pickle.values import render
from modelshield.registry import HANDLERS
from tests.formats.pickle_build import (
    DUP,
    EMPTY_DICT,
    EMPTY_LIST,
    MARK,
    MEMOIZE,
    NONE,
    POP,
    REDUCE,
    SETITEM,
    STACK_GLOBAL,
    STOP,
    TUPLE1,
    TUPLE2,
    binget,
    binint1,
    binput,
    frame,
    glob,
    proto,
    text,
)

APPEND, SETITEMS, BININT_OP = b"a", b"u", b"J"
#: The data loop starts only with more than 64 bytes ahead: a tail of NONE POP keeps the shape inside it.
TAIL = (NONE + POP) * 48


def binunicode(value: str) -> bytes:
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def long_binput(index: int) -> bytes:
    return b"r" + struct.pack("<I", index)


def long_binget(index: int) -> bytes:
    return b"j" + struct.pack("<I", index)


def binint(value: int) -> bytes:
    return BININT_OP + struct.pack("<i", value)


def _keys_to_numbers(count: int, middle: bytes = b"") -> bytes:
    """pkuseg's features: `MARK (SHORT_BINUNICODE MEMOIZE BININT)* SETITEMS`, `middle` after the first half."""
    entries = [text(f"feature{i}") + MEMOIZE + binint(70_000 + i) for i in range(count)]
    entries.insert(count // 2, middle)
    return proto(4) + EMPTY_DICT + MEMOIZE + MARK + b"".join(entries) + SETITEMS


def _protocol2_lists(count: int) -> bytes:
    """nagisa's dictionary: `BINUNICODE LONG_BINPUT EMPTY_LIST LONG_BINPUT BININT1 APPEND` per entry."""
    body = b""
    index = 1
    for i in range(count):
        body += binunicode(f"word{i}") + long_binput(index) + EMPTY_LIST + long_binput(index + 1)
        body += binint1(i % 200) + APPEND
        index += 2
    return proto(2) + EMPTY_DICT + binput(0) + MARK + body + SETITEMS


def _tuples_appended(count: int, item: bytes = NONE) -> bytes:
    """pykakasi's dictionary: a list grown by `SHORT_BINUNICODE MEMOIZE NONE TUPLE2 MEMOIZE APPEND`."""
    body = b"".join(text(f"reading{i}") + MEMOIZE + item + TUPLE2 + MEMOIZE + APPEND for i in range(count))
    return proto(4) + EMPTY_LIST + MEMOIZE + body


def _real(obj: object, protocol: int) -> bytes:
    return pickle.dumps(obj, protocol=protocol)


_SHARED = [f"syllable{i}" for i in range(400)]
#: tltk's trigram counts: tuples of shared strings (LONG_BINGET past 256 entries) mapped to numbers
_TRIGRAMS = {(_SHARED[i % 400], _SHARED[(i * 7) % 400], _SHARED[(i * 13) % 400]): i % 5 for i in range(600)}
#: underthesea's dictionary, rdkit's score lists: nested dicts and lists of words and numbers
_NESTED = {f"word{i}": {"pos": ["N", "V"][: i % 3], "freq": i * 0.5, "senses": [{"text": f"s{i}"}]} for i in range(80)}
_SCORES = [[float(i) / 7, *range(i, i + 30)] for i in range(20)]
#: where the first entry of `_NESTED` ends in its protocol 0 pickle (after its SETITEM)
_ENTRY_END = _real(_NESTED, 0).index(b"sassV") + 4
_SYSTEM = glob("os", "system") + text("id") + TUPLE1 + REDUCE

CASES: dict[str, bytes] = {
    "keys to numbers": _keys_to_numbers(40) + TAIL + STOP,
    "keys to numbers with a call in the middle": _keys_to_numbers(40, _SYSTEM + MEMOIZE) + TAIL + STOP,
    "keys to numbers with a global as a key": _keys_to_numbers(40, glob("os", "system") + binint(1)) + TAIL + STOP,
    "keys to numbers, cut": _keys_to_numbers(40)[:-150],
    "keys to numbers, cut inside a BININT": _keys_to_numbers(40)[:-3],
    "keys to numbers in frames": proto(4) + frame(_keys_to_numbers(40)[2:] + TAIL) + STOP,
    "a frame that ends inside a key": proto(4)
    + frame(_keys_to_numbers(40)[2:-400])
    + _keys_to_numbers(40)[-400:]
    + STOP,
    "protocol 2 lists": _protocol2_lists(30) + TAIL + STOP,
    "protocol 2 names fetched for a call": _protocol2_lists(30)
    + binunicode("os")
    + long_binput(61)
    + binunicode("system")
    + long_binput(62)
    + POP
    + POP
    + long_binget(61)
    + long_binget(62)
    + STACK_GLOBAL
    + binunicode("id")
    + TUPLE1
    + REDUCE
    + TAIL
    + STOP,
    "a LONG_BINPUT past the next index, then MEMOIZE": proto(4)
    + binunicode("os")
    + long_binput(5)
    + binunicode("system")
    + MEMOIZE
    + binunicode("nothing")
    + binput(1)
    + TAIL
    + long_binget(5)
    + long_binget(1)
    + STACK_GLOBAL
    + POP
    + STOP,
    "a BINPUT that overwrites an entry": proto(2)
    + binunicode("os")
    + binput(0)
    + binunicode("nothing")
    + binput(1)
    + binunicode("system")
    + binput(1)
    + TAIL
    + binget(0)
    + binget(1)
    + STACK_GLOBAL
    + POP
    + STOP,
    "a LONG_BINGET of a missing entry": _protocol2_lists(20) + long_binget(999) + TAIL + STOP,
    "a frame that ends inside a LONG_BINPUT": proto(4)
    + frame(_protocol2_lists(20)[2:] + binunicode("os") + b"r\x29")
    + b"\x00\x00\x00"
    + TAIL
    + STOP,
    "protocol 2 lists, cut": _protocol2_lists(30)[:-7],
    "tuples appended": _tuples_appended(30) + TAIL + STOP,
    "a fetched collapsed tuple as call arguments": _tuples_appended(30)
    + POP
    + glob("os", "system")
    + binget(2)
    + REDUCE
    + TAIL
    + STOP,
    "a tuple holding a global appended": _tuples_appended(30, glob("os", "system")) + TAIL + STOP,
    "constants appended and set": proto(4)
    + EMPTY_LIST
    + MEMOIZE
    + (binint1(3) + APPEND) * 30
    + EMPTY_DICT
    + MEMOIZE
    + (text("k") + binint1(4) + SETITEM) * 20
    + TAIL
    + STOP,
    "a SETITEM with a global as a key": proto(4)
    + EMPTY_DICT
    + (glob("os", "system") + binint1(1) + SETITEM)
    + TAIL
    + STOP,
    "a SETITEM on a list and an APPEND on a dict": proto(4)
    + EMPTY_LIST
    + text("k")
    + binint1(1)
    + SETITEM
    + EMPTY_DICT
    + binint1(1)
    + APPEND
    + TAIL
    + STOP,
    "APPEND to a collapsed list still on the stack": proto(4)
    + EMPTY_LIST
    + MEMOIZE
    + EMPTY_LIST
    + MEMOIZE
    + binget(0)
    + APPEND
    + POP
    + (binint1(1) + APPEND) * 10
    + POP
    + b"".join(MARK + binget(0 if level == 0 else level + 1) * 10 + b"l" + MEMOIZE for level in range(8))
    + TAIL
    + STOP,
    "a list memoised twice": proto(4) + EMPTY_LIST + MEMOIZE + MEMOIZE + DUP + binput(0) + TAIL + STOP,
    "MEMOIZE on an empty stack": proto(4) + MARK + MEMOIZE + TAIL + STOP,
    "protocol 0 nested data": _real(_NESTED, 0),
    "protocol 0 score lists": _real(_SCORES, 0),
    "protocol 1 trigrams": _real(_TRIGRAMS, 1),
    "protocol 2 trigrams": _real(_TRIGRAMS, 2),
    "protocol 4 trigrams": _real(_TRIGRAMS, 4),
    "protocol 0 with a call in the middle": _real(_NESTED, 0)[:_ENTRY_END]
    + b"cos\nsystem\n(Vid\ntR0"
    + _real(_NESTED, 0)[_ENTRY_END:],
    "protocol 0 DICT without a MARK": b"Vkey\nVvalue\nd" + TAIL + b".",
    "protocol 0 FLOAT that is not a number": b"(lp0\n" + b"I1\na" * 30 + b"F1.5x\na" + TAIL + b".",
    "protocol 0 GET of a missing entry": b"(lp0\n" + b"I1\na" * 30 + b"g7\na" + TAIL + b".",
    "protocol 0 LIST whose items grow past the bound": b"(lp0\n" + b"(I1\nI2\nl" * 30 + b"." + TAIL,
}


def _machine(data: bytes) -> Machine:
    engine = Engine(HANDLERS, Policy())
    ctx = Context(engine, Location("data.pkl"), 0)
    return Machine(BytesSource(data), ctx, Judge(Trust(engine.policy.allowed("pickle-globals"))))


def _outcome(data: bytes, fast: bool) -> tuple[Any, ...]:
    """Everything a scan of one pickle leaves behind, and how many bytes the data loop read."""
    vm = _machine(data)
    read = [0]
    hot = vm._hot

    def counted() -> int:
        if not fast:
            return 0
        start = vm.base + vm.pos
        try:
            return hot()
        finally:  # a break inside the data loop raises from it: what it read still counts
            read[0] += vm.base + vm.pos - start

    vm._hot = counted  # type: ignore[method-assign]
    found: list[Any] = []
    error: tuple[Any, ...] = ()
    try:
        gen = vm.run()
        while True:
            found.append(next(gen))
    except StopIteration:
        pass
    except Malformed as exc:
        error = ("malformed", exc.offset, exc.message)
        found.extend(vm.drain())
    except LimitExceeded as exc:
        error = ("limit", exc.limit, exc.detail)
        found.extend(vm.drain())
    memo = vm.memo
    state = (
        [(f.rule_id, f.level, str(f.location), f.evidence) for f in found],
        error,
        (len(memo), memo.cost(), memo.dropped, len(memo.far), bytes(memo.arena)),
        [render(v) for v in vm.stack],
        len(vm.metastack),
        render(vm.result),
        vm.nested,
    )
    return state, read[0]


@pytest.mark.parametrize("cap", [65_536, 7])
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_fused_shape_gives_the_general_loops_result(name: str, cap: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the item cap at its default and at 7 (so that containers fill up inside the shapes)."""
    monkeypatch.setattr("modelshield.formats.pickle.machine.ITEM_CAP", cap)
    data = CASES[name]
    fast, read = _outcome(data, fast=True)
    general, _ = _outcome(data, fast=False)
    assert fast == general
    assert read > 0, "the data loop did not run: the case tests nothing"


def test_the_cases_break_where_they_should() -> None:
    """The hostile cases really are what they say: a call found, a break at the expected place."""
    rules = {name: {f[0] for f in _outcome(data, fast=True)[0][0]} for name, data in CASES.items()}
    errors = {name: _outcome(data, fast=True)[0][1] for name, data in CASES.items()}
    assert "PKL001" in rules["keys to numbers with a call in the middle"]
    assert "PKL001" in rules["protocol 2 names fetched for a call"]
    assert "PKL001" in rules["a fetched collapsed tuple as call arguments"]
    assert "PKL001" in rules["protocol 0 with a call in the middle"]
    assert "PKL013" in rules["a frame that ends inside a key"] | rules["a frame that ends inside a LONG_BINPUT"]
    assert "memo has no entry" in errors["a LONG_BINGET of a missing entry"][2]
    assert "memo has no entry" in errors["protocol 0 GET of a missing entry"][2]
    assert "stack underflow" in errors["MEMOIZE on an empty stack"][2]
    assert "stack underflow" in errors["protocol 0 DICT without a MARK"][2]
    assert "invalid opcode argument" in errors["protocol 0 FLOAT that is not a number"][2]
    assert errors["keys to numbers, cut"] and errors["protocol 2 lists, cut"]
    assert not errors["keys to numbers"] and not rules["keys to numbers"]
    assert not errors["protocol 1 trigrams"] and not rules["protocol 4 trigrams"]
