"""The data loop's fused shapes end exactly where the general loop takes over.

Each case is a shape real data pickles are made of (a dict of names to numbers, protocol 2's BINUNICODE
with LONG_BINPUT, lists grown by APPEND, protocol 0's text lines and DICT/LIST), or that shape broken
(a call in the middle of it, a memo fetch of a missing index, a frame that ends inside it, a cut). Each
is run through the machine with the data loop and without it: findings, errors, the memo (size,
accounted bytes, what it dropped), the stack and the result must be the same, and the data loop must
really have run part of it.
"""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

import pytest

from modelshield import Policy
from modelshield.core import native
from modelshield.core.callables import Trust
from modelshield.core.engine import Engine
from modelshield.core.errors import LimitExceeded
from modelshield.core.findings import Location
from modelshield.core.handler import Context
from modelshield.core.source import BytesSource
from modelshield.formats.pickle import machine
from modelshield.formats.pickle.machine import Machine, Malformed
from modelshield.formats.pickle.names import Judge
from modelshield.formats.pickle.values import render
from modelshield.registry import HANDLERS
from tests.formats.pickle_build import (
    APPENDS,
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

#: the data loops a comparison runs: the C one (`_hot.c`) and the Python one
LOOPS = ["native", "python"]


def use_loop(loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch the machine to `loop`. Without the built extension the native case is skipped, or fails
    when `MODELSHIELD_REQUIRE_NATIVE=1` (CI builds it and must not pass by skipping)."""
    monkeypatch.setattr(native, "PURE_PYTHON", loop == "python")
    if loop == "native" and machine._native is None:
        if os.environ.get("MODELSHIELD_REQUIRE_NATIVE") == "1":
            pytest.fail("the C data loop (modelshield.formats.pickle._hot) is not built")
        pytest.skip("the C data loop (modelshield.formats.pickle._hot) is not built")


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


def _entry(i: int) -> bytes:
    return text(f"feature{i}") + MEMOIZE + binint(70_000 + i)


def _lemma(i: int) -> bytes:
    """A lemma and its list of two shared forms (memo entries 1 and 2, fetched before)."""
    return text(f"lemma/{i:08d}") + MEMOIZE + EMPTY_LIST + MEMOIZE + MARK + binget(1) + binget(2) + APPENDS


_FORMS = text("form-a") + MEMOIZE + text("form-b") + MEMOIZE + POP + POP + binget(1) + binget(2) + POP + POP


def _batches(entries: list[bytes], start: bytes = b"", framed: int = 0) -> bytes:
    """A dict filled by a first SETITEMS of 10 entries (past the item cap of 7) and a second of the rest;
    `framed`: the second batch is split into two frames after that many of its entries."""
    first = proto(4) + EMPTY_DICT + MEMOIZE + start + MARK + b"".join(entries[:10]) + SETITEMS + MARK
    second = entries[10:]
    if not framed:
        return first + b"".join(second) + SETITEMS
    return proto(4) + frame(first[2:] + b"".join(second[:framed])) + frame(b"".join(second[framed:]) + SETITEMS + TAIL)


def _inserted(entries: list[bytes], extra: bytes) -> list[bytes]:
    """`extra` in the middle of the second batch."""
    return [*entries[:20], extra, *entries[20:]]


def _framed_inside() -> bytes:
    """The next frame's FRAME opcode is the last 9 bytes of the current frame, not after its end."""
    entries = _ENTRIES
    first = EMPTY_DICT + MEMOIZE + MARK + b"".join(entries[:10]) + SETITEMS + MARK + b"".join(entries[10:15])
    rest = b"".join(entries[15:]) + SETITEMS + TAIL
    return proto(4) + frame(first + frame(rest)[:9]) + rest + STOP


_BAD_KEY = b"\x8c\x03ab\xff" + MEMOIZE + binint(1)
_ENTRIES = [_entry(i) for i in range(40)]
_LEMMAS = [_lemma(i) for i in range(40)]

#: bench/peers.py's opcode-dense list: numbers, names and pairs of numbers (two frames at protocol 4)
_DENSE = [(i, -i) if i % 3 == 2 else f"k{i}" if i % 3 else i for i in range(12_000)]

#: nagisa's dictionary in batches: names to short lists of numbers, names to names shared (protocol 2)
_WORDS = {f"word{i}": [i % 200] if i % 3 else [i % 200, 7, 300 + i] for i in range(2500)}
_SHARED_VALUES = {f"w{i}": _SHARED[i % 3] for i in range(2500)}

CASES: dict[str, bytes] = {
    "batches of names to lists, protocol 2": _real(_WORDS, 2),
    "batches of names to lists, protocol 3": _real(_WORDS, 3),
    "batches of names to shared names, protocol 2": _real(_SHARED_VALUES, 2),
    "batches of numbers, names and pairs": _real(_DENSE, 4),
    "batches of numbers to numbers": _real({i: i * 3 for i in range(3000)}, 4),
    "batches of pairs not memoised": proto(4)
    + EMPTY_LIST
    + MEMOIZE
    + (MARK + (binint1(1) + binint(-2) + TUPLE2) * 10 + APPENDS) * 2
    + TAIL
    + STOP,
    "a batch with a pair not memoised and pairs of pairs": proto(4)
    + EMPTY_LIST
    + MEMOIZE
    + (MARK + (binint1(1) + binint(-2) + TUPLE2 + MEMOIZE) * 10 + APPENDS) * 2
    + MARK
    + (binint1(1) + binint(-2) + TUPLE2) * 10
    + APPENDS
    + MARK
    + binint1(1)
    + binint1(2)
    + TUPLE2
    + binint1(3)
    + binint1(4)
    + TUPLE2
    + TUPLE2
    + MEMOIZE
    + APPENDS
    + TAIL
    + STOP,
    "batches of keys to numbers": _batches(_ENTRIES) + TAIL + STOP,
    "batches of keys to numbers across frames": _batches(_ENTRIES, framed=12) + STOP,
    "batches of lemmas": _batches(_LEMMAS, _FORMS) + TAIL + STOP,
    "batches of lemmas across frames": _batches(_LEMMAS, _FORMS, framed=7) + STOP,
    "batches of lemmas whose forms were not fetched": _batches(
        _LEMMAS, text("a") + MEMOIZE + text("b") + MEMOIZE + POP + POP
    )
    + TAIL
    + STOP,
    "a batch with a key that is not UTF-8": _batches(_inserted(_ENTRIES, _BAD_KEY)) + TAIL + STOP,
    "a batch with a call in the middle": _batches(_inserted(_ENTRIES, _SYSTEM + MEMOIZE)) + TAIL + STOP,
    "a batch with a global fetched into a list": _batches(
        _inserted(_LEMMAS, text("x") + MEMOIZE + EMPTY_LIST + MEMOIZE + MARK + binget(3) + APPENDS),
        _FORMS + glob("os", "system") + MEMOIZE + POP,
    )
    + TAIL
    + STOP,
    "a batch with a fetch of a missing entry": _batches(
        _inserted(_LEMMAS, text("x") + MEMOIZE + EMPTY_LIST + MEMOIZE + MARK + binget(250) + APPENDS),
        _FORMS,
    )
    + TAIL
    + STOP,
    "a batch closed by APPENDS on a dict": _batches(_ENTRIES)[:-1] + APPENDS + TAIL + STOP,
    "a batch with a FRAME before the frame ends": _batches(_inserted(_ENTRIES, frame(b"")), framed=5) + STOP,
    "a batch with a FRAME as the last bytes of a frame": _framed_inside(),
    "batches across frames, then an opcode across the next frame's end": _batches(_ENTRIES, framed=12)[:-3]
    + binint(5)[:2]
    + binint(5)[2:]
    + POP
    + STOP,
    "a batch with a frame of an impossible size": _batches(_ENTRIES, framed=12).replace(
        frame(b"".join(_ENTRIES[22:]) + SETITEMS + TAIL)[:9], b"\x95" + b"\xff" * 8
    )
    + STOP,
    "a batch whose frame ends inside a BININT": proto(4)
    + frame(_batches(_ENTRIES)[2:-38])
    + _batches(_ENTRIES)[-38:]
    + TAIL
    + STOP,
    "a batch, cut": _batches(_ENTRIES)[:-100],
    "a list of names in batches": proto(4)
    + EMPTY_LIST
    + MEMOIZE
    + (MARK + b"".join(text(f"name{i}") + MEMOIZE for i in range(10)) + APPENDS) * 3
    + MARK
    + b"".join(text(f"name{i}") for i in range(10))
    + APPENDS
    + TAIL
    + STOP,
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
    # A bound stops the whole scan; the stack it leaves is never read again (the data loop leaves the
    # items it was adding on it, the general loop the stack below them).
    kept = error[:1] != ("limit",)
    state = (
        [(f.rule_id, f.level, str(f.location), f.evidence) for f in found],
        error,
        (len(memo), memo.cost(), memo.dropped, len(memo.far), bytes(memo.arena), memo.tags.tobytes()),
        [render(value) for value in memo.objs],
        [render(v) for v in vm.stack] if kept else None,
        len(vm.metastack) if kept else None,
        render(vm.result),
        vm.nested,
    )
    return state, read[0]


@pytest.mark.parametrize(
    "bounds",
    [(65_536, 100_000, 1 << 30, 65_536), (7, 100_000, 1 << 30, 65_536), (7, 3, 60, 65_536), (7, 100_000, 1 << 30, 12)],
)
@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("loop", LOOPS)
def test_a_fused_shape_gives_the_general_loops_result(
    name: str, bounds: tuple[int, int, int, int], loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the bounds at their defaults, and low (so that containers fill up inside the shapes, the
    nested containers kept reach their bound, the expansion bound is reached and the memo's table of
    memoised tuples is cleared); the C data loop and the Python one."""
    use_loop(loop, monkeypatch)
    cap, nested, weight, tuples = bounds
    monkeypatch.setattr("modelshield.formats.pickle.machine.ITEM_CAP", cap)
    monkeypatch.setattr("modelshield.formats.pickle.machine._NESTED_KEPT", nested)
    monkeypatch.setattr("modelshield.formats.pickle.machine.MAX_WEIGHT", weight)
    monkeypatch.setattr("modelshield.formats.pickle.machine._TUPLE_SLOTS_MAX", tuples)
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
    for clean in (
        "batches of keys to numbers across frames",
        "batches of lemmas across frames",
        "a list of names in batches",
    ):
        assert not errors[clean] and not rules[clean], clean
    assert not errors["batches of lemmas whose forms were not fetched"]
    assert not rules["batches of lemmas whose forms were not fetched"]
    assert "PKL001" in rules["a batch with a call in the middle"] & rules["a batch with a global fetched into a list"]
    assert (
        "PKL013"
        in rules["a batch with a FRAME before the frame ends"] & rules["a batch whose frame ends inside a BININT"]
    )
    assert "PKL013" in rules["a batch with a FRAME as the last bytes of a frame"]
    assert "PKL013" in rules["batches across frames, then an opcode across the next frame's end"]
    assert "memo has no entry" in errors["a batch with a fetch of a missing entry"][2]
    assert "maximum size" in errors["a batch with a frame of an impossible size"][2]
    assert "decode" in errors["a batch with a key that is not UTF-8"][2]
    assert errors["a batch, cut"]


def test_full_batches_are_taken_whole_or_not_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch path really runs on the batch shapes (past the item cap), across frames too, and
    gives up on each broken one (the general loop then reports what is wrong with it). The Python
    loop's batch (the C loop has its own, compared with it in test_pickle_native.py)."""
    use_loop("python", monkeypatch)
    monkeypatch.setattr("modelshield.formats.pickle.machine.ITEM_CAP", 7)
    batch = Machine._full_batch
    results: list[int] = []

    def counted(self: Machine, buf: bytes, pos: int, target: Any) -> int:
        results.append(batch(self, buf, pos, target))
        return results[-1]

    monkeypatch.setattr(Machine, "_full_batch", counted)
    for name in sorted(CASES):
        results.clear()
        _outcome(CASES[name], fast=True)
        if name.startswith(("batches", "a list of names")) and "not fetched" not in name:
            assert results and all(results), name
        elif name.startswith("a batch"):
            assert 0 in results, name
