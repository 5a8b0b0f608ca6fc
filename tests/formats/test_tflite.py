"""LiteRT / TFLite analysis: real conversions (tests/fixtures/tf, made by scripts/make_tf_fixtures.py),
models built with the schema's object API, and hostile flatbuffers patched by hand."""

from __future__ import annotations

import contextlib
import gzip
import io
import struct
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modelshield
from modelshield import FileResult, Policy
from modelshield.core.engine import Engine
from modelshield.core.findings import Location
from modelshield.core.rules import Severity
from modelshield.core.source import BytesSource
from modelshield.formats._flatbuffers import FlatBuffer, Table
from modelshield.formats.tensorflow import flex, tflite
from modelshield.formats.tensorflow import ops as tensorflow_ops
from modelshield.formats.tensorflow.tflite import root_table
from modelshield.registry import HANDLERS
from tests.conftest import ScanData
from tests.formats.test_format_detection import pb_msg
from tests.helpers import evil_pickle, is_code_execution

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def found(result: FileResult) -> list[tuple[str, str]]:
    return [(f.rule_id, f.level.label) for f in result.findings]


@pytest.mark.parametrize("name", ["dense.tflite", "cnn.tflite", "module.tflite", "stock_custom_op.tflite"])
def test_standard_models_are_clean(scan_data: ScanData, name: str) -> None:
    result = scan_data(fixture(name), name)
    assert result.format == "tflite"
    assert result.findings == []


@pytest.mark.parametrize(
    ("name", "expected", "op"),
    [
        ("flex_read_file.tflite", [("TFO002", "high"), ("TFL002", "info")], "ReadFile"),
        ("flex_write_file.tflite", [("TFO003", "high"), ("TFL002", "info")], "WriteFile"),
        ("flex_benign.tflite", [("TFL002", "info")], None),
    ],
)
def test_flex_ops_are_judged_as_tensorflow_ops(
    scan_data: ScanData, name: str, expected: list[tuple[str, str]], op: str | None
) -> None:
    result = scan_data(fixture(name), name)
    assert found(result) == expected
    if op is not None:
        assert result.findings[0].details["op"] == op
        assert "subgraph 0 'main'" in result.findings[0].evidence


@pytest.mark.parametrize(
    ("name", "rule", "evidence"),
    [
        ("custom_op.tflite", "TFL001", "custom operator 'MyNativeKernel': 1 use(s) in subgraph 1 'body'"),
        ("unknown_builtin.tflite", "TFL003", "unknown builtin operator code 250"),
        ("stablehlo_custom_call.tflite", "TFL004", "StableHLO custom call to 'my_native_kernel'"),
    ],
)
def test_operators_of_every_subgraph_are_judged(scan_data: ScanData, name: str, rule: str, evidence: str) -> None:
    [finding] = scan_data(fixture(name), name).findings
    assert finding.rule_id == rule
    assert finding.level is Severity.MEDIUM
    assert evidence in finding.evidence


def test_custom_ops_can_be_allowed_by_policy(scan_data: ScanData) -> None:
    policy = Policy(allow={tensorflow_ops.CUSTOM_OPS_ALLOWLIST: frozenset({"MyNativeKernel"})})
    assert scan_data(fixture("custom_op.tflite"), "custom_op.tflite", policy).findings == []


def test_unused_custom_operator_codes_are_still_reported(scan_data: ScanData) -> None:
    data = bytearray(fixture("custom_op.tflite"))
    operator = operators(data)[-1]
    struct.pack_into("<I", data, field_position(operator, 0), 0)  # the body's operator now uses CALL_ONCE
    [finding] = scan_data(bytes(data), "m.tflite").findings
    assert "operator_codes[1] (not used by any operator)" in finding.evidence


# -- hostile flatbuffers --------------------------------------------------------------------------------------


def model_table(data: bytes | bytearray) -> Table:
    root = root_table(BytesSource(bytes(data)))
    assert root is not None
    return FlatBuffer(bytes(data)).table(root)


def field_position(table: Table, slot: int) -> int:
    position = table._field(slot, 4)
    assert position is not None
    return position


def operators(data: bytes | bytearray) -> list[Table]:
    return [op for subgraph in model_table(data).tables(2) for op in subgraph.tables(3)]


def patched(name: str, table: str, slot: int, value: int, fmt: str = "<I") -> bytes:
    data = bytearray(fixture(name))
    model = model_table(data)
    target = {"model": model, "subgraph": list(model.tables(2))[-1], "operator": operators(data)[-1]}[table]
    struct.pack_into(fmt, data, field_position(target, slot), value)
    return bytes(data)


@pytest.mark.parametrize(
    "data",
    [
        patched("custom_op.tflite", "model", 1, 0x7FFFFFF0),  # operator_codes offset past the end
        patched("custom_op.tflite", "model", 2, 2),  # subgraphs offset into the middle of a table
        patched("custom_op.tflite", "operator", 0, 99),  # opcode_index out of range
        patched("cnn.tflite", "subgraph", 3, 0xFFFFFFFF - 64),  # operators offset wraps past the end
    ],
)
def test_broken_offsets_fail_closed(scan_data: ScanData, data: bytes) -> None:
    result = scan_data(data, "m.tflite")
    assert result.format == "tflite"
    assert [f.rule_id for f in result.findings] == ["SCN003"]
    assert "internal error" not in result.findings[0].evidence


def test_huge_vector_length_fails_closed(scan_data: ScanData) -> None:
    data = bytearray(fixture("cnn.tflite"))
    subgraph = next(model_table(data).tables(2))
    at = field_position(subgraph, 3)
    vector = at + struct.unpack_from("<I", data, at)[0]
    struct.pack_into("<I", data, vector, 0x3FFFFFFF)
    assert [f.rule_id for f in scan_data(bytes(data), "m.tflite").findings] == ["SCN003"]


def test_vtable_outside_the_file_fails_closed(scan_data: ScanData) -> None:
    data = bytearray(fixture("custom_op.tflite"))
    operator = operators(data)[-1]
    struct.pack_into("<i", data, operator.pos, -0x100000)  # vtable = pos + 1 MiB
    assert [f.rule_id for f in scan_data(bytes(data), "m.tflite").findings] == ["SCN003"]


def test_aliased_vectors_are_bounded(scan_data: ScanData) -> None:
    """Many subgraph entries point at one subgraph whose operators vector points many times at one
    operator: tiny on disk, a billion reads for a naive reader."""
    data = bytearray(fixture("custom_op.tflite"))
    model = model_table(data)
    count = 2000
    base = len(data) + (-len(data) % 4)
    data += b"\0" * (base - len(data))
    subgraphs_vector = base
    sub_vtable = subgraphs_vector + 4 + 4 * count
    sub_table = sub_vtable + 12
    ops_vector = sub_table + 8
    op_vtable = ops_vector + 4 + 4 * count
    op_table = op_vtable + 8
    out = bytearray(op_table + 8 - base)

    def put(fmt: str, at: int, *values: int) -> None:
        struct.pack_into(fmt, out, at - base, *values)

    put("<I", subgraphs_vector, count)
    for i in range(count):
        element = subgraphs_vector + 4 + 4 * i
        put("<I", element, sub_table - element)
    put("<HHHHHH", sub_vtable, 12, 8, 0, 0, 0, 4)  # SubGraph: only operators (slot 3) at +4
    put("<iI", sub_table, sub_table - sub_vtable, ops_vector - (sub_table + 4))
    put("<I", ops_vector, count)
    for i in range(count):
        element = ops_vector + 4 + 4 * i
        put("<I", element, op_table - element)
    put("<HHHH", op_vtable, 8, 8, 4, 0)  # Operator: opcode_index (slot 0) at +4
    put("<iI", op_table, op_table - op_vtable, 1)
    data += out
    slot = field_position(model, 2)
    struct.pack_into("<I", data, slot, subgraphs_vector - slot)
    result = scan_data(bytes(data), "m.tflite")
    assert [f.rule_id for f in result.findings] == ["SCN005"]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_corrupted_models_never_crash_the_reader(data: st.DataObject) -> None:
    model = bytearray(fixture(data.draw(st.sampled_from(["cnn.tflite", "custom_op.tflite", "flex_read_file.tflite"]))))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(8, len(model) - 1))
        model[position] = data.draw(st.integers(0, 255))
    engine = Engine(HANDLERS, Policy())
    findings = list(engine.scan_object(BytesSource(bytes(model)), Location("m.tflite"), 0))
    assert all("internal error" not in f.evidence and "aborted" not in f.evidence for f in findings)


# -- TFLite Metadata associated files (every MediaPipe model) ------------------------------------------

METADATA_MODEL = FIXTURES / "dense_with_metadata.tflite"


def test_model_with_associated_files_is_one_model_with_members() -> None:
    """Written by the real MetadataPopulator (scripts/make_tf_fixtures.py): no polyglot, no data
    before an archive; the packed label file is scanned as a member."""
    [result] = modelshield.scan(METADATA_MODEL).files
    assert (result.format, result.findings) == ("tflite", [])
    members = [o.location.rsplit("!", 1)[-1] for o in result.objects]
    assert members == [str(METADATA_MODEL), "<associated files>", "labels.txt"]


def _model_part() -> bytes:
    data = METADATA_MODEL.read_bytes()
    start = tflite.associated_files_start(BytesSource(data))
    assert start is not None
    return data[:start]


def test_associated_files_are_scanned_as_members(tmp_path: Path) -> None:
    """The layout as the populator writes it (Python's zipfile appending to the model), with a pickle."""
    path = tmp_path / "model.tflite"
    path.write_bytes(_model_part())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("labels.txt", "background\nperson\n")
        archive.writestr("vocab.pkl", evil_pickle())
    [result] = modelshield.scan(path).files
    assert result.format == "tflite"
    assert is_code_execution(result, f"{path}!<associated files>!vocab.pkl")
    assert not [f for f in result.findings if f.rule_id in ("SCN002", "ARC009")]


def test_a_zip_after_a_model_without_tflite_metadata_stays_a_polyglot(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes((FIXTURES / "dense.tflite").read_bytes())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("labels.txt", "cat\n")
    [result] = modelshield.scan(path).files
    assert "SCN002" in [f.rule_id for f in result.findings]


def test_a_custom_operator_mediapipe_provides_is_low(scan_data: ScanData) -> None:
    data = fixture("custom_op.tflite")
    named = b"\x0e\x00\x00\x00MyNativeKernel"
    assert named in data
    data = data.replace(named, b"\x09\x00\x00\x00Resampler" + b"\x00" * 5)
    [finding] = scan_data(data, "model.tflite").findings
    assert (finding.rule_id, finding.level, finding.details["runtime"]) == ("TFL001", Severity.LOW, "MediaPipe")
    assert "official distribution" in finding.evidence


def test_a_hidden_zip_entry_before_the_listed_ones_is_not_taken_for_the_model(tmp_path: Path) -> None:
    """A local entry the central directory does not list, between the model and the zip, stays visible."""
    hidden = io.BytesIO()
    with zipfile.ZipFile(hidden, "w") as archive:
        archive.writestr("payload.pkl", evil_pickle())
    local = hidden.getvalue()[: hidden.getvalue().index(b"PK\x01\x02")]
    path = tmp_path / "model.tflite"
    path.write_bytes(_model_part() + local)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("labels.txt", "background\n")
    assert tflite.associated_files_start(BytesSource(path.read_bytes())) is None
    [result] = modelshield.scan(path).files
    assert "SCN002" in [f.rule_id for f in result.findings]


# -- a real MediaPipe model (mediapipe 0.10.14 wheel, mediapipe/modules/selfie_segmentation) ------------

MEDIAPIPE = FIXTURES / "mediapipe"


def test_real_mediapipe_model_passes_the_default_gate() -> None:
    """Flatbuffer + TFLITE_METADATA + a zipped labels.txt, and MediaPipe's own custom op: one model,
    its label file a member, the custom op low with the runtime named."""
    [result] = modelshield.scan(MEDIAPIPE / "selfie_segmentation.tflite").files
    assert result.format == "tflite"
    assert [(f.rule_id, f.level, f.details.get("op")) for f in result.findings] == [
        ("TFL001", Severity.LOW, "Convolution2DTransposeBias")
    ]
    assert [o.location.rsplit("!", 1)[-1] for o in result.objects][1:] == ["<associated files>", "labels.txt"]


def test_an_empty_associated_files_zip_is_part_of_the_layout(tmp_path: Path) -> None:
    """MediaPipe appends an end-of-directory record alone to models with no associated file."""
    path = tmp_path / "model.tflite"
    path.write_bytes(_model_part())
    zipfile.ZipFile(path, "a").close()
    [result] = modelshield.scan(path).files
    assert (result.format, result.findings) == ("tflite", [])


def test_a_mediapipe_graph_config_is_not_a_tensorflow_graph() -> None:
    [result] = modelshield.scan(MEDIAPIPE / "face_detection_short_range_cpu.binarypb").files
    assert (result.format, result.findings) == ("binary", [])


def test_associated_files_of_a_compressed_model_are_scanned(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(_model_part())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("vocab.pkl", evil_pickle())
    packed = tmp_path / "model.tflite.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    [result] = modelshield.scan(packed).files
    assert is_code_execution(result, "<associated files>!vocab.pkl")


# -- Flex operators: what the delegate runs is in the custom options ----------------------------------------


def rules_and_ops(result: FileResult) -> list[tuple[str, str, str]]:
    return [(f.rule_id, f.level.label, str(f.details.get("op", ""))) for f in result.findings]


def test_a_flex_ops_nodedef_attributes_are_judged(scan_data: ScanData) -> None:
    """`tf.print(..., output_stream='file://...')` converted with Select TF ops: only the NodeDef in
    the custom options says that FlexPrintV2 writes a file."""
    result = scan_data(fixture("flex_print_to_file.tflite"), "m.tflite")
    assert rules_and_ops(result) == [("TFO003", "high", "PrintV2"), ("TFL002", "info", "")]
    assert "file:///tmp/modelshield-flex-print" in result.findings[0].evidence


@pytest.mark.parametrize(
    "name", ["flex_disguised_code.tflite", "flex_disguised_options.tflite", "flex_large_options.tflite"]
)
def test_a_flex_op_is_judged_by_what_it_runs_not_by_its_custom_code(scan_data: ScanData, name: str) -> None:
    """The delegate runs the op named first in the options (kernel.cc); a `FlexStringLength` code
    that runs WriteFile is reported twice: as a disguise and as the file write it is."""
    result = scan_data(fixture(name), name)
    assert rules_and_ops(result) == [
        ("TFL005", "high", "FlexStringLength"),
        ("TFO003", "high", "WriteFile"),
        ("TFL002", "info", ""),
    ]
    assert "runs 'WriteFile'" in result.findings[0].evidence


def _patched_options(old: bytes, new: bytes) -> bytes:
    data = fixture("flex_read_file.tflite")
    assert data.count(old) == 1 and len(old) == len(new)
    return data.replace(old, new)


def test_an_op_name_in_the_options_that_stock_tensorflow_lacks_is_a_custom_op(scan_data: ScanData) -> None:
    # the options' first string (8 bytes after its length, then the 24-byte NodeDef's length); the
    # NodeDef keeps `op: ReadFile`
    result = scan_data(_patched_options(b"\x00\x08ReadFile\x00\x18", b"\x00\x08ReadFilz\x00\x18"), "m.tflite")
    assert ("TFL005", "high", "FlexReadFile") in rules_and_ops(result)
    assert ("TFO005", "medium", "ReadFilz") in rules_and_ops(result)
    assert ("TFO002", "high", "ReadFile") in rules_and_ops(result)  # the NodeDef's op is judged too


def test_a_bare_flex_custom_code_is_a_flex_op(scan_data: ScanData) -> None:
    """The delegate claims every custom code that starts with `Flex` (`IsFlexOp`), even `Flex` alone."""
    data = _patched_options(b"\x0c\x00\x00\x00FlexReadFile", b"\x04\x00\x00\x00FlexReadFile")
    assert rules_and_ops(scan_data(data, "m.tflite")) == [
        ("TFL005", "high", "Flex"),
        ("TFO002", "high", "ReadFile"),
        ("TFL002", "info", ""),
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(b"\x14\x14\x04(\x01", b"\x14\x14\x04(\x07", id="root-width"),
        pytest.param(b"\x14\x14\x04(\x01", b"\x14\x14\x04\x14\x01", id="root-not-a-vector"),
        pytest.param(b"\x00\x02$\x1b", b"\x00\x7f$\x1b", id="vector-length"),
    ],
)
def test_flex_options_that_do_not_decode_fail_closed(scan_data: ScanData, old: bytes, new: bytes) -> None:
    result = scan_data(_patched_options(old, new), "m.tflite")
    [broken] = [f for f in result.findings if f.rule_id == "TFL005"]
    assert broken.level is Severity.MEDIUM and "do not decode" in broken.evidence
    assert ("TFO002", "high", "ReadFile") in rules_and_ops(result)  # still judged by its name


def flexbuffer(
    name: bytes, node_def: bytes, *, root_width: int = 1, name_type: int = 0x14, root_type: int = 0x28
) -> bytes:
    """A flexbuffer vector [name, node_def] laid out as flexbuffers::Builder does (byte-wide, strings
    NUL-terminated), with a root whose width byte may be any value the C++ reader accepts."""
    buf = bytes([len(name)]) + name + b"\0"
    buf += bytes([len(node_def)]) + node_def + b"\0"
    starts = (1, len(name) + 3)
    buf += b"\x02"
    vector = len(buf)
    buf += bytes([vector - starts[0], vector + 1 - starts[1]]) + bytes([name_type, 0x14])
    size = 1 if root_width < 2 else 2 if root_width < 4 else 4 if root_width < 8 else 8
    root = (len(buf) - vector).to_bytes(size, "little") + bytes(max(root_width - size, 0))
    return buf + root + bytes([root_type, root_width])


WRITE_FILE_NODE = pb_msg(1, b"w") + pb_msg(2, b"WriteFile")


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(flexbuffer(b"WriteFile", WRITE_FILE_NODE), id="as-the-converter-writes"),
        pytest.param(flexbuffer(b"WriteFile", WRITE_FILE_NODE, root_width=3), id="root-width-3-reads-2-bytes"),
        pytest.param(flexbuffer(b"WriteFile", WRITE_FILE_NODE, root_width=6), id="root-width-6-reads-4-bytes"),
        pytest.param(flexbuffer(b"WriteFile", WRITE_FILE_NODE, name_type=0x10), id="name-as-a-key"),
        pytest.param(flexbuffer(b"WriteFile", WRITE_FILE_NODE, root_type=0x24), id="root-a-map"),
    ],
)
def test_flex_options_decode_as_the_delegate_reads_them(options: bytes) -> None:
    """flexbuffers' C++ reader takes any root width (reading 1, 2, 4 or 8 bytes), keys as strings and a
    map as a vector: what it accepts is what the decoder must see, or a payload hides behind it."""
    decoded = flex.decode(options)
    assert (decoded.runs, decoded.node.op) == ("WriteFile", "WriteFile")


@given(st.binary(max_size=96))
@settings(max_examples=300, deadline=None)
def test_random_flex_options_never_crash_the_decoder(data: bytes) -> None:
    with contextlib.suppress(flex.FlexError):  # anything else escaping is the failure
        flex.decode(data)
