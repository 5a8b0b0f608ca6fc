"""The C data loop (`_hot.c`) leaves exactly the state the Python one leaves, on real pickles broken at
random and on inputs made to split them (frame edges, far memo indices, huge lengths, UTF-8 edge cases,
containers changed after the memo collapsed them), and the switch to the Python loop really switches.

Each comparison runs one scan with each loop and compares everything the scan leaves (findings, error and
its offset, the memo, the stack, the result, the nested count: `_outcome` of test_pickle_fast_shapes).
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelshield import scan_file
from modelshield.core import native as accelerators
from modelshield.formats.pickle import machine
from tests.formats.pickle_build import (
    APPENDS,
    DUP,
    EMPTY_DICT,
    EMPTY_LIST,
    MARK,
    MEMOIZE,
    NONE,
    POP,
    SETITEM,
    STOP,
    TUPLE1,
    TUPLE2,
    binget,
    binint1,
    frame,
    glob,
    proto,
    text,
)
from tests.formats.test_pickle_fast_shapes import CASES, TAIL, _outcome, binint, binunicode, long_binget, long_binput

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
APPEND, SETITEMS = b"a", b"u"


def _native_or_skip() -> None:
    if machine._native is None:
        if os.environ.get("MODELSHIELD_REQUIRE_NATIVE") == "1":
            pytest.fail("the C data loop (modelshield.formats.pickle._hot) is not built")
        pytest.skip("the C data loop (modelshield.formats.pickle._hot) is not built")


def _both(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """The outcome of `data` with the C loop and with the Python loop."""
    monkeypatch.setattr(accelerators, "PURE_PYTHON", False)
    native, _ = _outcome(data, fast=True)
    monkeypatch.setattr(accelerators, "PURE_PYTHON", True)
    pure, _ = _outcome(data, fast=True)
    return native, pure


def _seeds() -> list[bytes]:
    """Real pickles of the data shapes the loop is built for, every protocol, and the shape cases."""
    words = {f"word{i}": [i % 200] if i % 3 else [i % 200, 7, f"w{i}"] for i in range(300)}
    mixed = [(i, -i) if i % 3 == 2 else f"k{i}" if i % 3 else i * 0.5 for i in range(300)]
    nested = {f"w{i}": {"pos": ["N", "V"][: i % 3], "f": i * 0.5, "t": (f"s{i}", None, True)} for i in range(40)}
    shared = [f"s{i % 7}" for i in range(100)]
    real = [pickle.dumps(obj, protocol=p) for obj in (words, mixed, nested, shared) for p in range(6)]
    committed = [
        (FIXTURES / "real" / name).read_bytes()
        for name in ("python_data_p0.pkl", "python_data_p2.pkl", "python_data_p4.pkl", "sklearn_estimators_p4.pkl")
    ]
    return real + committed + [CASES[name] for name in sorted(CASES)]


_SEEDS = _seeds()
_CALL = glob("os", "system") + text("id") + TUPLE1 + b"R"
_SPLICES = [
    _CALL,
    MARK,
    APPENDS,
    SETITEMS,
    MEMOIZE,
    DUP,
    POP,
    frame(b""),
    b"\x95" + b"\xff" * 8,
    long_binput(0xFFFFFFFF),
    long_binget(0x7FFFFFFF),
    b"X\xff\xff\xff\xff",
    b"\x8c\x03\xed\xa0\x80",
    b"h\x00",
    b"q\x00",
    b"p5\n",
    b"I007\n",
    b"g0\n",
]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.sampled_from(range(len(_SEEDS))),
    edits=st.lists(
        st.tuples(st.sampled_from(["flip", "cut", "splice", "drop"]), st.integers(0, 1 << 20), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    ),
    low=st.booleans(),
)
def test_mutated_pickles_give_the_same_state(
    seed: int, edits: list[tuple[str, int, int]], low: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real pickles with bytes flipped, cut, dropped and calls or hostile opcodes spliced in: the C loop
    and the Python loop leave the same findings, error, memo and stack (with low bounds too, so that
    containers are full, batches are taken, the expansion and tuple bounds are reached and runs end
    inside the shapes)."""
    _native_or_skip()
    data = bytearray(_SEEDS[seed])
    for how, where, value in edits:
        at = where % (len(data) + 1)
        if how == "flip" and at < len(data):
            data[at] = value
        elif how == "cut":
            del data[at:]
        elif how == "drop":
            del data[at : at + 1 + value % 8]
        else:
            data[at:at] = _SPLICES[value % len(_SPLICES)]
    with monkeypatch.context() as patch:
        if low:
            patch.setattr(machine, "ITEM_CAP", 7)
            patch.setattr(machine, "_NESTED_KEPT", 3)
            patch.setattr(machine, "MAX_WEIGHT", 500)
            patch.setattr(machine, "_TUPLE_SLOTS_MAX", 12)
            patch.setattr(machine, "_HOT_SPAN", 97)  # runs end inside the shapes
        native, pure = _both(bytes(data), patch)
    assert native == pure


def _batch(entries: list[bytes], tail: bytes = b"") -> bytes:
    """A dict filled past the item cap (7) by a first SETITEMS, then a batch of `entries`."""
    first = b"".join(text(f"k{i}") + MEMOIZE + binint1(i) for i in range(10))
    return proto(4) + EMPTY_DICT + MEMOIZE + MARK + first + SETITEMS + MARK + b"".join(entries) + tail


_KEYS = [text(f"key{i}") + MEMOIZE + binint(i) for i in range(20)]

#: inputs an attacker who has read `_hot.c` would try, to make the two loops part
RED_TEAM: dict[str, bytes] = {
    "an encoded surrogate in a key (surrogatepass accepts it)": proto(4)
    + EMPTY_DICT
    + MEMOIZE
    + b"\x8c\x03\xed\xa0\x80"
    + MEMOIZE
    + binint1(1)
    + SETITEM
    + TAIL
    + STOP,
    "a surrogate pair encoded as two surrogates, in a batch": _batch(
        [*_KEYS[:5], b"\x8c\x06\xed\xa0\xbd\xed\xb8\x80" + MEMOIZE + binint1(1), *_KEYS[5:]], SETITEMS + TAIL + STOP
    ),
    **{
        f"invalid UTF-8 {bad.hex()} in a batch": _batch(
            [*_KEYS[:5], b"\x8c" + bytes([len(bad)]) + bad + MEMOIZE + binint1(1), *_KEYS[5:]], SETITEMS + TAIL + STOP
        )
        for bad in (b"\xed\xa0", b"\xf4\x90\x80\x80", b"\xc0\x80", b"\xe0\x80\x80", b"\xf0\x80\x80\x80", b"a\xff")
    },
    **{
        f"invalid UTF-8 {bad.hex()} as a SHORT_BINUNICODE": proto(4)
        + EMPTY_LIST
        + MEMOIZE
        + b"\x8c"
        + bytes([len(bad)])
        + bad
        + MEMOIZE
        + APPEND
        + TAIL
        + STOP
        for bad in (b"\xed\xa0", b"\xf4\x90\x80\x80", b"\xc0\x80", b"\xe0\x80\x80")
    },
    "a lone low surrogate appended": proto(4)
    + EMPTY_LIST
    + MEMOIZE
    + b"\x8c\x03\xed\xbf\xbf"
    + MEMOIZE
    + APPEND
    + TAIL
    + STOP,
    "a LONG_BINPUT at 2**32 - 1, then MEMOIZE and fetches": proto(4)
    + text("os")
    + long_binput(0xFFFFFFFF)
    + text("system")
    + MEMOIZE
    + POP
    + POP
    + TAIL
    + long_binget(0xFFFFFFFF)
    + long_binget(1)
    + b"\x93"
    + STOP,
    "a LONG_BINPUT at 2**31 and a LONG_BINGET of 2**31 - 1": proto(4)
    + text("a")
    + long_binput(1 << 31)
    + TAIL
    + long_binget((1 << 31) - 1)
    + STOP,
    "a BINUNICODE of 4 GiB declared": proto(4) + EMPTY_LIST + MEMOIZE + TAIL + b"X\xff\xff\xff\xff" + b"ab" * 40,
    "a BINUNICODE ending exactly at the frame end": proto(4)
    + frame(EMPTY_LIST + MEMOIZE + TAIL + binunicode("abc"))
    + long_binput(1)
    + APPEND
    + TAIL
    + STOP,
    "a FRAME of 2**63 inside a batch": _batch(_KEYS[:5])
    + b"\x95"
    + struct.pack("<Q", 1 << 63)
    + b"".join(_KEYS[5:])
    + SETITEMS
    + TAIL
    + STOP,
    "a FRAME of 2**64 - 1 at the end of a framed batch": proto(4)
    + frame(_batch(_KEYS[:5])[2:])
    + b"\x95"
    + b"\xff" * 8
    + b"".join(_KEYS[5:])
    + SETITEMS
    + TAIL
    + STOP,
    "a MARK inside a batch": _batch([*_KEYS[:5], MARK, *_KEYS[5:]], SETITEMS + TAIL + STOP),
    "a batch of lists with a MARK inside a list": _batch(
        [text("a") + MEMOIZE + EMPTY_LIST + MEMOIZE + MARK + binget(0) + MARK + APPENDS, *_KEYS],
        SETITEMS + TAIL + STOP,
    ),
    "a batch with a BINGET of an entry the batch stores": _batch(
        [*_KEYS[:3], text("x") + MEMOIZE + EMPTY_LIST + MEMOIZE + MARK + binget(13) + APPENDS], SETITEMS + TAIL + STOP
    ),
    "a DUP'd list changed after a parent collapsed it": proto(4)
    + EMPTY_LIST
    + MEMOIZE
    + EMPTY_LIST
    + MEMOIZE
    + DUP
    + b"r\x05\x00\x00\x00"
    + binint1(1)
    + APPEND
    + binget(0)
    + b"\x86"
    + POP
    + APPEND
    + (binint1(2) + APPEND) * 10
    + POP
    + TAIL
    + STOP,
    "a memoised list taken twice, then grown": proto(4)
    + EMPTY_LIST
    + MEMOIZE
    + EMPTY_LIST
    + MEMOIZE
    + MARK
    + binint1(1)
    + APPENDS
    + DUP
    + b"r\x05\x00\x00\x00"
    + APPEND
    + binget(1)
    + APPEND
    + binget(1)
    + binint1(3)
    + APPEND
    + POP
    + TAIL
    + STOP,
    "a list appended to itself": proto(4) + EMPTY_LIST + MEMOIZE + DUP + APPEND + DUP + APPEND + TAIL + STOP,
    "a list fetched into itself in the fused shape": proto(4)
    + EMPTY_LIST
    + MEMOIZE
    + MARK
    + binget(0)
    + binget(0)
    + APPENDS
    + TAIL
    + STOP,
    "a dict set as its own value": proto(4)
    + EMPTY_DICT
    + MEMOIZE
    + MARK
    + text("self")
    + binget(0)
    + SETITEMS
    + text("again")
    + binget(0)
    + SETITEM
    + TAIL
    + STOP,
    "SETITEMS of an odd number of items": proto(4)
    + EMPTY_DICT
    + MEMOIZE
    + MARK
    + text("a")
    + binint1(1)
    + text("b")
    + SETITEMS
    + TAIL
    + STOP,
    "TUPLE2 and TUPLE3 on a short stack": proto(4) + MARK + binint1(1) + TUPLE2 + TAIL + STOP,
    "a fused BINGET of a missing entry": proto(4) + EMPTY_LIST + MEMOIZE + MARK + binget(9) + APPENDS + TAIL + STOP,
    "memoised tuples past the tuple table": proto(4)
    + EMPTY_LIST
    + MEMOIZE
    + (binint1(1) + NONE + TUPLE2 + MEMOIZE) * 20
    + (APPEND * 10)
    + TAIL
    + STOP,
    "an APPEND of a tuple memoised twice": proto(4)
    + EMPTY_LIST
    + MEMOIZE
    + binint1(1)
    + TUPLE1
    + MEMOIZE
    + MEMOIZE
    + APPEND
    + binget(1)
    + POP
    + TAIL
    + STOP,
    **{
        f"protocol 0 line {line!r}": b"(lp0\n" + b"I1\na" * 30 + line + b"\na" + b"p1\n" + TAIL + b"."
        for line in (
            b"I007",
            b"I0x10",
            b"I-0",
            b"I00",
            b"I01",
            b"I1_000",
            b"I 5",
            b"I99999999999999999999",
            b"I-9223372036854775808",
            b"F1e400",
            b"Fnan",
            b"Fx",
            b"V\\ud800",
            b"V\\u12",
            b"g-1",
            b"g+0",
            b"g 0",
            b"g0",
        )
    },
    **{
        f"protocol 0 PUT {line!r}": b"(lp0\n" + b"I1\na" * 30 + b"Vx\n" + line + b"\n" + TAIL + b"g5\n."
        for line in (b"p5", b"p+5", b"p 5", b"p5_0", b"p-1", b"p", b"p99999999999999999999", b"p0005")
    },
    "a protocol 0 string with a lone surrogate memoised and fetched": b"(lp0\n"
    + b"I1\na" * 30
    + b"V\\ud800x\np1\n0"
    + b"Vplain\np2\n0g1\na"
    + TAIL
    + b"g1\n.",
    "a container of constants past the expansion bound": proto(4)
    + EMPTY_LIST
    + MEMOIZE
    + (MARK + binint1(1) * 40 + APPENDS) * 30
    + TAIL
    + STOP,
}


@pytest.mark.parametrize("low", [False, True])
@pytest.mark.parametrize("name", sorted(RED_TEAM))
def test_a_crafted_input_gives_the_same_state(name: str, low: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each crafted input leaves the same state with the C loop, the Python loop and no data loop."""
    _native_or_skip()
    if low:
        monkeypatch.setattr(machine, "ITEM_CAP", 7)
        monkeypatch.setattr(machine, "_NESTED_KEPT", 3)
        monkeypatch.setattr(machine, "MAX_WEIGHT", 500)
        monkeypatch.setattr(machine, "_TUPLE_SLOTS_MAX", 12)
        monkeypatch.setattr(machine, "_HOT_SPAN", 97)
    native, pure = _both(RED_TEAM[name], monkeypatch)
    assert native == pure
    general, _ = _outcome(RED_TEAM[name], fast=False)
    assert native == general


def test_the_crafted_inputs_reach_what_they_aim_at(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cases are what they say: the surrogate is read, the invalid UTF-8 and far indices break where
    the loader breaks, the bounds are reached."""
    _native_or_skip()
    monkeypatch.setattr(accelerators, "PURE_PYTHON", False)
    outcomes = {name: _outcome(data, fast=True)[0] for name, data in RED_TEAM.items()}
    assert not outcomes["an encoded surrogate in a key (surrogatepass accepts it)"][1]
    assert not outcomes["a surrogate pair encoded as two surrogates, in a batch"][1]
    assert not outcomes["a lone low surrogate appended"][1]
    assert all("decode" in out[1][2] for name, out in outcomes.items() if name.startswith("invalid UTF-8"))
    assert "memo has no entry" in outcomes["a LONG_BINPUT at 2**31 and a LONG_BINGET of 2**31 - 1"][1][2]
    far = outcomes["a LONG_BINPUT at 2**32 - 1, then MEMOIZE and fetches"]
    assert not far[1] and "os.system" in far[0][0][3]
    assert "maximum size" in outcomes["a FRAME of 2**64 - 1 at the end of a framed batch"][1][2]
    assert "memo has no entry" in outcomes["a fused BINGET of a missing entry"][1][2]
    surrogate = outcomes["a protocol 0 string with a lone surrogate memoised and fetched"]
    assert not surrogate[1] and surrogate[6] == repr("\ud800x")
    monkeypatch.setattr(machine, "MAX_WEIGHT", 500)
    expanded = _outcome(RED_TEAM["a container of constants past the expansion bound"], fast=True)[0]
    assert expanded[1][:2] == ("limit", "pickle-expansion")


def test_the_native_loop_reads_the_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the shape cases the C loop does the work (not the general loop after an immediate return)."""
    _native_or_skip()
    monkeypatch.setattr(accelerators, "PURE_PYTHON", False)
    for name in ("batches of names to lists, protocol 2", "keys to numbers", "protocol 0 nested data"):
        data = CASES[name]
        _, read = _outcome(data, fast=True)
        assert read > len(data) // 2, name


@pytest.mark.parametrize("low", [False, True])
def test_the_native_loop_stops_where_the_python_loop_stops(low: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C loop hands no opcode to the general loop that the Python loop runs itself: it reads the same
    bytes on every shape and crafted case (one less where the Python loop raises inside an opcode, which
    the C loop leaves to the general loop to raise)."""
    _native_or_skip()
    if low:
        monkeypatch.setattr(machine, "ITEM_CAP", 7)
        monkeypatch.setattr(machine, "_NESTED_KEPT", 3)
    for name, data in {**CASES, **RED_TEAM}.items():
        monkeypatch.setattr(accelerators, "PURE_PYTHON", False)
        native, native_read = _outcome(data, fast=True)
        monkeypatch.setattr(accelerators, "PURE_PYTHON", True)
        _, pure_read = _outcome(data, fast=True)
        assert native_read == pure_read or (native[1] and native_read == pure_read - 1), name


class _Counting:
    """Stands for the C module: counts the runs it is asked for."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    def hot(self, *args: Any) -> int:
        self.calls += 1
        result: int = self.real.hot(*args)
        return result


def test_the_switch_keeps_the_native_loop_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """With `PURE_PYTHON` set the C loop is never called (and the Python loop gives the same findings)."""
    _native_or_skip()
    counting = _Counting(machine._native)
    monkeypatch.setattr(machine, "_native", counting)
    path = FIXTURES / "real" / "python_data_p4.pkl"
    monkeypatch.setattr(accelerators, "PURE_PYTHON", False)
    native = scan_file(str(path))
    assert counting.calls > 0
    counting.calls = 0
    monkeypatch.setattr(accelerators, "PURE_PYTHON", True)
    pure = scan_file(str(path))
    assert counting.calls == 0
    assert [f.evidence for f in native.findings] == [f.evidence for f in pure.findings]


@pytest.mark.parametrize(("value", "pure"), [("1", True), ("0", False), ("", False)])
def test_the_environment_variable_sets_the_switch(value: str, pure: bool) -> None:
    env = {**os.environ, "MODELSHIELD_PURE_PYTHON": value}
    done = subprocess.run(
        [sys.executable, "-c", "from modelshield.core import native; print(native.PURE_PYTHON)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == str(pure)
