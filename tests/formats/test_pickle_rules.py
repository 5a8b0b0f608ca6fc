"""Each PKL rule fires on a hand-built payload and stays quiet on standard pickles."""

from __future__ import annotations

import collections
import pickle
import struct

import pytest

from modelshield import Policy
from modelshield.core.rules import Category, Severity
from tests.conftest import ScanData
from tests.formats.pickle_build import (
    BUILD,
    DUP,
    EMPTY_DICT,
    MARK,
    MEMOIZE,
    NONE,
    POP,
    REDUCE,
    SETITEM,
    STACK_GLOBAL,
    STOP,
    TUPLE,
    TUPLE1,
    TUPLE2,
    binbytes,
    binget,
    binput,
    call,
    evidence,
    glob,
    proto,
    rules,
    text,
)
from tests.helpers import evil_pickle, is_code_execution

PLAIN = {"a": [1, 2.5, "x", b"y", None, True], "s": {1, 2}, "f": frozenset([3]), "t": (1, (2, 3)), "c": 1 + 2j}


@pytest.mark.parametrize("protocol", range(6))
def test_standard_pickles_are_quiet(scan_data: ScanData, protocol: int) -> None:
    data = pickle.dumps([PLAIN, collections.OrderedDict(a=1), collections.defaultdict(list)], protocol=protocol)
    result = scan_data(data, "data.pkl")
    assert result.format == "pickle"
    assert not rules(result)


# PKL001 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_code_execution_fires_with_loader_name_and_raw_name(scan_data: ScanData, protocol: int) -> None:
    data = evil_pickle("touch /tmp/x", protocol=protocol).replace(b"cos\n", b"cposix\n")
    result = scan_data(data)
    assert is_code_execution(result)
    (text_,) = evidence(result, "PKL001")
    assert "os.system('touch /tmp/x')" in text_
    assert "raw: posix.system" in text_
    assert result.findings[0].location.offset is not None


def test_call_kept_when_result_is_popped(scan_data: ScanData) -> None:
    data = proto(2) + glob("os", "system") + text("id") + TUPLE1 + REDUCE + POP + NONE + STOP
    assert "PKL001" in rules(scan_data(data))


def test_inst_and_obj_calls(scan_data: ScanData) -> None:
    inst = MARK + text("id") + b"isubprocess\ncheck_output\n" + STOP
    obj = proto(2) + MARK + glob("builtins", "exec") + text("print(1)") + b"o" + STOP
    for data in (inst, obj):
        result = scan_data(data)
        assert rules(result, Severity.CRITICAL) == {"PKL001"}, result.findings


def test_import_without_call_is_reported(scan_data: ScanData) -> None:
    data = proto(2) + glob("subprocess", "Popen") + POP + NONE + STOP
    assert evidence(scan_data(data), "PKL001") == [
        "imports subprocess.Popen: subprocess.Popen belongs to subprocess, which runs code or commands"
    ]


# PKL002 ----------------------------------------------------------------------------------------------
def test_gadgets_fire(scan_data: ScanData) -> None:
    resolve = call("pkgutil", "resolve_name", text("os:system"))
    getattr_ = (
        proto(4)
        + text("builtins")
        + text("getattr")
        + STACK_GLOBAL
        + glob("os", "path")
        + text("x")
        + TUPLE2
        + REDUCE
        + STOP
    )
    for data in (resolve, getattr_):
        assert "PKL002" in rules(scan_data(data), Severity.CRITICAL)


def test_reconstructor_outside_its_shape(scan_data: ScanData) -> None:
    bad = call("copy_reg", "_reconstructor", glob("collections", "OrderedDict"), glob("os", "path"), NONE, p=2)
    assert "copyreg._reconstructor outside" in " ".join(evidence(scan_data(bad), "PKL002"))


def test_reconstructor_in_its_shape_is_quiet(scan_data: ScanData) -> None:
    good = call(
        "copy_reg", "_reconstructor", glob("collections", "OrderedDict"), glob("__builtin__", "object"), NONE, p=2
    )
    assert not rules(scan_data(good))


# PKL003 ----------------------------------------------------------------------------------------------
def test_dynamic_stack_global(scan_data: ScanData) -> None:
    # module name = str.join('', ['o', 's']) computed at load time
    joined = (
        glob("builtins", "str.join") + MARK + text("") + b"]" + MARK + text("o") + text("s") + b"e" + TUPLE + REDUCE
    )
    data = proto(4) + joined + text("system") + STACK_GLOBAL + text("id") + TUPLE1 + REDUCE + STOP
    result = scan_data(data)
    assert "PKL003" in rules(result, Severity.CRITICAL)


def test_constant_stack_global_is_not_dynamic(scan_data: ScanData) -> None:
    data = proto(4) + text("collections") + text("OrderedDict") + STACK_GLOBAL + b")" + REDUCE + STOP
    assert not rules(scan_data(data))


# PKL004 ----------------------------------------------------------------------------------------------
def test_dunder_and_private_walks(scan_data: ScanData) -> None:
    dunder = proto(4) + text("builtins") + text("print.__self__") + STACK_GLOBAL + STOP
    numpy_builtins = proto(4) + text("numpy") + text("__builtins__") + STACK_GLOBAL + STOP
    private = proto(4) + text("collections") + text("OrderedDict._x") + STACK_GLOBAL + STOP
    for data in (dunder, numpy_builtins, private):
        assert "PKL004" in rules(scan_data(data), Severity.CRITICAL)


def test_dotted_walk_into_another_module(scan_data: ScanData) -> None:
    data = (
        proto(4) + text("torch.serialization") + text("os.system") + STACK_GLOBAL + text("id") + TUPLE1 + REDUCE + STOP
    )
    assert "PKL001" in rules(scan_data(data), Severity.CRITICAL)


def test_allowlisted_dunder_name_is_quiet(scan_data: ScanData) -> None:
    import numpy as np

    assert not rules(scan_data(pickle.dumps(np.random.RandomState(0), protocol=4)))


# PKL005 ----------------------------------------------------------------------------------------------
def test_file_and_network_access(scan_data: ScanData) -> None:
    for data in (call("_io", "FileIO", text("/etc/passwd")), call("ssl", "get_server_certificate", text("x"))):
        result = scan_data(data)
        assert rules(result, Severity.HIGH) == {"PKL005"}


# PKL006 ----------------------------------------------------------------------------------------------
def test_unknown_global_and_policy_allowlist(scan_data: ScanData) -> None:
    data = proto(2) + glob("mylib.models", "Net") + b")" + b"\x81" + EMPTY_DICT + BUILD + STOP
    assert rules(scan_data(data)) == {"PKL006"}
    for entry in ("mylib.models:Net", "mylib.models.Net"):
        policy = Policy(allow={"pickle-globals": frozenset([entry])})
        assert not rules(scan_data(data, policy=policy))


# PKL007 ----------------------------------------------------------------------------------------------
def test_model_dependency_records_arguments(scan_data: ScanData) -> None:
    result = scan_data(call("torch", "load", text("../other.pt")))
    (finding,) = [f for f in result.findings if f.rule_id == "PKL007"]
    assert finding.category is Category.MODEL_DEPENDENCY
    assert finding.details["callable"] == "torch.load"
    assert finding.details["args"] == ["../other.pt"]


@pytest.mark.parametrize(("module", "protocol"), [("pickle", 4), ("cPickle", 2), ("_pickle", 3)])
def test_nested_pickle_bytes_are_scanned(scan_data: ScanData, module: str, protocol: int) -> None:
    inner = evil_pickle("curl x | sh")
    result = scan_data(call(module, "loads", binbytes(inner), p=protocol))
    assert "PKL007" in rules(result)
    nested = [f for f in result.findings if f.rule_id == "PKL001"]
    assert nested and "<nested pickle @" in nested[0].location.display
    assert is_code_execution(result, member=nested[0].location.members[-1])


def test_large_nested_payload_is_scanned_without_buffering_it_whole(scan_data: ScanData) -> None:
    inner = proto(4) + binbytes(b"\0" * 200_000) + POP + evil_pickle()[2:]
    result = scan_data(call("torch.storage", "_load_from_bytes", binbytes(inner)))
    assert any(f.rule_id == "PKL001" and "<nested pickle" in f.location.display for f in result.findings)


def test_plain_bytes_are_not_a_dependency(scan_data: ScanData) -> None:
    assert not rules(scan_data(pickle.dumps({"blob": b"\x80\x04" * 50_000}, protocol=4)))


# PKL008 ----------------------------------------------------------------------------------------------
def test_call_of_computed_object(scan_data: ScanData) -> None:
    inner = glob("collections", "OrderedDict") + b")" + REDUCE
    data = proto(2) + inner + text("x") + TUPLE1 + REDUCE + STOP
    assert "PKL008" in rules(scan_data(data), Severity.CRITICAL)


# PKL009 ----------------------------------------------------------------------------------------------
def test_build_on_a_function(scan_data: ScanData) -> None:
    data = (
        proto(2)
        + glob("numpy", "ndarray")
        + EMPTY_DICT
        + text("shape")
        + glob("builtins", "dict")
        + SETITEM
        + BUILD
        + STOP
    )
    assert "PKL009" in rules(scan_data(data), Severity.CRITICAL)


# PKL010 ----------------------------------------------------------------------------------------------
def test_setitem_on_a_global(scan_data: ScanData) -> None:
    data = proto(2) + glob("os", "environ") + text("LD_PRELOAD") + text("/tmp/x.so") + SETITEM + STOP
    result = scan_data(data)
    assert any(f.rule_id == "PKL010" and f.level is Severity.CRITICAL for f in result.findings)


def test_setitems_on_trusted_instance_is_quiet(scan_data: ScanData) -> None:
    data = pickle.dumps(collections.OrderedDict((str(i), i) for i in range(2000)), protocol=2)
    assert not rules(scan_data(data))


# PKL011 ----------------------------------------------------------------------------------------------
def test_extension_registry_global(scan_data: ScanData) -> None:
    data = proto(2) + b"\x82\x07" + text("id") + TUPLE1 + REDUCE + STOP
    assert "PKL011" in rules(scan_data(data), Severity.CRITICAL)


# PKL012 ----------------------------------------------------------------------------------------------
def test_persistent_ids(scan_data: ScanData) -> None:
    storage = MARK + text("storage") + glob("torch", "FloatStorage") + text("0") + text("cpu") + b"K\x04" + TUPLE
    torch_like = proto(2) + storage + b"Q" + STOP
    odd = proto(2) + text("/etc/passwd") + b"Q" + STOP
    assert not rules(scan_data(torch_like))
    assert rules(scan_data(odd)) == {"PKL012"}


# PKL013 ----------------------------------------------------------------------------------------------
def test_frame_crossing_and_nested_frames(scan_data: ScanData) -> None:
    hidden = evil_pickle()[2:]
    # BINBYTES whose declared length runs past its frame: old C unpicklers run the tail as opcodes.
    body = b"B" + struct.pack("<I", len(hidden))
    crossing = proto(4) + b"\x95" + struct.pack("<Q", len(body)) + body + hidden
    result = scan_data(crossing)
    assert "PKL013" in rules(result, Severity.HIGH)
    assert is_code_execution(result)
    nested = proto(4) + b"\x95" + struct.pack("<Q", 20) + b"\x95" + struct.pack("<Q", 2) + NONE + STOP + b"N" * 9
    assert "PKL013" in rules(scan_data(nested))


def test_framed_pickles_are_quiet(scan_data: ScanData) -> None:
    data = pickle.dumps([list(range(20_000)), "x" * 100_000], protocol=5)
    assert not rules(scan_data(data))


# PKL014 ----------------------------------------------------------------------------------------------
def test_broken_stream_keeps_earlier_findings(scan_data: ScanData) -> None:
    data = evil_pickle()[:-1] + b"\xff\xff garbage"
    result = scan_data(data)
    assert is_code_execution(result)
    assert "PKL014" in rules(result, Severity.MEDIUM)


def test_missing_memo_entry_is_malformed(scan_data: ScanData) -> None:
    assert "PKL014" in rules(scan_data(proto(2) + binget(3) + STOP))


# PKL015 ----------------------------------------------------------------------------------------------
def test_trailing_garbage_and_resync(scan_data: ScanData) -> None:
    data = pickle.dumps([1, 2], protocol=2) + b"\x00\x01junk" * 10 + evil_pickle()
    result = scan_data(data)
    assert {f.rule_id: f.level for f in result.findings}["PKL015"] is Severity.LOW
    assert is_code_execution(result)


def test_trailing_garbage_alone_is_low(scan_data: ScanData) -> None:
    result = scan_data(pickle.dumps({"a": 1}, protocol=2) + b"\x00" * 64)
    assert rules(result) == {"PKL015"}
    assert not rules(result, Severity.MEDIUM)


# Memo tricks and name mapping ------------------------------------------------------------------------
def test_memo_laundering(scan_data: ScanData) -> None:
    double_memo = proto(4) + text("os") + MEMOIZE + binget(0) + MEMOIZE + text("system") + STACK_GLOBAL
    dup_memo = proto(4) + text("os") + DUP + MEMOIZE + POP + text("system") + STACK_GLOBAL
    for head in (double_memo, dup_memo):
        result = scan_data(head + text("id") + TUPLE1 + REDUCE + STOP)
        assert any("os.system('id')" in e for e in evidence(result, "PKL001"))


def test_memo_is_fresh_for_each_pickle(scan_data: ScanData) -> None:
    first = proto(4) + text("torch._utils") + binput(0) + text("_rebuild_tensor_v2") + binput(1) + STACK_GLOBAL + STOP
    second = proto(4) + text("os") + binput(0) + text("system") + binput(1) + POP + POP
    second += binget(0) + binget(1) + STACK_GLOBAL + text("id") + TUPLE1 + REDUCE + STOP
    result = scan_data(first + second)
    assert any("os.system('id')" in e for e in evidence(result, "PKL001"))


@pytest.mark.parametrize(
    ("module", "name", "rule"),
    [("commands", "getoutput", "PKL001"), ("__builtin__", "eval", "PKL001"), ("urllib2", "urlopen", "PKL005")],
)
def test_python2_names_are_mapped(scan_data: ScanData, module: str, name: str, rule: str) -> None:
    for protocol in (0, 2, 3):
        data = (proto(protocol) if protocol else b"") + glob(module, name) + MARK + text("x") + TUPLE + REDUCE + STOP
        assert rule in rules(scan_data(data), Severity.HIGH), (module, protocol)
