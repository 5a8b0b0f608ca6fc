"""The compact memo and the data-opcode loop: memory follows what must be kept, verdicts do not move.

Strings live in an arena and come back exactly when fetched; containers and tuples of plain data that a
parent took are kept as markers, and a fetch of one (which no pickler writes) is judged fail-closed;
the loader's memo numbering (MEMOIZE after a far PUT) is followed; and the fast loop gives the same
findings as the general one on every committed pickle and hostile fixture.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import pytest

from modelshield import Policy, scan_file
from modelshield.core.callables import Trust
from modelshield.core.engine import Engine
from modelshield.core.findings import Location
from modelshield.core.handler import Context
from modelshield.core.rules import Severity
from modelshield.core.source import BytesSource
from modelshield.formats.pickle.machine import Machine
from modelshield.formats.pickle.names import Judge
from modelshield.registry import HANDLERS
from tests.conftest import ScanData
from tests.formats.pickle_build import (
    APPENDS,
    BUILD,
    EMPTY_DICT,
    EMPTY_LIST,
    EMPTY_TUPLE,
    MARK,
    MEMOIZE,
    NEWOBJ,
    POP,
    REDUCE,
    STACK_GLOBAL,
    STOP,
    TUPLE,
    TUPLE1,
    binget,
    binint1,
    evidence,
    glob,
    proto,
    rules,
    text,
)
from tests.formats.test_pickle_fast_shapes import LOOPS, use_loop

APPEND, SETITEMS, LIST = b"a", b"u", b"l"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _long_binput(index: int) -> bytes:
    return b"r" + struct.pack("<I", index)


def _collapsed(inner: bytes) -> bytes:
    """`inner` (which memoises itself as entry 1) taken by a list at entry 0, then that list popped:
    only the memo still refers to entry 1."""
    return EMPTY_LIST + MEMOIZE + inner + APPEND + POP


def test_names_kept_in_the_arena_come_back_exactly(scan_data: ScanData) -> None:
    """'os' and 'system' memoised, taken by a list (so they leave the stack) and fetched for STACK_GLOBAL."""
    names = EMPTY_LIST + MEMOIZE + MARK + text("os") + MEMOIZE + text("system") + MEMOIZE + APPENDS + POP
    data = proto(4) + names + binget(1) + binget(2) + STACK_GLOBAL + text("id") + TUPLE1 + REDUCE + STOP
    direct = proto(4) + text("os") + text("system") + STACK_GLOBAL + text("id") + TUPLE1 + REDUCE + STOP
    found, expected = scan_data(data), scan_data(direct)
    assert "PKL001" in rules(found, Severity.CRITICAL)
    assert evidence(found, "PKL001") == evidence(expected, "PKL001")


def test_memoize_after_a_far_put_numbers_entries_as_the_loader_does(scan_data: ScanData) -> None:
    """The loader's MEMOIZE index is the number of entries: after PUT 0 and PUT 2 it is 2 again, which
    overwrites 'nothing' with 'system' (a scanner that counted positions would see os.nothing)."""
    memo = text("os") + _long_binput(0) + POP + text("nothing") + _long_binput(2) + POP
    memo += text("system") + MEMOIZE + POP
    data = proto(4) + memo + binget(0) + binget(2) + STACK_GLOBAL + text("id") + TUPLE1 + REDUCE + STOP
    result = scan_data(data)
    assert "PKL001" in rules(result, Severity.CRITICAL)
    assert any("system" in text_ for text_ in evidence(result, "PKL001"))


def test_a_collapsed_tuple_as_call_arguments_still_judges_the_callee(scan_data: ScanData) -> None:
    args = text("id") + TUPLE1 + MEMOIZE
    data = proto(4) + _collapsed(args) + glob("os", "system") + binget(1) + REDUCE + STOP
    result = scan_data(data)
    assert "PKL001" in rules(result, Severity.CRITICAL)
    assert "PKL014" not in rules(result)  # not a break: the loader makes that call


def test_a_collapsed_list_as_plural_rule_state_is_judged_fail_closed(scan_data: ScanData) -> None:
    state = EMPTY_LIST + MEMOIZE + MARK + text("one") + text("n") + APPENDS
    data = proto(4) + _collapsed(state) + glob("babel.plural", "PluralRule") + EMPTY_TUPLE + NEWOBJ
    result = scan_data(data + binget(1) + BUILD + STOP)
    loud = [f for f in result.findings if f.level >= Severity.HIGH]
    assert loud and all("fetched from the memo" in f.evidence for f in loud)


def test_a_collapsed_dict_as_state_of_a_file_writing_class_is_judged_fail_closed(scan_data: ScanData) -> None:
    """sklearn_crfsuite's FileResource in its own shape is low; a state whose keys were not kept is not."""
    state = EMPTY_DICT + MEMOIZE + MARK + text("prefix") + text("crf") + text("suffix") + text(".bin") + SETITEMS
    cls = glob("sklearn_crfsuite._fileresource", "FileResource") + EMPTY_TUPLE + NEWOBJ
    result = scan_data(proto(4) + _collapsed(state) + cls + binget(1) + BUILD + STOP)
    assert any("fetched from the memo" in f.evidence and f.level >= Severity.MEDIUM for f in result.findings), (
        result.findings
    )


def test_modifying_a_collapsed_container_is_reported_not_followed(scan_data: ScanData) -> None:
    inner = EMPTY_LIST + MEMOIZE
    data = proto(4) + _collapsed(inner) + binget(1) + text("x") + APPEND + POP + glob("os", "system") + POP + STOP
    result = scan_data(data)
    assert any("fetched from the memo" in text_ for text_ in evidence(result, "PKL020"))
    assert "PKL001" in rules(result, Severity.CRITICAL)  # the scan went on past it


def _amplified(grow: bool) -> bytes:
    """A list collapsed while a copy is still on the stack, then grown through that copy (when `grow`),
    then referenced ten times per level: the memo must count what it grew to."""
    data = proto(4) + EMPTY_LIST + MEMOIZE + EMPTY_LIST + MEMOIZE + binget(0) + APPEND + POP
    if grow:
        data += MARK + binint1(1) * 10 + APPENDS
    data += POP
    for level in range(8):
        data += MARK + binget(0 if level == 0 else level + 1) * 10 + LIST + MEMOIZE
    return data + STOP


def test_a_collapsed_container_that_grows_is_counted_whole(scan_data: ScanData) -> None:
    assert "SCN005" in rules(scan_data(_amplified(grow=True)), Severity.HIGH)
    assert "SCN005" not in rules(scan_data(_amplified(grow=False)))  # the margin the test relies on


def _machine(data: bytes) -> Machine:
    engine = Engine(HANDLERS, Policy())
    ctx = Context(engine, Location("data.pkl"), 0)
    return Machine(BytesSource(data), ctx, Judge(Trust(engine.policy.allowed("pickle-globals"))))


def test_memory_follows_what_must_be_kept_not_the_number_of_objects() -> None:
    """A lemma dictionary: 40,000 memo entries (a key and a small list each), of which the machine
    holds only the distinct shared strings it fetched and the top dictionary whole."""
    forms = [f"form{i}" for i in range(16)]
    data = pickle.dumps({f"lemma{i:06d}": [forms[i % 16], forms[i % 5]] for i in range(20_000)}, protocol=4)
    vm = _machine(data)
    assert list(vm.run()) == []
    memo = vm.memo
    assert len(memo) == 40_017
    whole = len(memo.objs) - memo.dropped
    assert whole <= 20, whole  # the dict and the 16 fetched forms
    assert memo.cost() < 20 * len(memo) + 50 * 20_000  # pointer-sized tags and the key text


def _pickles() -> list[Path]:
    return sorted(
        p
        for p in FIXTURES.rglob("*")
        if p.is_file() and p.suffix in {".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib", ".dat", ".npy", ".p"}
    )


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("path", _pickles(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_the_data_loop_gives_the_general_loops_findings(path: Path, loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every committed pickle (real models, hostile fixtures) scanned with and without the fast loop
    (the C one and the Python one)."""
    use_loop(loop, monkeypatch)
    fast = scan_file(str(path))
    monkeypatch.setattr(Machine, "_hot", lambda self: 0)
    general = scan_file(str(path))
    assert [(f.rule_id, f.level, str(f.location), f.evidence) for f in fast.findings] == [
        (f.rule_id, f.level, str(f.location), f.evidence) for f in general.findings
    ]


@pytest.mark.parametrize("bound", [0, 100_000])
def test_nested_containers_past_the_bound_are_judged_fail_closed(
    scan_data: ScanData, monkeypatch: pytest.MonkeyPatch, bound: int
) -> None:
    """Past the bound a parent keeps a marker for a nested plain list; a state read through it is computed,
    so text hidden in it cannot pass as CLDR data (and within the bound the text itself is judged)."""
    monkeypatch.setattr("modelshield.formats.pickle.machine._NESTED_KEPT", bound)
    hidden = EMPTY_LIST + MARK + text("value") + text("__import__('os').system('id')") + APPENDS
    state = EMPTY_LIST + MARK + text("one") + hidden + APPENDS
    data = proto(4) + glob("babel.plural", "PluralRule") + EMPTY_TUPLE + NEWOBJ + state + BUILD + STOP
    assert rules(scan_data(data), Severity.HIGH)


_FUSED_CASES = {
    # `EMPTY_LIST MEMOIZE MARK BINGET* APPENDS` with memoised constants: the fused path, then a call on them.
    "constants": proto(4)
    + text("os")
    + MEMOIZE
    + text("system")
    + MEMOIZE
    + EMPTY_LIST
    + MEMOIZE
    + MARK
    + binget(0)
    + binget(1)
    + APPENDS
    + glob("os", "system")
    + MARK
    + binget(1)
    + TUPLE
    + REDUCE
    + STOP,
    # A memoised global among the items: not a constant, the general path.
    "a global": proto(4)
    + glob("os", "system")
    + MEMOIZE
    + EMPTY_LIST
    + MEMOIZE
    + MARK
    + binget(0)
    + binget(0)
    + APPENDS
    + STOP,
    # A fetch of an index never stored: the loader's error, at the same offset.
    "missing entry": proto(4)
    + text("a")
    + MEMOIZE
    + EMPTY_LIST
    + MEMOIZE
    + MARK
    + binget(0)
    + binget(7)
    + APPENDS
    + STOP,
    # The run ends at another opcode (SETITEMS on a list, then a dict literal).
    "not appends": proto(4)
    + text("a")
    + MEMOIZE
    + EMPTY_LIST
    + MEMOIZE
    + MARK
    + binget(0)
    + binget(0)
    + SETITEMS
    + STOP,
    "no items": proto(4) + EMPTY_LIST + MEMOIZE + MARK + APPENDS + glob("builtins", "eval") + MEMOIZE + STOP,
}


@pytest.mark.parametrize("name", sorted(_FUSED_CASES))
def test_the_fused_list_of_memo_fetches_gives_the_general_loops_findings(
    scan_data: ScanData, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The `BINGET* APPENDS` run inside the data loop ends exactly where the general loop's would."""
    data = _FUSED_CASES[name]
    fast = scan_data(data)
    monkeypatch.setattr(Machine, "_hot", lambda self: 0)
    general = scan_data(data)
    assert [(f.rule_id, f.level, f.evidence) for f in fast.findings] == [
        (f.rule_id, f.level, f.evidence) for f in general.findings
    ]
    if name in {"constants", "missing entry", "a global"}:
        assert fast.findings, name
