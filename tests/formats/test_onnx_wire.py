"""The ONNX decoder (formats/onnx/proto.py on _protobuf.decode) sees the model the protobuf runtime builds.

The reference is `onnx.load_model_from_string` (upb, which ONNX Runtime's C++ parser agrees with on every
case below that was tried against onnxruntime 1.32): hand-assembled hostile protobufs and mutated real
models must decode to the same nodes, attributes and tensors, or be rejected by both. Scanning must not
import onnx (its start-up is most of a second), except for an operator newer than the frozen table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from modelshield import scan_file
from modelshield.formats import _protobuf as pb
from modelshield.formats.onnx import model as onnx_format
from modelshield.formats.onnx import proto
from tests.conftest import ScanData
from tests.formats.test_onnx import control_flow_model, external, external_model, model, rule_ids

# -- hand assembly ---------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def ln(number: int, payload: bytes) -> bytes:
    return tag(number, pb.LEN) + varint(len(payload)) + payload


def vi(number: int, value: int) -> bytes:
    return tag(number, pb.VARINT) + varint(value)


def node(op: bytes, domain: bytes = b"", name: bytes = b"", attributes: bytes = b"") -> bytes:
    return ln(1, b"x") + ln(2, b"y") + ln(3, name) + ln(4, op) + (ln(7, domain) if domain else b"") + attributes


def graph_attribute(name: bytes, *graphs: bytes) -> bytes:
    return ln(5, ln(1, name) + vi(20, 5) + b"".join(ln(6, g) for g in graphs))  # type GRAPH


HEAD = vi(1, 8) + ln(8, vi(2, 17))  # ir_version, opset_import
RELU = ln(1, node(b"Relu"))
EVIL = ln(1, node(b"Decrypt", b"com.example.ops"))

# -- the reference: onnx's parser, converted to the decoder's objects -------------------------------


def text(value: str | bytes) -> str:
    """upb hands proto2 strings that are not UTF-8 back as bytes; the decoder keeps them as surrogate escapes."""
    return value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")


def entry(e: onnx.StringStringEntryProto) -> proto.StringStringEntry:
    return proto.StringStringEntry(text(e.key), text(e.value))


def tensor(t: onnx.TensorProto) -> proto.Tensor:
    return proto.Tensor(text(t.name), t.data_location, [entry(e) for e in t.external_data])


def tensors(ts: list[onnx.TensorProto]) -> list[proto.Tensor]:
    """The elements of a repeated tensor field the decoder keeps: those that name external data."""
    return [tensor(t) for t in ts if t.data_location or t.external_data]


def sparses(ss: list[onnx.SparseTensorProto]) -> list[proto.SparseTensor]:
    kept = [sparse(s) for s in ss]
    return [s for s in kept if proto.refers_outside(s.values) or proto.refers_outside(s.indices)]


def sparse(s: onnx.SparseTensorProto) -> proto.SparseTensor:
    return proto.SparseTensor(tensor(s.values), tensor(s.indices))


def attribute(a: onnx.AttributeProto) -> proto.Attribute:
    return proto.Attribute(
        name=text(a.name),
        i=a.i,
        s=a.s,
        t=tensor(a.t) if a.HasField("t") else None,
        g=graph(a.g) if a.HasField("g") else None,
        sparse_tensor=sparse(a.sparse_tensor) if a.HasField("sparse_tensor") else None,
        tensors=tensors(list(a.tensors)),
        graphs=[graph(g) for g in a.graphs],
        sparse_tensors=sparses(list(a.sparse_tensors)),
    )


def nodes(ns: list[onnx.NodeProto]) -> list[proto.Node]:
    return [
        proto.Node(text(n.name), text(n.op_type), text(n.domain), text(n.overload), [attribute(a) for a in n.attribute])
        for n in ns
    ]


def graph(g: onnx.GraphProto) -> proto.Graph:
    return proto.Graph(
        text(g.name), nodes(list(g.node)), tensors(list(g.initializer)), sparses(list(g.sparse_initializer))
    )


def converted(m: onnx.ModelProto) -> proto.Model:
    functions = [
        proto.Function(
            text(f.name),
            text(f.domain),
            text(f.overload),
            nodes(list(f.node)),
            [attribute(a) for a in f.attribute_proto],
        )
        for f in m.functions
    ]
    training = [proto.TrainingInfo(graph(t.initialization), graph(t.algorithm)) for t in m.training_info]
    return proto.Model(graph(m.graph), functions, training, [entry(e) for e in m.metadata_props])


def same_as_onnx(data: bytes) -> proto.Model | None:
    """The decoded model, asserted equal to onnx's; None when both reject the bytes."""
    try:
        reference = onnx.load_model_from_string(data)
    except DecodeError:
        with pytest.raises(pb.WireError):
            proto.decode_model(data, 1 << 30)
        return None
    decoded = proto.decode_model(data, 1 << 30)
    assert not decoded.truncated
    assert decoded.message == converted(reference)
    return decoded.message  # type: ignore[no-any-return]


# -- the schema is onnx's ---------------------------------------------------------------------------


def test_schema_names_every_field_the_parser_validates_or_the_walker_reads() -> None:
    """Every embedded message and packed number field of onnx-ml.proto is in the schema with its own
    number (so the bytes fail where the runtime's parser fails), and nothing else but kept fields."""
    seen: set[tuple[str, int]] = set()
    pending = [(onnx.ModelProto.DESCRIPTOR, proto.MODEL)]
    while pending:
        descriptor, schema = pending.pop()
        if (descriptor.full_name, id(schema)) in seen:
            continue
        seen.add((descriptor.full_name, id(schema)))
        expected = set()
        for f in descriptor.fields:
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                spec = schema.specs[f.number << 3 | pb.LEN]
                assert spec.kind in (pb.CHECK, pb.MESSAGES if f.is_repeated else pb.MESSAGE), f.full_name
                assert spec.schema is not None
                pending.append((f.message_type, spec.schema))
                expected.add(f.number << 3 | pb.LEN)
            elif f.is_repeated and f.type not in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
                packed = {FieldDescriptor.TYPE_FLOAT: pb.PACKED_FIXED32, FieldDescriptor.TYPE_DOUBLE: pb.PACKED_FIXED64}
                assert schema.specs[f.number << 3 | pb.LEN].kind == packed.get(f.type, pb.PACKED_VARINT), f.full_name
                expected.add(f.number << 3 | pb.LEN)
            for key, spec in schema.specs.items():
                if key >> 3 == f.number and spec.attr:
                    assert spec.attr == f.name
                    expected.add(key)
        assert set(schema.specs) == expected, descriptor.full_name
    assert len({name for name, _ in seen}) == 28


# -- hostile layouts: the same model as onnx's parser, or rejected by both --------------------------


GROUP_9 = tag(9, pb.START_GROUP) + vi(1, 5) + ln(2, b"ab") + tag(9, pb.END_GROUP)

HOSTILE = {
    "graph twice: one graph with both node lists": HEAD + ln(7, RELU + ln(2, b"first")) + ln(7, EVIL + ln(2, b"g2")),
    "graph three times around other fields": HEAD + ln(7, RELU) + vi(1, 9) + ln(7, b"") + ln(7, EVIL),
    "graph as a varint: unknown, skipped": HEAD + vi(7, 3) + ln(7, RELU),
    "node inside a repeated attribute's merged subgraph": HEAD
    + ln(
        7,
        ln(
            1,
            node(b"If", attributes=graph_attribute(b"then_branch", RELU) + graph_attribute(b"then_branch", b"", EVIL)),
        ),
    ),
    "attribute scalars: last wins": HEAD
    + ln(
        7,
        ln(
            1,
            node(
                b"EPContext", attributes=ln(5, ln(1, b"embed_mode") + vi(3, 0) + vi(3, 1) + ln(4, b"a") + ln(4, b"b"))
            ),
        ),
    ),
    "negative int64": HEAD + ln(7, ln(1, node(b"N", attributes=ln(5, ln(1, b"k") + vi(3, (1 << 64) - 5))))),
    "tensor t twice: external_data entries concatenated": HEAD
    + ln(
        7,
        ln(
            1,
            node(
                b"Constant",
                attributes=ln(
                    5,
                    ln(1, b"value")
                    + ln(5, ln(8, b"w") + vi(14, 1))
                    + ln(5, ln(13, ln(1, b"location") + ln(2, b"../x"))),
                ),
            ),
        ),
    ),
    "data_location 1 then 7: a closed enum ignores 7": HEAD + ln(7, ln(5, ln(8, b"w") + vi(14, 1) + vi(14, 7))),
    "data_location 2**32 + 1 is 1": HEAD + ln(7, ln(5, ln(8, b"w") + vi(14, (1 << 32) + 1))),
    "data_location -1 is undefined": HEAD + ln(7, ln(5, ln(8, b"w") + vi(14, (1 << 64) - 1))),
    "packed and unpacked dims": HEAD + ln(7, ln(5, ln(1, varint(3) + varint(1 << 40)) + vi(1, 4) + ln(8, b"w"))),
    "packed varint with a truncated last number": HEAD + ln(7, ln(5, ln(1, b"\x03\x80"))),
    "packed varint of 11 bytes": HEAD + ln(7, ln(5, ln(1, b"\xff" * 10 + b"\x01"))),
    "packed varint of 10 bytes with bits past 64": HEAD + ln(7, ln(5, ln(1, b"\xff" * 9 + b"\x7f"))),
    "packed floats of a partial length": HEAD + ln(7, ln(5, ln(4, b"\x00" * 6))),
    "packed doubles": HEAD + ln(7, ln(5, ln(10, b"\x00" * 16))),
    "packed doubles of a partial length": HEAD + ln(7, ln(5, ln(10, b"\x00" * 12))),
    "unknown fields of every wire type": HEAD
    + vi(99, 1)
    + tag(98, pb.I64)
    + b"\x00" * 8
    + ln(97, b"\xff\xff")
    + tag(96, pb.I32)
    + b"\x00" * 4
    + GROUP_9
    + ln(7, GROUP_9 + RELU + tag(500_000_000, pb.I32) + b"\x01\x02\x03\x04"),
    "known number in a group: skipped as unknown": HEAD
    + tag(7, pb.START_GROUP)
    + EVIL
    + tag(7, pb.END_GROUP)
    + ln(7, RELU),
    "nested groups": HEAD + tag(9, pb.START_GROUP) + GROUP_9 + tag(9, pb.END_GROUP) + ln(7, RELU),
    "group with a mismatched end": HEAD + tag(9, pb.START_GROUP) + tag(10, pb.END_GROUP) + ln(7, RELU),
    "group never closed": HEAD + ln(7, RELU) + tag(9, pb.START_GROUP) + vi(1, 1),
    "group closed outside its message": HEAD + ln(7, RELU + tag(9, pb.START_GROUP)) + tag(9, pb.END_GROUP),
    "end group without a start": HEAD + ln(7, RELU) + tag(9, pb.END_GROUP),
    "end group inside a message": HEAD + ln(7, RELU + tag(9, pb.END_GROUP)),
    "wire type 6": HEAD + ln(7, RELU) + tag(9, 6),
    "wire type 7": HEAD + ln(7, RELU) + tag(9, 7),
    "field number 0": HEAD + ln(7, RELU) + vi(0, 1),
    "largest field number": HEAD + ln(7, RELU) + vi((1 << 29) - 1, 1),
    "tag of 5 bytes": HEAD + ln(7, RELU) + b"\x88\x80\x80\x80\x00\x01",
    "tag wider than 32 bits": HEAD + ln(7, RELU) + b"\x88\x80\x80\x80\x10\x01",
    "tag of 6 bytes": HEAD + ln(7, RELU) + b"\x88\x80\x80\x80\x80\x00\x01",
    "length of 5 bytes": HEAD + b"\x3a" + bytes([len(RELU) | 0x80]) + b"\x80\x80\x80\x00" + RELU,
    "length wider than 32 bits": HEAD + b"\x3a" + bytes([len(RELU) | 0x80]) + b"\x80\x80\x80\x10" + RELU,
    "length of 10 bytes": HEAD + b"\x3a" + bytes([len(RELU) | 0x80]) + b"\x80" * 8 + b"\x00" + RELU,
    "varint of 10 bytes with bits past 64": HEAD + b"\x08" + b"\xff" * 9 + b"\x7f" + ln(7, RELU),
    "varint of 11 bytes": HEAD + b"\x08" + b"\xff" * 10 + b"\x01" + ln(7, RELU),
    "truncated varint": HEAD + ln(7, RELU) + b"\x08\x80",
    "truncated tag": HEAD + ln(7, RELU) + b"\x80",
    "truncated length": HEAD + ln(7, RELU) + b"\x3a\x80",
    "length past the end": HEAD + b"\x3a\x40" + RELU,
    "length past its message, inside the file": HEAD + ln(7, ln(1, b"\x22\x10Relu")) + b"\x00" * 16,
    "fixed64 past the end": HEAD + ln(7, RELU) + tag(9, pb.I64) + b"\x00" * 7,
    "zero-length messages": HEAD + ln(7, b"") + ln(7, ln(1, b"") + ln(5, b"")) + ln(25, b"") + ln(20, b""),
    "strings that are not UTF-8": HEAD + ln(7, ln(1, node(b"Op\xff", b"\xfe.ops", b"\x80")) + ln(5, ln(8, b"\xc3"))),
    "functions and training graphs merged": HEAD
    + ln(25, ln(1, b"f") + ln(7, node(b"A")) + ln(7, node(b"B")) + ln(11, ln(1, b"d") + ln(5, ln(8, b"t"))))
    + ln(20, ln(1, RELU) + ln(2, EVIL) + ln(1, EVIL)),
    "sparse tensors merged": HEAD + ln(7, ln(15, ln(1, ln(8, b"v")) + ln(1, ln(13, ln(1, b"location"))) + ln(2, b""))),
    "metadata entries: last key and value win": HEAD
    + ln(7, RELU)
    + ln(14, ln(1, b"a") + ln(1, b"ort_config") + ln(2, b"{}")),
    "value info types nested": HEAD + ln(7, RELU + ln(11, ln(2, ln(4, ln(1, ln(5, ln(2, ln(1, ln(2, ln(1, b"")))))))))),
    "value info with a malformed shape": HEAD + ln(7, RELU + ln(11, ln(2, ln(1, ln(2, ln(1, b"\x08")))))),
    "device configuration shards with packed devices": HEAD
    + ln(7, ln(1, node(b"R") + ln(10, ln(2, ln(2, b"\x01\x02\x80"))))),
}


@pytest.mark.parametrize("data", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_layouts_decode_as_onnx_parses_them(data: bytes) -> None:
    same_as_onnx(data)


def test_a_repeated_graph_is_one_graph_with_both_node_lists() -> None:
    decoded = same_as_onnx(HOSTILE["graph twice: one graph with both node lists"])
    assert decoded is not None
    assert [n.op_type for n in decoded.graph.node] == ["Relu", "Decrypt"]
    assert decoded.graph.name == "g2"


def _nested(levels: int) -> bytes:
    """`levels` If nodes, each in the then-branch of the one before: three messages per level."""
    inner = RELU
    for _ in range(levels):
        inner = ln(1, node(b"If", attributes=graph_attribute(b"then_branch", inner)))
    return HEAD + ln(7, inner)


@pytest.mark.parametrize("levels", [32, 33])
def test_nesting_stops_where_the_runtime_stops(levels: int) -> None:
    """100 levels of embedded messages below the model are accepted (32 levels: 3 * 32 + 2), 101 are not."""
    assert (same_as_onnx(_nested(levels)) is None) == (levels == 33)


@pytest.mark.parametrize("groups", [99, 100, 101])
def test_group_nesting_counts_towards_the_depth(groups: int) -> None:
    nested = b"".join(tag(9 + i, pb.START_GROUP) for i in range(groups))
    nested += b"".join(tag(9 + i, pb.END_GROUP) for i in reversed(range(groups)))
    same_as_onnx(HEAD + ln(7, RELU) + nested)
    same_as_onnx(HEAD + ln(7, RELU + ln(1, nested)))  # one level down, one group fewer


# -- what the scan reports from such layouts --------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        HEAD + ln(7, RELU) + ln(7, EVIL),
        HEAD
        + ln(
            7,
            ln(
                1, node(b"If", attributes=graph_attribute(b"then_branch", RELU) + graph_attribute(b"then_branch", EVIL))
            ),
        ),
        HEAD + ln(7, ln(1, node(b"Loop", attributes=ln(5, ln(1, b"body") + ln(6, RELU) + ln(6, EVIL))))),
        b"\x08" + b"\x88" + b"\x80" * 8 + b"\x02" + ln(7, EVIL),  # ir_version 8 with junk past bit 64
    ],
    ids=["second-graph-copy", "repeated-attribute", "merged-subgraph", "overlong-ir-version"],
)
def test_custom_operator_hidden_by_the_wire_layout_is_found(scan_data: ScanData, data: bytes) -> None:
    """onnxruntime 1.32 fails on each with `com.example.ops:Decrypt is not a registered op`: it sees the node."""
    result = scan_data(data, "model.onnx")
    assert result.format == "onnx"
    assert rule_ids(result) == ["ONX001"]


@pytest.mark.parametrize("extra", [vi(14, 7), vi(14, (1 << 64) - 1), b""])
def test_external_location_in_a_merged_tensor_is_an_escape(scan_data: ScanData, extra: bytes) -> None:
    """`data_location` EXTERNAL in the first copy of the tensor, the location in the second: one tensor."""
    first = ln(5, ln(8, b"w") + vi(14, 1) + extra)
    second = ln(5, ln(13, ln(1, b"location") + ln(2, b"/etc/passwd")))
    attribute = ln(5, ln(1, b"value") + first + second)
    data = HEAD + ln(7, ln(1, node(b"Constant", attributes=attribute)))
    assert rule_ids(scan_data(data, "model.onnx")) == ["ONX004"]


def test_malformed_packed_numbers_fail_closed(scan_data: ScanData) -> None:
    result = scan_data(HOSTILE["packed varint with a truncated last number"] + ln(7, RELU), "model.onnx")
    assert [f.rule_id for f in result.findings] == ["SCN003"]
    assert "malformed ONNX protobuf" in result.findings[0].evidence


def test_kept_messages_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph of many small tensors stops being kept past the budget and the scan says so."""
    monkeypatch.setattr(onnx_format, "MAX_NODES", 10)
    m = model([helper.make_node("Relu", ["x"], ["y"])], initializers=[external(f"w{i}") for i in range(60)])
    path = tmp_path / "model.onnx"
    path.write_bytes(m.SerializeToString())
    assert proto.decode_model(path.read_bytes(), 40).truncated
    assert "SCN005" in rule_ids(scan_file(str(path)))


def test_a_cut_stays_reported_when_the_message_it_emptied_is_dropped() -> None:
    """A tensor is kept only if it names external data; when its entries are the ones past the budget
    it looks plain and is dropped, giving its count back: the cut must still be reported."""
    entries = b"".join(ln(13, ln(1, b"location") + ln(2, b"/etc/passwd")) for _ in range(3))
    data = HEAD + ln(7, RELU + ln(5, ln(8, b"w") + entries))
    assert proto.decode_model(data, 3).truncated  # graph, node and tensor kept; its entries are not
    assert not proto.decode_model(data, 6).truncated


def test_decoding_stops_at_the_budget_whatever_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Millions of empty initializers are dropped as they are decoded, but each is decoded: they count, so
    a file of them costs the budget, not its size (100 MB took 43 s), and is reported as not fully
    analysed. Nothing past the cut is read: a broken tail there is not met."""
    monkeypatch.setattr(onnx_format, "MAX_NODES", 10)
    limit = onnx_format.MESSAGES_PER_NODE * onnx_format.MAX_NODES
    graph = RELU + b"\x2a\x00" * (3 * limit)  # GraphProto.initializer, empty: plain tensors, never kept
    data = HEAD + ln(7, graph + b"\x3a\x80")  # then a field whose length is cut short
    assert proto.decode_model(data, limit).truncated
    with pytest.raises(pb.WireError):
        proto.decode_model(data, 10 * limit)  # with room for all of them the broken tail is read
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    assert "SCN005" in rule_ids(scan_file(str(path)))


# -- mutated real models ---------------------------------------------------------------------------


def _real_models() -> list[bytes]:
    ep = helper.make_node("EPContext", ["x"], ["y"], domain="com.microsoft", embed_mode=0, ep_cache_context="c.bin")
    with_external = external_model(external("w", location="w.bin", offset="0", length="16"))
    with_external.metadata_props.add(key="ort_config", value="{}")
    return [
        control_flow_model().SerializeToString(),
        model([ep]).SerializeToString(),
        with_external.SerializeToString(),
    ]


REAL = _real_models()


def top_level_fields(data: bytes) -> list[bytes]:
    """A serialised model cut into its top-level fields (real models have no groups)."""
    out, pos = [], 0
    while pos < len(data):
        key, after = pb.read_varint(data, pos)
        if key & 7 == pb.VARINT:
            after = pb.read_varint(data, after)[1]
        else:
            assert key & 7 == pb.LEN
            length, after = pb.read_varint(data, after)
            after += length
        out.append(data[pos:after])
        pos = after
    return out


EDIT = st.tuples(st.integers(0, 1 << 16), st.integers(0, 255), st.sampled_from(["set", "insert", "delete"]))
#: whole top-level fields repeated (a second graph, opset or function merges or adds), dropped or moved
SPLICE = st.tuples(st.integers(0, 63), st.integers(0, 63), st.sampled_from(["repeat", "drop", "move"]))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(range(len(REAL))), st.lists(SPLICE, max_size=4), st.lists(EDIT, max_size=6))
def test_mutated_real_models_decode_as_onnx_parses_them(
    which: int, splices: list[tuple[int, int, str]], edits: list[tuple[int, int, str]]
) -> None:
    parts = top_level_fields(REAL[which])
    for source, target, how in splices:
        part = parts[source % len(parts)]
        if how == "drop" and len(parts) > 1:
            parts.remove(part)
        elif how != "drop":
            if how == "move":
                parts.remove(part)
            parts.insert(target % (len(parts) + 1), part)
    data = bytearray(b"".join(parts))
    for position, value, how in edits:
        at = position % (len(data) + 1)
        if how == "insert":
            data[at:at] = bytes([value])
        elif at < len(data):
            if how == "set":
                data[at] = value
            else:
                del data[at]
    same_as_onnx(bytes(data))


# -- the frozen operator table ---------------------------------------------------------------------


def test_frozen_table_holds_every_schema_of_the_installed_onnx() -> None:
    table = onnx_format.standard_operators()
    missing = {(s.domain, s.name) for s in onnx.defs.get_all_schemas_with_history()} - {
        (domain, op) for domain, ops in table.items() for op in ops
    }
    assert not missing
    frozen = json.loads((Path(onnx_format.__file__).parents[1] / "data" / "onnx_ops.json").read_text())
    assert frozen["onnx_version"]


def test_operator_missing_from_the_frozen_table_is_looked_up_in_onnx(monkeypatch: pytest.MonkeyPatch) -> None:
    """A newer onnx's operators (here: one removed from the table, and a whole domain) are not false alarms."""
    table = dict(onnx_format.standard_operators())
    table[""] = table[""] - {"Relu"}
    del table["ai.onnx.preview.training"]
    monkeypatch.setattr(onnx_format, "standard_operators", lambda: table)
    judge = onnx_format.OperatorJudge()
    assert judge.rule("", "Relu") is None
    assert judge.rule("ai.onnx.preview.training", "Adagrad") is None
    assert judge.rule("", "Exec") is onnx_format.UNKNOWN_OPERATOR
    assert judge.rule("ai.onnx.preview.training", "Exec") is onnx_format.UNKNOWN_OPERATOR
    assert judge.rule("com.example.ops", "Relu") is onnx_format.CUSTOM_DOMAIN


_IMPORTS = """
import json, sys
from modelshield import scan_file
result = scan_file(sys.argv[1])
print(json.dumps([sorted(f.rule_id for f in result.findings), sorted({"onnx", "ml_dtypes"} & set(sys.modules))]))
"""


def _scan_in_a_fresh_process(path: Path) -> tuple[list[str], list[str]]:
    """(rule ids, which of onnx and ml_dtypes got imported) of scanning `path` in a new interpreter."""
    run = subprocess.run([sys.executable, "-c", _IMPORTS, str(path)], capture_output=True, text=True, check=True)
    rules, imported = json.loads(run.stdout)
    return rules, imported


def test_scanning_an_onnx_model_imports_neither_onnx_nor_ml_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(control_flow_model().SerializeToString())
    assert _scan_in_a_fresh_process(path) == ([], [])


def test_an_operator_the_table_lacks_is_looked_up_in_the_installed_onnx(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(model([helper.make_node("Exec", ["x"], ["y"])]).SerializeToString())
    rules, imported = _scan_in_a_fresh_process(path)
    assert rules == ["ONX003"]
    assert "onnx" in imported


def test_external_location_constant_is_onnx_enum() -> None:
    assert set(TensorProto.DataLocation.values()) == proto.DATA_LOCATIONS
