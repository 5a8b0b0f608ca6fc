"""TensorFlow SavedModel analysis: real SavedModels written by TensorFlow (tests/fixtures/tf, made by
scripts/make_tf_fixtures.py) and hand-built protobufs for what TensorFlow cannot write."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import modelshield
from modelshield import FileResult, Policy
from modelshield.core.rules import Severity
from modelshield.core.source import BytesSource
from modelshield.formats.tensorflow import ops as tensorflow_ops
from modelshield.formats.tensorflow import savedmodel
from modelshield.formats.tensorflow.savedmodel import MetaGraph, Node, saver_only
from tests.conftest import ScanData, UnsizedStream
from tests.formats.test_format_detection import pb_int, pb_msg

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf"


def scan_dir(name: str, policy: Policy | None = None) -> list[FileResult]:
    return modelshield.scan(FIXTURES / name, policy).files


def rules(results: list[FileResult], at_least: Severity = Severity.INFO) -> list[str]:
    return [f.rule_id for r in results for f in r.findings if f.level >= at_least]


# -- real SavedModels -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["savedmodel_module", "savedmodel_keras_export", "savedmodel_tf1"])
def test_real_saved_models_are_clean(name: str) -> None:
    results = scan_dir(name)
    assert sorted(r.format for r in results if r.is_model) == ["savedmodel", "tf-tensor-bundle"]  # + variables/
    assert rules(results) == []  # not even the checkpoint ops of the save/restore functions


@pytest.mark.parametrize(
    ("name", "rule", "op"),
    [
        ("savedmodel_pyfunc", "TFO001", "EagerPyFunc"),
        ("savedmodel_pyfunc_pbtxt", "TFO001", "EagerPyFunc"),
        ("savedmodel_read_file", "TFO002", "ReadFile"),
        ("savedmodel_restore_in_serving", "TFO002", "RestoreV2"),
        ("savedmodel_write_file", "TFO003", "WriteFile"),
        ("savedmodel_custom_op", "TFO005", "ZeroOut"),
    ],
)
def test_dangerous_ops_in_real_saved_models(name: str, rule: str, op: str) -> None:
    [finding] = [f for r in scan_dir(name) for f in r.findings]
    assert (finding.rule_id, finding.details["op"]) == (rule, op)
    assert finding.details["places"][0].startswith("function __inference___call__")
    assert finding.details["uses"] == 2  # the traced function and its concrete twin


def test_py_function_evidence_names_the_token() -> None:
    [finding] = [f for r in scan_dir("savedmodel_pyfunc") for f in r.findings]
    assert finding.level is Severity.CRITICAL
    assert "token=['pyfunc_" in finding.evidence


def test_custom_ops_can_be_allowed_by_policy() -> None:
    policy = Policy(allow={tensorflow_ops.CUSTOM_OPS_ALLOWLIST: frozenset({"ZeroOut"})})
    assert rules(scan_dir("savedmodel_custom_op", policy)) == []


# -- hand-built graphs ------------------------------------------------------------------------------------


def attr(key: str, value: bytes) -> bytes:
    return pb_msg(5, pb_msg(1, key.encode()) + pb_msg(2, value))


def node(name: str, op: str, *inputs: str, attrs: bytes = b"") -> bytes:
    return pb_msg(1, name.encode()) + pb_msg(2, op.encode()) + b"".join(pb_msg(3, i.encode()) for i in inputs) + attrs


def call(name: str, function: str, *inputs: str) -> bytes:
    return node(name, "StatefulPartitionedCall", *inputs, attrs=attr("f", pb_msg(10, pb_msg(1, function.encode()))))


def function(name: str, *nodes: bytes, args: Sequence[str] = ()) -> bytes:
    signature = pb_msg(1, name.encode()) + b"".join(pb_msg(2, pb_msg(1, a.encode())) for a in args)
    return pb_msg(1, pb_msg(1, signature) + b"".join(pb_msg(3, n) for n in nodes))


def const(name: str, *values: bytes) -> bytes:
    return node(name, "Const", attrs=attr("value", pb_msg(8, b"".join(pb_msg(8, v) for v in values))))


def saved_model(nodes: Sequence[bytes], functions: Sequence[bytes] = (), saver: tuple[str, str] | None = None) -> bytes:
    graph = b"".join(pb_msg(1, n) for n in nodes) + pb_msg(2, b"".join(functions))
    meta = pb_msg(1, pb_msg(4, b"serve")) + pb_msg(2, graph)
    if saver is not None:
        meta += pb_msg(3, pb_msg(1, b"saver_filename:0") + pb_msg(2, saver[0].encode()) + pb_msg(3, saver[1].encode()))
    return pb_int(1, 1) + pb_msg(2, meta)


def save_function(*extra: bytes, prefix: str = "file_prefix", suffix: bytes = b"_temp/part") -> bytes:
    """The generated save function as TensorFlow 2.21 writes it (functional_saver.py `_traced_save`)."""
    return function(
        "__inference__traced_save_9",
        node("StaticRegexFullMatch", "StaticRegexFullMatch", "file_prefix"),
        const("Const", b".part"),
        const("Const_1", suffix),
        node("Select", "Select", "StaticRegexFullMatch:output:0", "Const:output:0", "Const_1:output:0"),
        node("StringJoin", "StringJoin", prefix, "Select:output:0"),
        node("ShardedFilename", "ShardedFilename", "StringJoin:output:0", "shard:output:0", "num_shards:output:0"),
        node("SaveV2", "SaveV2", "ShardedFilename:filename:0", "names:output:0", "slices:output:0", "t"),
        node("Pack", "Pack", "ShardedFilename:filename:0", "^SaveV2"),
        node("Merge", "MergeV2Checkpoints", "Pack:output:0", "file_prefix"),
        *extra,
        args=["file_prefix", "t"],
    )


def restore_function(prefix: str = "file_prefix") -> bytes:
    return function(
        "__inference__traced_restore_9",
        node("RestoreV2", "RestoreV2", prefix, "names:output:0", "slices:output:0"),
        args=["file_prefix"],
    )


SAVE, RESTORE = save_function(), restore_function()
SAVER_NODES = [node("saver_filename", "Placeholder"), call("Save", "__inference__traced_save_9", "saver_filename"),
               call("Restore", "__inference__traced_restore_9", "saver_filename")]  # fmt: skip


def findings(scan_data: ScanData, data: bytes) -> list[tuple[str, str]]:
    result = scan_data(data, "saved_model.pb")
    assert result.format == "savedmodel"
    return [(f.rule_id, f.details.get("op", "")) for f in result.findings]


def test_generated_save_and_restore_functions_are_exempt(scan_data: ScanData) -> None:
    data = saved_model(SAVER_NODES, [SAVE, RESTORE], saver=("Save:0", "Restore"))
    assert findings(scan_data, data) == []


def test_the_exemption_is_not_by_function_name(scan_data: ScanData) -> None:
    data = saved_model(SAVER_NODES, [SAVE, RESTORE], saver=None)  # no saver_def: nothing is the saver
    assert findings(scan_data, data) == [
        ("TFO003", "SaveV2"),
        ("TFO003", "MergeV2Checkpoints"),
        ("TFO002", "RestoreV2"),
    ]


def test_save_function_also_called_by_serving_is_not_exempt(scan_data: ScanData) -> None:
    serve = call("serve", "__inference__traced_save_9", "saver_filename")
    data = saved_model([*SAVER_NODES, serve], [SAVE, RESTORE], saver=("Save:0", "Restore"))
    assert findings(scan_data, data) == [("TFO003", "SaveV2"), ("TFO003", "MergeV2Checkpoints")]


def test_only_checkpoint_ops_are_exempt_in_the_save_function(scan_data: ScanData) -> None:
    save = save_function(node("w", "WriteFile"))
    data = saved_model(SAVER_NODES, [save, RESTORE], saver=("Save:0", "Restore"))
    assert findings(scan_data, data) == [("TFO003", "WriteFile")]


def _saver_model(
    save: bytes = SAVE, restore: bytes = RESTORE, nodes: Sequence[bytes] = SAVER_NODES, restore_op: str = "Restore"
) -> bytes:
    return saved_model(nodes, [save, restore], saver=("Save:0", restore_op))


def _unfed(scan_data: ScanData, data: bytes) -> list[tuple[str, str, Severity]]:
    result = scan_data(data, "saved_model.pb")
    assert all("the filename the loader feeds" in f.evidence for f in result.findings)
    return [(f.rule_id, f.details["op"], f.level) for f in result.findings]


SAVE_V2_HIGH = [("TFO003", "SaveV2", Severity.HIGH), ("TFO003", "MergeV2Checkpoints", Severity.HIGH)]
RESTORE_V2_HIGH = ("TFO002", "RestoreV2", Severity.HIGH)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(_saver_model(restore=restore_function("path")), [RESTORE_V2_HIGH], id="restore-unknown-path"),
        pytest.param(
            _saver_model(save=save_function(const("path", b"/home/u/.bashrc"), prefix="path")),
            SAVE_V2_HIGH,
            id="save-to-constant-path",
        ),
        pytest.param(_saver_model(save=save_function(suffix=b"/../../../.ssh/x")), SAVE_V2_HIGH, id="climbing-suffix"),
        pytest.param(
            _saver_model(
                save=save_function(
                    const("root", b"/etc/"), node("Join2", "StringJoin", "root:output:0", "file_prefix"), prefix="Join2"
                )
            ),
            SAVE_V2_HIGH,
            id="constant-before-the-fed-path",
        ),
        pytest.param(
            _saver_model(
                restore=function(
                    "__inference__traced_restore_9",
                    const("evil", b"/etc/model"),
                    node("pick", "SelectV2", "c", "file_prefix", "evil:output:0"),
                    node("RestoreV2", "RestoreV2", "pick:output:0", "n", "s"),
                    args=["file_prefix"],
                )
            ),
            [RESTORE_V2_HIGH],
            id="select-between-fed-and-constant",
        ),
        pytest.param(
            _saver_model(
                restore=function(
                    "__inference__traced_restore_9",
                    const("evil", b"/etc/model"),
                    node("both", "IdentityN", "file_prefix", "evil:output:0"),
                    node("RestoreV2", "RestoreV2", "both:output:1", "n", "s"),
                    args=["file_prefix"],
                )
            ),
            [RESTORE_V2_HIGH],
            id="identity-n-other-output",
        ),
        pytest.param(
            _saver_model(
                nodes=[
                    node("saver_filename", "Placeholder"),
                    const("elsewhere", b"/etc/model"),
                    call("Save", "__inference__traced_save_9", "saver_filename"),
                    call("Restore", "__inference__traced_restore_9", "elsewhere"),
                ]
            ),
            [RESTORE_V2_HIGH],
            id="restore-function-called-with-a-constant",
        ),
        pytest.param(
            _saver_model(
                nodes=[
                    *SAVER_NODES,
                    const("elsewhere", b"/etc/model"),
                    call("Restore_again", "__inference__traced_restore_9", "elsewhere"),
                    node("restore_all", "NoOp", "^Restore", "^Restore_again"),
                ],
                restore_op="restore_all",
            ),
            [RESTORE_V2_HIGH],
            id="one-of-two-calls-passes-a-constant",
        ),
    ],
)
def test_checkpoint_ops_of_the_saver_must_use_the_fed_filename(
    scan_data: ScanData, data: bytes, expected: list[tuple[str, str, Severity]]
) -> None:
    """A checkpoint op is exempt only if its path is built from `filename_tensor_name` the way a
    Saver builds it (pass-throughs, `_temp/part` suffix, shard name); anything else is judged."""
    assert _unfed(scan_data, data) == expected


def test_a_saver_definition_without_a_filename_exempts_nothing(scan_data: ScanData) -> None:
    saver = pb_msg(3, pb_msg(2, b"Save:0") + pb_msg(3, b"Restore"))
    graph = b"".join(pb_msg(1, n) for n in SAVER_NODES) + pb_msg(2, SAVE + RESTORE)
    data = pb_int(1, 1) + pb_msg(2, pb_msg(1, pb_msg(4, b"serve")) + pb_msg(2, graph) + saver)
    assert {op for _, op, _ in _unfed(scan_data, data)} == {"SaveV2", "MergeV2Checkpoints", "RestoreV2"}


def test_the_fed_filename_through_pass_throughs_and_registered_saver_suffixes_is_exempt(scan_data: ScanData) -> None:
    """Registered savers append `-<name>` (functional_saver.registered_saver_filename); Windows
    writers normalise the suffix to `_temp\\part`; both are still the fed path."""
    save = save_function(suffix=b"_temp\\part")
    restore = function(
        "__inference__traced_restore_9",
        const("dash", b"-my_saver"),
        node("p", "Identity", "file_prefix"),
        node("j", "StringJoin", "p:output:0", "dash:output:0"),
        node("RestoreV2", "RestoreV2", "j:output:0", "n", "s"),
        args=["file_prefix"],
    )
    assert findings(scan_data, _saver_model(save=save, restore=restore)) == []


def test_saver_reachability_in_a_tf1_graph() -> None:
    def n(name: str, op: str, *inputs: str) -> Node:
        return Node(name, op, list(inputs), [], {})

    graph = [
        n("x", "Placeholder"),
        n("w", "VarHandleOp"),
        n("y", "MatMul", "x", "w"),
        n("save/SaveV2", "SaveV2", "w"),
        n("save/Identity", "Identity", "save/SaveV2"),
        n("save/RestoreV2", "RestoreV2"),
        n("save/restore_all", "NoOp", "save/RestoreV2"),
        n("leak", "Identity", "save/RestoreV2"),  # a serving path through the restore op
    ]
    meta = MetaGraph(graph, {}, set(), ["save/Identity", "save/restore_all"])
    nodes, functions = saver_only(meta)
    assert nodes == {"save/SaveV2", "save/Identity", "save/restore_all"}
    assert functions == set()


def test_library_function_calls_are_not_custom_ops(scan_data: ScanData) -> None:
    helper = function("my_helper", node("a", "Relu"))
    data = saved_model([node("c", "my_helper"), node("d", "MadeUpOp")], [helper])
    assert findings(scan_data, data) == [("TFO005", "MadeUpOp")]


@pytest.mark.parametrize(
    ("op", "key", "value", "expected"),
    [
        ("DebugIdentityV2", "debug_urls", b"grpc://evil:6064", "TFO004"),
        ("ImmutableConst", "memory_region_name", b"/etc/shadow", "TFO002"),
        ("PrintV2", "output_stream", b"file:///home/u/.bashrc", "TFO003"),
        ("PrintV2", "output_stream", b"stderr", None),
        ("DecodeProtoV2", "descriptor_source", b"/tmp/descriptor.bin", "TFO002"),
        ("DecodeProtoV2", "descriptor_source", b"local://", None),
    ],
)
def test_ops_judged_with_their_attributes(
    scan_data: ScanData, op: str, key: str, value: bytes, expected: str | None
) -> None:
    attrs = attr(key, pb_msg(1, pb_msg(2, value))) if key == "debug_urls" else attr(key, pb_msg(2, value))
    result = scan_data(saved_model([], [function("f", node("n", op, attrs=attrs))]), "saved_model.pb")
    assert [f.rule_id for f in result.findings] == ([expected] if expected else [])
    if expected:
        assert value.decode() in result.findings[0].evidence


def test_ops_in_every_meta_graph_are_judged(scan_data: ScanData) -> None:
    first = saved_model([node("a", "Placeholder")])
    second = pb_msg(2, pb_msg(2, pb_msg(1, node("r", "ReadFile"))))
    result = scan_data(first + second, "saved_model.pb")
    [finding] = result.findings
    assert finding.details["places"] == ["meta graph 1: graph"]


# -- hostile input -----------------------------------------------------------------------------------------


def test_many_nodes_are_summarised_in_one_finding(scan_data: ScanData) -> None:
    data = saved_model([node(f"r{i}", "ReadFile") for i in range(50_000)])
    result = scan_data(data, "saved_model.pb")
    [finding] = result.findings
    assert finding.details["uses"] == 50_000
    assert "and elsewhere" not in finding.evidence  # every use is in the one graph


@pytest.mark.parametrize(("depth", "expected"), [(3, []), (50, ["SCN003"])])
def test_deeply_nested_attribute_functions_fail_closed(scan_data: ScanData, depth: int, expected: list[str]) -> None:
    value = pb_msg(10, pb_msg(1, b"f"))
    for _ in range(depth):  # AttrValue.func -> NameAttrList.attr{key, value: AttrValue}
        value = pb_msg(10, pb_msg(1, b"f") + pb_msg(2, pb_msg(1, b"x") + pb_msg(2, value)))
    data = saved_model([node("n", "PartitionedCall", attrs=attr("f", value))], [function("f", node("a", "Relu"))])
    assert [f.rule_id for f in scan_data(data, "saved_model.pb").findings] == expected


def test_malformed_wire_format_fails_closed(scan_data: ScanData) -> None:
    bad_node = pb_msg(2, b"ReadFile") + b"\x0f"  # wire type 7 does not exist
    data = pb_int(1, 1) + pb_msg(2, pb_msg(2, pb_msg(1, bad_node)))
    result = scan_data(data, "saved_model.pb")
    assert result.format == "savedmodel"
    assert [f.rule_id for f in result.findings] == ["SCN003"]


def test_a_known_field_with_another_wire_type_is_skipped_as_the_parser_skips_it(scan_data: ScanData) -> None:
    """protobuf treats NodeDef.op sent as a varint as an unknown field and keeps the real op."""
    data = saved_model([pb_msg(1, b"r") + pb_int(2, 7) + pb_msg(2, b"ReadFile")])
    assert findings(scan_data, data) == [("TFO002", "ReadFile")]


# -- text format ---------------------------------------------------------------------------------------------

PBTXT = b"""saved_model_schema_version: 1
meta_graphs {
  # a comment
  graph_def {
    node { name: "x" op: "Placeholder" attr { key: "dtype" value { type: DT_FLOAT } } }
    library {
      function {
        signature { name: "serve" input_arg { name: "x" type: DT_STRING } }
        node_def { name: "r" op: 'Read\\x46ile' input: ["x", "^y"] }
      }
    }
  }
  object_graph_def { nodes { [type.googleapis.com/x.Y] { a: 1 } } }
}
"""


def test_text_format_saved_model(scan_data: ScanData) -> None:
    result = scan_data(PBTXT, "saved_model.pbtxt")
    assert result.format == "savedmodel"
    [finding] = result.findings
    assert (finding.rule_id, finding.details["op"], finding.details["places"]) == (
        "TFO002",
        "ReadFile",
        ["function serve"],
    )


@pytest.mark.parametrize("cut", [b"}\n}\n", b"{", b"library {\n"])
def test_malformed_text_fails_closed(scan_data: ScanData, cut: bytes) -> None:
    data = PBTXT.replace(cut, b"", 1) if cut != b"{" else PBTXT + b"node {"
    result = scan_data(data, "saved_model.pbtxt")
    assert [f.rule_id for f in result.findings] == ["SCN003"]


def test_text_that_merely_mentions_meta_graphs_is_not_claimed(scan_data: ScanData) -> None:
    result = scan_data(b"notes about meta_graphs { and such }", "notes.txt")
    assert result.format != "savedmodel"


def test_detection_does_not_decode_a_stream_whose_head_rules_out_savedmodel(unsized_stream: UnsizedStream) -> None:
    """Asking a decoded stream for its size decodes all of it: the head must rule such data out first."""
    assert not savedmodel.SavedModelHandler().detect(unsized_stream(b"\x08\x00" + bytes(range(256)) * 64))


# -- recognised by what the loader parses, not by what writers emit ------------------------------------


def _real_pb(name: str) -> bytes:
    data = (FIXTURES / name / "saved_model.pb").read_bytes()
    assert data[:2] == b"\x08\x01"  # TensorFlow writes the schema version first
    return data


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: d[2:], id="no-schema-version"),
        pytest.param(lambda d: d[2:] + d[:2], id="schema-version-last"),
        # `SavedModel.ParseFromString` skips unknown fields and groups (checked with TensorFlow 2.21)
        pytest.param(lambda d: b"\x1b\x08\x01\x1c" + b"\x2a\x01A" + d, id="unknown-group-and-field-first"),
    ],
)
def test_saved_model_recognised_by_the_structure_the_loader_parses(
    scan_data: ScanData, edit: Callable[[bytes], bytes]
) -> None:
    result = scan_data(edit(_real_pb("savedmodel_read_file")), "saved_model.pb")
    assert result.format == "savedmodel"
    assert [(f.rule_id, f.details["op"]) for f in result.findings] == [("TFO002", "ReadFile")]


def test_a_repeated_singular_field_is_read_as_the_parser_reads_it(scan_data: ScanData) -> None:
    """NodeDef.op written twice: protobuf keeps the last, so TensorFlow runs ReadFile."""
    decoy = pb_msg(1, b"r") + pb_msg(2, b"Identity") + pb_msg(2, b"ReadFile")
    assert findings(scan_data, saved_model([decoy])) == [("TFO002", "ReadFile")]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(pb_msg(1, pb_msg(2, b"Const")), id="frozen-graphdef"),
        pytest.param(pb_int(1, 8) + pb_msg(2, b"pytorch") + pb_msg(7, pb_msg(1, b"")), id="onnx-head"),
        pytest.param(pb_int(1, 1) + pb_int(2, 5) + pb_int(3, 6), id="fingerprint"),
        pytest.param(pb_int(1, 1) + pb_msg(2, pb_msg(4, b"serve")), id="meta-graph-without-graph"),
    ],
)
def test_other_protobufs_are_not_saved_models(data: bytes) -> None:
    assert savedmodel.count_meta_graphs(BytesSource(data)) is None


def test_a_flood_of_unknown_top_level_fields_fails_closed(scan_data: ScanData) -> None:
    data = pb_int(3, 0) * savedmodel.MAX_FIELDS + saved_model([node("r", "ReadFile")])
    result = scan_data(data, "saved_model.pb")
    assert (result.format, [f.rule_id for f in result.findings]) == ("savedmodel", ["SCN005"])


@pytest.mark.parametrize("start", [b"meta_graphs: {", b"saved_model_schema_version: 1;\n# c\nmeta_graphs {"])
def test_text_format_spellings_the_parser_accepts(scan_data: ScanData, start: bytes) -> None:
    data = start + PBTXT.split(b"meta_graphs {", 1)[1]
    result = scan_data(data, "saved_model.pbtxt")
    assert [f.rule_id for f in result.findings] == ["TFO002"]


# -- reachability: what the loader can run ------------------------------------------------------------


def levels(results: list[FileResult]) -> list[tuple[str, str, Severity]]:
    return [(f.rule_id, f.details["op"], f.level) for r in results for f in r.findings]


def test_estimator_export_with_uncalled_traced_save_and_restore_passes() -> None:
    """TF 2 Estimator layout (scripts/make_tf_fixtures.py): a TF1 graph with its Saver and traced
    `__inference__traced_save/restore` functions nothing calls: information, not a threat."""
    found = levels(scan_dir("savedmodel_estimator_tf2"))
    assert {op for _, op, _ in found} == {"SaveV2", "MergeV2Checkpoints", "RestoreV2"}
    assert {level for _, _, level in found} == {Severity.INFO}


def test_an_uncalled_function_is_information_whatever_it_does() -> None:
    [read] = [
        f
        for r in scan_dir("savedmodel_estimator_unused_read_file")
        for f in r.findings
        if f.details["op"] == "ReadFile"
    ]
    assert read.level is Severity.INFO
    assert "unreachable" in read.evidence


HOSTILE = function("helper", node("r", "ReadFile"))


def test_a_function_a_graph_node_calls_keeps_full_scrutiny(scan_data: ScanData) -> None:
    result = scan_data(saved_model([call("c", "helper")], [HOSTILE]), "saved_model.pb")
    assert [(f.rule_id, f.level) for f in result.findings] == [("TFO002", Severity.HIGH)]


def test_a_function_the_object_graph_exposes_keeps_full_scrutiny(scan_data: ScanData) -> None:
    objects = pb_msg(7, pb_msg(1, pb_msg(6, pb_msg(1, b"helper"))))  # SavedObject.function.concrete_functions
    meta = pb_msg(1, pb_msg(4, b"serve")) + pb_msg(2, pb_msg(2, HOSTILE)) + objects
    data = pb_int(1, 1) + pb_msg(2, meta)
    result = scan_data(data, "saved_model.pb")
    assert [(f.rule_id, f.level) for f in result.findings] == [("TFO002", Severity.HIGH)]


def test_a_swappable_implementation_keeps_full_scrutiny(scan_data: ScanData) -> None:
    """Grappler's implementation selector may run an uncalled function with the same `api_implements`."""
    swappable = pb_msg(
        1,
        pb_msg(1, pb_msg(1, b"helper")) + pb_msg(3, node("r", "ReadFile")) + attr("api_implements", pb_msg(2, b"lstm")),
    )
    result = scan_data(saved_model([], [swappable]), "saved_model.pb")
    assert [(f.rule_id, f.level) for f in result.findings] == [("TFO002", Severity.HIGH)]


def test_an_unreferenced_function_is_information(scan_data: ScanData) -> None:
    result = scan_data(saved_model([], [HOSTILE]), "saved_model.pb")
    assert [(f.rule_id, f.level) for f in result.findings] == [("TFO002", Severity.INFO)]


# -- TF1 checkpoint .meta files ---------------------------------------------------------------------------


def test_tf1_checkpoint_meta_is_a_model_and_its_saver_is_exempt() -> None:
    [result] = modelshield.scan(FIXTURES / "model.ckpt.meta").files
    assert (result.format, result.findings) == ("tf-meta-graph", [])


def test_tf1_checkpoint_meta_graph_is_judged(scan_data: ScanData) -> None:
    data = (FIXTURES / "read_file.ckpt.meta").read_bytes()
    result = scan_data(data, "model.ckpt-1000.meta")
    assert result.format == "tf-meta-graph"
    assert [(f.rule_id, f.details["op"], f.level) for f in result.findings] == [("TFO002", "ReadFile", Severity.HIGH)]


def test_a_meta_graph_function_library_and_saver_are_judged_like_a_saved_model(scan_data: ScanData) -> None:
    graph = b"".join(pb_msg(1, n) for n in [*SAVER_NODES, call("c", "helper")]) + pb_msg(2, SAVE + RESTORE + HOSTILE)
    saver = pb_msg(3, pb_msg(1, b"saver_filename:0") + pb_msg(2, b"Save:0") + pb_msg(3, b"Restore"))
    result = scan_data(pb_msg(1, pb_msg(4, b"serve")) + pb_msg(2, graph) + saver, "model.meta")
    assert result.format == "tf-meta-graph"
    assert [(f.rule_id, f.details["op"]) for f in result.findings] == [("TFO002", "ReadFile")]


@pytest.mark.parametrize("name", ["savedmodel_module", "savedmodel_tf1", "savedmodel_estimator_tf2"])
def test_saved_models_are_not_meta_graphs(name: str) -> None:
    assert not savedmodel.is_meta_graph_def(BytesSource((FIXTURES / name / "saved_model.pb").read_bytes()))


# -- frozen GraphDefs -----------------------------------------------------------------------------------


def test_frozen_graph_is_a_model_and_judged() -> None:
    [clean] = modelshield.scan(FIXTURES / "frozen_graph.pb").files
    assert (clean.format, clean.findings) == ("tf-graph", [])
    [hostile] = modelshield.scan(FIXTURES / "frozen_graph_read_file.pb").files
    assert levels([hostile]) == [("TFO002", "ReadFile", Severity.HIGH)]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x0a\x0cVGG_ILSVRC16" + pb_msg(100, b""), id="caffe-net-name"),
        pytest.param(pb_msg(1, pb_msg(1, b"\xe2\x96\x81the") + b"\x15\x00\x00\x80\xbf"), id="sentencepiece"),
        pytest.param(pb_msg(1, pb_int(2, 3) + pb_msg(4, b"_tf_keras_layer")), id="keras-metadata"),
    ],
)
def test_other_protobufs_are_not_graphs(data: bytes) -> None:
    assert not savedmodel.is_graph_def(BytesSource(data))


def test_text_meta_graph_and_text_graph_are_judged() -> None:
    """`export_meta_graph(as_text=True)` and `tf.io.write_graph(as_text=True)` of a TF1 training graph:
    the .meta has its saver definition (only ReadFile); the bare graph does not, so the Saver's own
    checkpoint nodes are medium, with the reason, and ReadFile stays high."""
    [meta] = modelshield.scan(FIXTURES / "read_file_text.ckpt.meta").files
    assert (meta.format, levels([meta])) == ("tf-meta-graph", [("TFO002", "ReadFile", Severity.HIGH)])
    [graph] = modelshield.scan(FIXTURES / "read_file_text.ckpt.graph.pbtxt").files
    assert graph.format == "tf-graph"
    assert sorted(levels([graph])) == [
        ("TFO002", "ReadFile", Severity.HIGH),
        ("TFO002", "RestoreV2", Severity.MEDIUM),
        ("TFO003", "SaveV2", Severity.MEDIUM),
    ]
    assert all("no saver definition" in f.evidence for f in graph.findings if f.level is Severity.MEDIUM)


def test_mediapipe_graph_text_is_not_a_tensorflow_graph(scan_data: ScanData) -> None:
    text = b'input_stream: "in"\nnode {\n  calculator: "PassThroughCalculator"\n  input_stream: "in"\n}\n'
    assert scan_data(text[text.index(b"node") :], "graph.pbtxt").format == "text"


# -- assets ------------------------------------------------------------------------------------------------


def _with_assets(*entries: bytes) -> bytes:
    meta = pb_msg(1, pb_msg(4, b"serve")) + pb_msg(2, pb_msg(1, node("x", "Placeholder"))) + b"".join(entries)
    return pb_int(1, 1) + pb_msg(2, meta)


def asset_file_def(filename: bytes) -> bytes:
    return pb_msg(6, pb_msg(1, pb_msg(1, b"Const:0")) + pb_msg(2, filename))


def legacy_assets_collection(
    filename: bytes, type_url: bytes = b"type.googleapis.com/tensorflow.AssetFileDef"
) -> bytes:
    packed = pb_msg(1, type_url) + pb_msg(2, pb_msg(1, pb_msg(1, b"Const:0")) + pb_msg(2, filename))
    return pb_msg(4, pb_msg(1, b"saved_model_assets") + pb_msg(2, pb_msg(5, pb_msg(1, packed))))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(_with_assets(asset_file_def(b"vocab.txt")), [], id="plain-name"),
        pytest.param(_with_assets(asset_file_def(b"sub/vocab.txt")), [], id="sub-folder"),
        pytest.param(_with_assets(asset_file_def(b"../../../../etc/passwd")), ["TFM001"], id="climbs-out"),
        pytest.param(_with_assets(asset_file_def(b"/home/u/.aws/credentials")), ["TFM001"], id="absolute"),
        pytest.param(_with_assets(legacy_assets_collection(b"../secret")), ["TFM001"], id="tf1-collection"),
        pytest.param(_with_assets(legacy_assets_collection(b"../secret", b"x/other.Type")), [], id="other-any-type"),
    ],
)
def test_asset_names_that_leave_the_export_folder(scan_data: ScanData, data: bytes, expected: list[str]) -> None:
    result = scan_data(data, "saved_model.pb")
    assert [f.rule_id for f in result.findings] == expected


def test_text_format_asset_names_are_judged(scan_data: ScanData) -> None:
    text = PBTXT.replace(
        b"  object_graph_def",
        b'  asset_file_def { tensor_info { name: "c:0" } filename: "/etc/passwd" }\n'
        b'  collection_def { key: "saved_model_assets" value { any_list { value {\n'
        b'    [type.googleapis.com/tensorflow.AssetFileDef] { filename: "../x" } } } } }\n  object_graph_def',
    )
    result = scan_data(text, "saved_model.pbtxt")
    assert sorted(f.details.get("asset", "") for f in result.findings if f.rule_id == "TFM001") == [
        "../x",
        "/etc/passwd",
    ]


def test_real_asset_vocabulary_names_stay_quiet_and_an_escaping_one_is_reported() -> None:
    """A `tf.saved_model.Asset` vocabulary (scripts/make_tf_fixtures.py), then the same export with its
    asset_file_def renamed: TF2 `load.py` and TF1 `get_asset_tensors` join the name to assets/."""
    assert "TFM001" not in rules(scan_dir("savedmodel_asset_vocabulary"))
    [escape] = [f for r in scan_dir("savedmodel_asset_escape") for f in r.findings if f.rule_id == "TFM001"]
    assert (escape.level, escape.details["asset"]) == (Severity.HIGH, "../../../../../etc/passwd")


@pytest.mark.parametrize(
    ("name", "place"),
    [
        ("savedmodel_tf1_restore_constant_path", "graph"),
        ("savedmodel_restore_constant_path", "function __inference__traced_restore_65"),
    ],
)
def test_real_saver_restoring_from_a_constant_path_is_reported(name: str, place: str) -> None:
    """The TF1 loader (and TensorFlow Serving) runs `restore_op_name` with the variables path fed to
    `filename_tensor_name`; these exports' RestoreV2 reads a constant path instead."""
    [finding] = [f for r in scan_dir(name) for f in r.findings]
    assert (finding.rule_id, finding.details["op"], finding.level) == ("TFO002", "RestoreV2", Severity.HIGH)
    assert finding.details["places"] == [f"{place} ({savedmodel._UNFED})"]


# -- a frozen graph of custom ops only is still a graph ------------------------------------------------------


VERSIONS = pb_msg(4, pb_int(1, 1882) + pb_int(2, 12))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            pb_msg(1, node("in", "MyInput")) + pb_msg(1, node("out", "MyKernel", "in")) + VERSIONS,
            ["TFO005", "TFO005"],
            id="custom-ops-only",
        ),
        pytest.param(
            pb_msg(1, node("in", "MyInput", attrs=attr("T", pb_int(6, 1)))) + VERSIONS + pb_int(3, 7),
            ["TFO005"],
            id="with-attributes-and-old-version",
        ),
    ],
)
def test_a_frozen_graph_of_custom_ops_is_recognised_by_structure(
    scan_data: ScanData, data: bytes, expected: list[str]
) -> None:
    result = scan_data(data, "frozen.pb")
    assert (result.format, [f.rule_id for f in result.findings]) == ("tf-graph", expected)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(pb_msg(1, node("in", "MyInput")), id="no-versions"),
        pytest.param(pb_msg(1, node("in", "MyInput")) + pb_msg(4, pb_msg(1, b"x")), id="versions-not-a-version-def"),
        pytest.param(pb_msg(1, node("in", "MyInput") + pb_int(9, 1)) + VERSIONS, id="not-a-node-def-field"),
        pytest.param(pb_msg(1, node("in", "My Input")) + VERSIONS, id="op-name-with-a-space"),
        pytest.param(pb_msg(1, node("in", "MyInput")) + VERSIONS + pb_msg(7, b"x"), id="unknown-graph-field"),
        # MediaPipe CalculatorGraphConfig: node {name, calculator, input_stream, output_stream}, field 10
        pytest.param(
            pb_msg(1, pb_msg(1, b"n") + pb_msg(2, b"PassThroughCalculator") + pb_msg(3, b"in") + pb_msg(4, b"out"))
            + pb_msg(10, b"in"),
            id="mediapipe-binary-graph",
        ),
    ],
)
def test_protobufs_that_only_resemble_a_graph_of_custom_ops_are_not_graphs(data: bytes) -> None:
    assert not savedmodel.is_graph_def(BytesSource(data))


def test_real_frozen_graph_with_every_op_renamed_is_still_judged() -> None:
    """scripts/make_tf_fixtures.py renames every op of a real frozen graph to a custom name."""
    [result] = modelshield.scan(FIXTURES / "frozen_graph_custom_ops.pb").files
    assert result.format == "tf-graph"
    assert {f.rule_id for f in result.findings} == {"TFO005"}


# -- ops that run other functions: every way an attribute can name one ---------------------------------------


def func(name: str, *bound: tuple[str, bytes]) -> bytes:
    """AttrValue.func: a NameAttrList, optionally binding attributes of the called function."""
    bindings = b"".join(pb_msg(2, pb_msg(1, k.encode()) + pb_msg(2, v)) for k, v in bound)
    return pb_msg(10, pb_msg(1, name.encode()) + bindings)


def func_list(*names: str) -> bytes:
    """AttrValue.list.func: a list of NameAttrLists (Case branches, XlaCallModule function_list)."""
    return pb_msg(1, b"".join(pb_msg(9, pb_msg(1, n.encode())) for n in names))


@pytest.mark.parametrize(
    "caller",
    [
        pytest.param(node("c", "StatefulPartitionedCall", attrs=attr("f", func("helper"))), id="partitioned-call"),
        pytest.param(node("c", "helper"), id="direct-call"),
        pytest.param(
            node("c", "If", attrs=attr("then_branch", func("g")) + attr("else_branch", func("helper"))), id="if"
        ),
        pytest.param(node("c", "While", attrs=attr("cond", func("g")) + attr("body", func("helper"))), id="while"),
        pytest.param(node("c", "Case", attrs=attr("branches", func_list("g", "helper"))), id="case-list-func"),
        pytest.param(node("c", "BatchFunction", attrs=attr("f", func("helper"))), id="batch-function"),
        pytest.param(node("c", "MapDataset", attrs=attr("f", func("helper"))), id="dataset-map"),
        pytest.param(node("c", "XlaCallModule", attrs=attr("function_list", func_list("helper"))), id="xla-module"),
        pytest.param(
            node("c", "PartitionedCall", attrs=attr("f", func("g", ("body", func("helper"))))),
            id="function-bound-in-a-call",
        ),
    ],
)
def test_functions_named_by_any_attribute_kind_are_judged_as_called(scan_data: ScanData, caller: bytes) -> None:
    """TensorFlow calls functions named by `func` and `list(func)` attributes, nested NameAttrList
    bindings included (a function attribute bound at the call site): each keeps full scrutiny."""
    g = function("g", node("p", "PartitionedCall", attrs=attr("f", pb_msg(9, b"body"))))  # `placeholder: body`
    result = scan_data(saved_model([caller], [HOSTILE, g]), "saved_model.pb")
    assert [(f.rule_id, f.level) for f in result.findings] == [("TFO002", Severity.HIGH)]


def test_a_custom_gradient_function_keeps_full_scrutiny(scan_data: ScanData) -> None:
    """FunctionDefLibrary.registered_gradients: load.py registers them for their op type, so any
    gradient through such an op runs them (fine-tuning a loaded model does)."""
    registered = pb_msg(3, pb_msg(1, b"helper") + pb_msg(2, b"CustomGradient-42"))
    graph = pb_msg(2, HOSTILE + registered)
    data = pb_int(1, 1) + pb_msg(2, pb_msg(1, pb_msg(4, b"serve")) + pb_msg(2, graph))
    result = scan_data(data, "saved_model.pb")
    assert [(f.rule_id, f.level) for f in result.findings] == [("TFO002", Severity.HIGH)]


def test_a_dataset_graph_decoded_at_run_time_is_reported(scan_data: ScanData) -> None:
    inner = pb_msg(1, node("r", "TFRecordDatasetV2", "path"))
    serving = function("serve", const("g", inner), node("d", "DatasetFromGraph", "g:output:0"))
    result = scan_data(saved_model([call("c", "serve")], [serving]), "saved_model.pb")
    assert [(f.rule_id, f.details["op"], f.level) for f in result.findings] == [
        ("TFO006", "DatasetFromGraph", Severity.HIGH)
    ]


@pytest.mark.parametrize(
    "leading",
    [
        pytest.param([node(f"c{i}", "MyKernel") for i in range(40)], id="many-custom-ops-first"),
        pytest.param([node(f"c{i}", "helper_fn") for i in range(40)], id="many-library-calls-first"),
    ],
)
def test_a_graph_is_recognised_whatever_its_first_nodes_are(scan_data: ScanData, leading: list[bytes]) -> None:
    """Red team: a bare GraphDef (no `versions`) whose first dozens of nodes are custom ops or calls
    of its own library functions, with ReadFile after them, is still a graph to import_graph_def."""
    helper = function("helper_fn", node("a", "Relu"))
    data = b"".join(pb_msg(1, n) for n in [*leading, node("r", "ReadFile")]) + pb_msg(2, helper)
    result = scan_data(data, "frozen.pb")
    assert result.format == "tf-graph"
    assert ("TFO002", "ReadFile") in [(f.rule_id, f.details["op"]) for f in result.findings]


@pytest.mark.parametrize(("depth", "reported"), [(2, False), (savedmodel._MAX_ROUNDS + 4, True)])
def test_the_fed_filename_is_followed_down_a_bounded_chain_of_saver_functions(
    scan_data: ScanData, depth: int, reported: bool
) -> None:
    """Each level of saver functions calling the next costs a round; past the bound the path is not
    taken for the fed one (reported, never silently exempt)."""
    chain = [function(f"f{i}", call("c", f"f{i + 1}", "file_prefix"), args=["file_prefix"]) for i in range(depth - 1)]
    chain.append(
        function(f"f{depth - 1}", node("RestoreV2", "RestoreV2", "file_prefix", "n", "s"), args=["file_prefix"])
    )
    nodes = [node("saver_filename", "Placeholder"), call("Restore", "f0", "saver_filename")]
    result = scan_data(saved_model(nodes, chain, saver=("Restore:0", "Restore")), "saved_model.pb")
    assert [f.details["op"] for f in result.findings] == (["RestoreV2"] if reported else [])


@pytest.mark.parametrize(
    ("path", "shown"),
    [(b"/etc/passwd", "/etc/passwd"), (b"/etc/" + b"./" * 300 + b"passwd", "(a long constant)")],
)
def test_a_table_filled_from_a_constant_path_is_high(scan_data: ScanData, path: bytes, shown: str) -> None:
    """Red team: `InitializeTableFromTextFileV2` is low when it reads what the loader feeds (an asset),
    but a constant file name fills the vocabulary from that file on the serving host: every line of
    `/etc/passwd` becomes a key the serving function can look up and return."""
    serving = function(
        "serve",
        const("p", path),
        node("t", "HashTableV2"),
        node("i", "InitializeTableFromTextFileV2", "t:table_handle:0", "p:output:0"),
    )
    result = scan_data(saved_model([call("c", "serve")], [serving]), "saved_model.pb")
    [finding] = result.findings
    assert (finding.rule_id, finding.level) == ("TFO002", Severity.HIGH)
    assert shown in finding.evidence and "not an asset path" in finding.evidence


def test_a_table_filled_from_an_asset_stays_low() -> None:
    """The real vocabulary export: the path comes in as the initializer's argument (the asset)."""
    found = [f for r in scan_dir("savedmodel_asset_vocabulary") for f in r.findings]
    assert [(f.rule_id, f.details["op"], f.level) for f in found] == [
        ("TFO002", "InitializeTableFromTextFileV2", Severity.LOW)
    ]
