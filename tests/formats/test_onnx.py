"""ONNX analysis: real models (onnx.helper, torch.onnx.export) are clean; custom operators, unknown
operators and hostile external-data references are findings; malformed and oversized files fail closed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from modelshield import FileResult, Policy, scan_file
from modelshield.core.limits import Limits
from modelshield.core.paths import escape_reason
from modelshield.core.rules import Severity
from modelshield.formats.onnx import model as onnx_format
from tests.conftest import ScanData, UnsizedStream
from tests.helpers import evil_pickle, is_code_execution

FLOAT = TensorProto.FLOAT


def rule_ids(result: FileResult) -> list[str]:
    return sorted(f.rule_id for f in result.findings)


def graph(
    nodes: list[onnx.NodeProto], name: str = "g", initializers: list[TensorProto] | None = None
) -> onnx.GraphProto:
    return helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", FLOAT, [2])],
        [helper.make_tensor_value_info("y", FLOAT, [2])],
        initializer=initializers or [],
    )


def model(nodes: list[onnx.NodeProto], **kwargs: object) -> onnx.ModelProto:
    opsets = [helper.make_opsetid("", 17), *kwargs.pop("opsets", [])]  # type: ignore[misc]
    return helper.make_model(
        graph(nodes, initializers=kwargs.pop("initializers", None)), opset_imports=opsets, **kwargs
    )  # type: ignore[arg-type]


def save(m: onnx.ModelProto, folder: Path, name: str = "model.onnx") -> Path:
    path = folder / name
    path.write_bytes(m.SerializeToString())
    return path


def control_flow_model() -> onnx.ModelProto:
    """If with two branches, a Loop body containing a Scan, and a model-local function."""
    then_branch = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t"])], "then", [], [helper.make_tensor_value_info("t", FLOAT, [2])]
    )
    else_branch = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e"])], "else", [], [helper.make_tensor_value_info("e", FLOAT, [2])]
    )
    scan_body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "s_x"], ["s_out"]), helper.make_node("Identity", ["s_out"], ["s_y"])],
        "scan_body",
        [helper.make_tensor_value_info("s_in", FLOAT, [2]), helper.make_tensor_value_info("s_x", FLOAT, [2])],
        [helper.make_tensor_value_info("s_out", FLOAT, [2]), helper.make_tensor_value_info("s_y", FLOAT, [2])],
    )
    loop_body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Scan", ["v_in", "v_in"], ["v_out", "scan_y"], body=scan_body, num_scan_inputs=1),
        ],
        "loop_body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", FLOAT, [2]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", FLOAT, [2]),
        ],
    )
    function = helper.make_function(
        "local.fns",
        "Swish",
        ["a"],
        ["b"],
        [helper.make_node("Sigmoid", ["a"], ["s"]), helper.make_node("Mul", ["a", "s"], ["b"])],
        [helper.make_opsetid("", 17)],
    )
    nodes = [
        helper.make_node("Constant", [], ["c"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True])),
        helper.make_node("If", ["c"], ["z"], then_branch=then_branch, else_branch=else_branch),
        helper.make_node("Constant", [], ["n"], value=helper.make_tensor("n", TensorProto.INT64, [], [2])),
        helper.make_node("Loop", ["n", "c", "z"], ["w"], body=loop_body),
        helper.make_node("Swish", ["w"], ["y"], domain="local.fns"),
    ]
    return helper.make_model(
        graph(nodes, "main"),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local.fns", 1)],
        functions=[function],
        producer_name="modelshield-tests",
    )


# -- real models stay quiet ------------------------------------------------------------------------


def test_model_with_subgraphs_and_functions_is_clean(tmp_path: Path) -> None:
    m = control_flow_model()
    onnx.checker.check_model(m)
    result = scan_file(str(save(m, tmp_path)))
    assert result.format == "onnx"
    assert result.findings == []


def test_ml_domain_and_initializers_are_clean(tmp_path: Path) -> None:
    weights = numpy_helper.from_array(np.ones(2, dtype=np.float32), "w")
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["m"]),
        helper.make_node("Normalizer", ["m"], ["y"], domain="ai.onnx.ml"),
    ]
    m = model(nodes, initializers=[weights], opsets=[helper.make_opsetid("ai.onnx.ml", 3)])
    assert scan_file(str(save(m, tmp_path))).findings == []


def test_external_data_next_to_the_model_is_clean(tmp_path: Path) -> None:
    weights = numpy_helper.from_array(np.arange(4096, dtype=np.float32), "w")
    m = model([helper.make_node("Identity", ["x"], ["y"])], initializers=[weights])
    onnx.save_model(
        m, str(tmp_path / "model.onnx"), save_as_external_data=True, location="model.onnx.data", size_threshold=0
    )
    assert (tmp_path / "model.onnx.data").stat().st_size == 4096 * 4
    result = scan_file(str(tmp_path / "model.onnx"))
    assert result.findings == []


# -- operators -------------------------------------------------------------------------------------


def test_custom_domain_is_medium_and_vendor_domain_is_info(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Decrypt", ["x"], ["a"], domain="com.example.ops"),
        helper.make_node("Decrypt", ["a"], ["b"], domain="com.example.ops"),
        helper.make_node("FusedGemm", ["b"], ["y"], domain="com.microsoft"),
    ]
    opsets = [helper.make_opsetid("com.example.ops", 1), helper.make_opsetid("com.microsoft", 1)]
    result = scan_file(str(save(model(nodes, opsets=opsets), tmp_path)))
    custom = [f for f in result.findings if f.rule_id == "ONX001"]
    vendor = [f for f in result.findings if f.rule_id == "ONX002"]
    assert len(custom) == 1 and custom[0].level is Severity.MEDIUM
    assert "2 node(s) of operator 'Decrypt' in domain 'com.example.ops'" in custom[0].evidence
    assert custom[0].details["domain"] == "com.example.ops"
    assert len(vendor) == 1 and vendor[0].level is Severity.INFO


def test_unknown_operator_in_the_default_domain(tmp_path: Path) -> None:
    nodes = [helper.make_node("Exec", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["r"], domain="ai.onnx")]
    assert rule_ids(scan_file(str(save(model(nodes), tmp_path)))) == ["ONX003"]


def test_custom_operators_are_found_in_every_subgraph_and_function(tmp_path: Path) -> None:
    m = control_flow_model()
    then_branch = next(a.g for a in m.graph.node[1].attribute if a.name == "then_branch")
    then_branch.node.append(helper.make_node("Backdoor", ["t"], ["t2"], domain="evil.ops"))
    scan_body = m.graph.node[3].attribute[0].g.node[1].attribute[0].g
    scan_body.node.extend([helper.make_node("Hidden", ["s_y"], ["h"], domain="evil.ops")] * 2)
    m.functions[0].node.append(helper.make_node("Steal", ["b"], ["q"], domain="evil.ops"))
    m.training_info.append(
        onnx.TrainingInfoProto(algorithm=graph([helper.make_node("Train", ["x"], ["y"], domain="evil.ops")]))
    )
    result = scan_file(str(save(m, tmp_path)))
    evidence = " | ".join(f.evidence for f in result.findings if f.rule_id == "ONX001")
    assert (
        "1 node(s) of operator 'Backdoor' in domain 'evil.ops'; first at graph 'main' > node 'If'.then_branch"
        in evidence
    )
    assert (
        "2 node(s) of operator 'Hidden' in domain 'evil.ops'; "
        "first at graph 'main' > node 'Loop'.body > node 'Scan'.body" in evidence
    )
    assert "'Steal'" in evidence and "function local.fns:Swish" in evidence
    assert "'Train'" in evidence and "training_info[0].algorithm" in evidence


def test_local_function_in_an_undeclared_name_is_not_a_custom_operator(tmp_path: Path) -> None:
    m = control_flow_model()
    m.graph.node[4].op_type = "NotAFunction"
    assert rule_ids(scan_file(str(save(m, tmp_path)))) == ["ONX001"]


def test_huge_graphs_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_format, "MAX_NODES", 50)
    nodes = [helper.make_node("Custom", ["x"], [f"o{i}"], domain="x.ops") for i in range(100)]
    result = scan_file(str(save(model(nodes), tmp_path)))
    assert rule_ids(result) == ["ONX001", "SCN005"]


# -- external data ---------------------------------------------------------------------------------


def external(name: str, **entries: str) -> TensorProto:
    tensor = TensorProto(name=name, data_type=FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in entries.items():
        tensor.external_data.add(key=key, value=value)
    return tensor


def external_model(*tensors: TensorProto) -> onnx.ModelProto:
    return model([helper.make_node("Identity", ["x"], ["y"])], initializers=list(tensors))


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("../../etc/passwd", "climbs out"),
        ("subdir/../../secret", "climbs out"),
        ("..\\..\\windows\\win.ini", "climbs out"),
        ("/etc/passwd", "absolute"),
        ("C:\\Windows\\win.ini", "absolute"),
        ("https://attacker.example/w.bin", "URL"),
        ("file:///etc/shadow", "URL"),
        ("data\0.bin", "NUL"),
    ],
)
def test_escaping_external_data_is_high(tmp_path: Path, location: str, reason: str) -> None:
    result = scan_file(
        str(save(external_model(external("w", location=location), external("v", location=location)), tmp_path))
    )
    [finding] = result.findings
    assert finding.rule_id == "ONX004" and finding.level is Severity.HIGH
    assert reason in finding.evidence and "2 tensor(s)" in finding.evidence


def test_symlink_out_of_the_folder_is_an_escape(tmp_path: Path) -> None:
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"\0" * 16)
    folder = tmp_path / "model"
    folder.mkdir()
    os.symlink(outside, folder / "weights.bin")
    result = scan_file(str(save(external_model(external("w", location="weights.bin")), folder)))
    assert rule_ids(result) == ["ONX004"]
    assert "through a link" in result.findings[0].evidence


def test_external_range_past_the_file_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"\0" * 64)
    tensors = [
        external("inside", location="w.bin", offset="48", length="16"),
        external("past", location="w.bin", offset="4096", length="16"),
        external("long", location="w.bin", offset="0", length="65"),
    ]
    result = scan_file(str(save(external_model(*tensors), tmp_path)))
    evidence = [f.evidence for f in result.findings]
    assert rule_ids(result) == ["ONX005", "ONX005"]
    assert any("'past'" in e and "[4096, 4112)" in e for e in evidence)
    assert any("'long'" in e for e in evidence)


@pytest.mark.parametrize(
    "entries",
    [
        {"location": "w.bin", "offset": "-1"},
        {"location": "w.bin", "length": "0x10"},
        {"location": "w.bin", "__class__": "x"},
        {"offset": "0"},
    ],
)
def test_malformed_external_entries(tmp_path: Path, entries: dict[str, str]) -> None:
    (tmp_path / "w.bin").write_bytes(b"\0" * 64)
    assert "ONX005" in rule_ids(scan_file(str(save(external_model(external("w", **entries)), tmp_path))))


def test_missing_external_file_is_low(tmp_path: Path) -> None:
    result = scan_file(str(save(external_model(external("w", location="gone.bin")), tmp_path)))
    [finding] = result.findings
    assert finding.rule_id == "ONX006" and finding.level is Severity.LOW


def test_external_files_are_not_looked_up_inside_archives(tmp_path: Path) -> None:
    import zipfile

    data = external_model(external("w", location="gone.bin")).SerializeToString()
    with zipfile.ZipFile(tmp_path / "bundle.zip", "w") as bundle:
        bundle.writestr("model.onnx", data)
    assert scan_file(str(tmp_path / "bundle.zip")).findings == []


def test_escape_reasons() -> None:
    assert escape_reason("model.onnx.data") is None
    assert escape_reason("weights/part1.bin") is None
    assert escape_reason("a/../b.bin") is None


# -- fail closed -----------------------------------------------------------------------------------


def test_malformed_protobuf_fails_closed(scan_data: ScanData) -> None:
    good = control_flow_model().SerializeToString()
    graph_at = good.index(b"\x3a")  # the graph field's tag (7 << 3 | 2)
    length = good[graph_at + 1]
    assert length & 0x80  # a multi-byte length: corrupt the graph's contents, not the top level
    payload_start = graph_at + 1 + next(i for i in range(10) if not good[graph_at + 1 + i] & 0x80) + 1
    corrupt = bytearray(good)
    corrupt[payload_start] = 0xFF  # an invalid field tag inside the graph message
    result = scan_data(bytes(corrupt), "model.onnx")
    assert result.format == "onnx"
    assert [f.rule_id for f in result.findings] == ["SCN003"]
    assert "malformed ONNX protobuf" in result.findings[0].evidence


def test_model_over_the_buffer_limit_fails_closed(scan_data: ScanData) -> None:
    data = control_flow_model().SerializeToString()
    policy = Policy(limits=Limits(max_buffer_bytes=len(data) - 1))
    result = scan_data(data, "model.onnx", policy)
    assert [f.rule_id for f in result.findings] == ["SCN005"]


def test_detection_does_not_decode_a_stream_whose_head_rules_out_onnx(unsized_stream: UnsizedStream) -> None:
    """Asking a decoded stream for its size decodes all of it: the head must rule such data out first."""
    assert not onnx_format.OnnxHandler().detect(unsized_stream(b"\x08\x00" + bytes(range(256)) * 64))


def test_external_data_location_constant_matches_onnx() -> None:
    """The scanner names onnx's enum value itself so that onnx loads only when a model is parsed."""
    from modelshield.formats.onnx import model as analyser

    assert analyser._EXTERNAL == onnx.TensorProto.EXTERNAL


def _reordered(data: bytes, edit: str) -> bytes:
    """A serialised model re-laid out in ways the protobuf parser accepts and writers never emit."""
    assert data[0] == 0x08  # ir_version, one byte of value, written first
    if edit == "ir-version-last":
        return data[2:] + data[:2]
    if edit == "unknown-fields-first":
        return b"\xfa\x01\x03abc" + b"\xcb\x01\x08\x01\xcc\x01" + data  # field 31 bytes, group 25
    return data + b"\x12\x82\x20" + b"\xff" * 4098  # a long producer_name that is not UTF-8 (proto2 allows it)


@pytest.mark.parametrize("edit", ["ir-version-last", "unknown-fields-first", "long-binary-producer"])
def test_onnx_recognised_by_what_the_parser_accepts(scan_data: ScanData, edit: str) -> None:
    m = model([helper.make_node("Decrypt", ["x"], ["y"], domain="com.example.ops")])
    m.opset_import.append(helper.make_opsetid("com.example.ops", 1))
    data = _reordered(m.SerializeToString(), edit)
    onnx.load_model_from_string(data)  # the real parser accepts it
    result = scan_data(data, "model.onnx")
    assert result.format == "onnx"
    assert "ONX001" in rule_ids(result)


# -- onnxruntime's in-memory location and EPContext nodes ------------------------------------------


@pytest.mark.parametrize("location", ["*/_ORT_MEM_ADDR_/*", "./*/_ORT_MEM_ADDR_/*"])
def test_memory_address_location_is_high(tmp_path: Path, location: str) -> None:
    tensor = external("w", location=location, offset="140737488355328", length="16")
    result = scan_file(str(save(external_model(tensor), tmp_path)))
    [finding] = result.findings
    assert finding.rule_id == "ONX009" and finding.level is Severity.HIGH
    assert "'140737488355328'" in finding.evidence


def ep_context_node(**attributes: object) -> onnx.NodeProto:
    """An EPContext node as onnxruntime's providers write it (contrib_defs.cc: variadic, com.microsoft)."""
    return helper.make_node(
        "EPContext", ["x"], ["y"], domain="com.microsoft", source="QNNExecutionProvider", **attributes
    )


def ep_context_model(**attributes: object) -> onnx.ModelProto:
    return model([ep_context_node(**attributes)], opsets=[helper.make_opsetid("com.microsoft", 1)])


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../../shared/engine.bin", "climbs out"),
        ("/var/cache/engine.bin", "absolute"),
        ("sub/../../x.bin", "climbs out"),
    ],
)
def test_ep_context_file_outside_the_folder_is_high(tmp_path: Path, path: str, reason: str) -> None:
    result = scan_file(str(save(ep_context_model(embed_mode=0, ep_cache_context=path), tmp_path)))
    [escape] = [f for f in result.findings if f.rule_id == "ONX007"]
    assert escape.level is Severity.HIGH and reason in escape.evidence and path in escape.evidence
    assert "ONX008" not in rule_ids(result)


def test_ep_context_file_linked_out_of_the_folder_is_high(tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    folder = tmp_path / "model"
    folder.mkdir()
    os.symlink(tmp_path / "secret.bin", folder / "ctx.bin")
    result = scan_file(str(save(ep_context_model(embed_mode=0, ep_cache_context="ctx.bin"), folder)))
    assert [f.evidence for f in result.findings if f.rule_id == "ONX007"] == [
        "graph 'g' > node 'EPContext': ep_cache_context 'ctx.bin' resolves outside the model folder through a link"
    ]


def test_tensorrt_refit_model_file_outside_the_folder_is_high(tmp_path: Path) -> None:
    m = ep_context_model(embed_mode=1, ep_cache_context=b"engine", onnx_model_filename="../../victim.onnx")
    result = scan_file(str(save(m, tmp_path)))
    assert {f.rule_id for f in result.findings} == {"ONX002", "ONX007", "ONX008"}


def test_ep_context_program_next_to_the_model_or_embedded_is_medium(tmp_path: Path) -> None:
    (tmp_path / "model_ctx.bin").write_bytes(b"\0" * 64)
    in_file = scan_file(str(save(ep_context_model(embed_mode=0, ep_cache_context="model_ctx.bin"), tmp_path)))
    [binary] = [f for f in in_file.findings if f.rule_id == "ONX008"]
    assert binary.level is Severity.MEDIUM and "'model_ctx.bin' (64 bytes)" in binary.evidence
    embedded = scan_file(str(save(ep_context_model(ep_cache_context=b"\x01" * 32), tmp_path, "embedded.onnx")))
    assert [f.evidence for f in embedded.findings if f.rule_id == "ONX008"] == [
        "graph 'g' > node 'EPContext' embeds a 32-byte precompiled program"
    ]


def test_ep_context_is_judged_by_op_type_in_any_domain_and_subgraph(tmp_path: Path) -> None:
    """Providers match the op type only (onnx_ctx_model_helper.cc), so a renamed domain is no way around."""
    m = control_flow_model()
    then_branch = next(a.g for a in m.graph.node[1].attribute if a.name == "then_branch")
    hidden = helper.make_node("EPContext", ["t"], ["t2"], domain="x.ops", embed_mode=0, ep_cache_context="/etc/passwd")
    then_branch.node.append(hidden)
    result = scan_file(str(save(m, tmp_path)))
    assert {"ONX001", "ONX007"} <= set(rule_ids(result))


def test_ep_context_inside_an_archive_is_still_judged_by_its_path(tmp_path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(tmp_path / "bundle.zip", "w") as bundle:
        bundle.writestr("model.onnx", ep_context_model(embed_mode=0, ep_cache_context="../x.bin").SerializeToString())
        bundle.writestr("inner.onnx", ep_context_model(embed_mode=0, ep_cache_context="ctx.bin").SerializeToString())
    found = {(f.location.members[-1], f.rule_id) for f in scan_file(str(tmp_path / "bundle.zip")).findings}
    assert {("model.onnx", "ONX007"), ("inner.onnx", "ONX008")} <= found


# -- ORT format (.ort) -----------------------------------------------------------------------------

ORT_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "onnx"


def ort_fixture(name: str) -> bytes:
    return (ORT_FIXTURES / name).read_bytes()


def test_ort_model_from_the_real_converter_is_clean(scan_data: ScanData) -> None:
    result = scan_data(ort_fixture("standard.ort"), "model.ort")
    assert result.format == "onnx-ort"
    [vendor] = result.findings
    assert vendor.rule_id == "ONX002" and vendor.level is Severity.INFO
    assert "'Gelu' in domain 'com.microsoft'; first at graph > node 'If'.then_branch" in vendor.evidence


@pytest.mark.parametrize("name", ["model.bin", "weights", "model.tflite"])
def test_ort_model_is_recognised_by_content_under_any_name(scan_data: ScanData, name: str) -> None:
    result = scan_data(ort_fixture("custom_op_in_a_branch.ort"), name)
    assert result.format == "onnx-ort"
    assert "ONX001" in rule_ids(result)


def test_ort_custom_operator_in_a_branch_is_medium(scan_data: ScanData) -> None:
    result = scan_data(ort_fixture("custom_op_in_a_branch.ort"), "model.ort")
    [custom] = result.findings
    assert custom.rule_id == "ONX001" and custom.level is Severity.MEDIUM
    assert "'Exfiltrate' in domain 'com.example.ops'; first at graph > node 'If_0'.then_branch" in custom.evidence


def test_ort_ep_context_nodes_are_judged_like_onnx(scan_data: ScanData) -> None:
    escape = scan_data(ort_fixture("ep_context_escape.ort"), "model.ort")
    assert [f.evidence for f in escape.findings if f.rule_id == "ONX007"] == [
        "graph > node 'EPContext_0': ep_cache_context '../../shared/engine.bin' climbs out of the model folder"
    ]
    embedded = scan_data(ort_fixture("ep_context_embedded.ort"), "model.ort")
    assert [f.evidence for f in embedded.findings if f.rule_id == "ONX008"] == [
        "graph > node 'EPContext_0' embeds a 144-byte precompiled program"
    ]


def test_truncated_ort_model_fails_closed(scan_data: ScanData) -> None:
    data = ort_fixture("standard.ort")
    result = scan_data(data[: len(data) // 3], "model.ort")
    assert result.format == "onnx-ort"
    assert [f.rule_id for f in result.findings] == ["SCN003"]


def test_ort_walk_is_bounded(scan_data: ScanData, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_format, "MAX_NODES", 2)
    result = scan_data(ort_fixture("standard.ort"), "model.ort")
    assert "SCN005" in rule_ids(result)


def test_session_options_in_the_metadata_are_low(tmp_path: Path) -> None:
    m = model([helper.make_node("Relu", ["x"], ["y"])])
    helper.set_model_props(m, {"ort_config": '{"session_options": {"enable_profiling": 1}}', "author": "me"})
    [finding] = scan_file(str(save(m, tmp_path))).findings
    assert finding.rule_id == "ONX010" and finding.level is Severity.LOW
    assert "enable_profiling" in finding.evidence


def test_repeated_ep_context_attributes_are_judged_every_way(tmp_path: Path) -> None:
    """Which of two `embed_mode` or `ep_cache_context` attributes a provider keeps depends on its map:
    a file read is reported if any reading makes one."""
    node = ep_context_node(embed_mode=1, ep_cache_context=b"\x00program")
    node.attribute.extend(
        [helper.make_attribute("embed_mode", 0), helper.make_attribute("ep_cache_context", "../../engine.bin")]
    )
    m = model([node], opsets=[helper.make_opsetid("com.microsoft", 1)])
    result = scan_file(str(save(m, tmp_path)))
    escapes = [f.evidence for f in result.findings if f.rule_id == "ONX007"]
    assert "graph 'g' > node 'EPContext': ep_cache_context '../../engine.bin' climbs out of the model folder" in escapes
    assert "ONX008" in rule_ids(result)


def test_external_data_in_a_function_attribute_default_is_checked(tmp_path: Path) -> None:
    m = control_flow_model()
    default = helper.make_attribute("alpha", external("d", location="../../etc/passwd"))
    m.functions[0].attribute_proto.append(default)
    assert rule_ids(scan_file(str(save(m, tmp_path)))) == ["ONX004"]


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=8, max_value=3943), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_ort_models_never_break_the_scanner(scan_data: ScanData, edits: list[tuple[int, int]]) -> None:
    """Offsets, vtables and lengths changed anywhere past the header: every read is checked, so the
    scan ends with findings or a fail-closed SCN00x, never an internal error."""
    data = bytearray(ort_fixture("standard.ort"))
    for at, value in edits:
        data[at % len(data)] = value
    result = scan_data(bytes(data), "model.ort")
    assert not any("internal error" in f.evidence for f in result.findings)


def test_operators_onnxruntime_adds_to_the_default_domain_are_clean(tmp_path: Path) -> None:
    """onnxruntime-genai's LLMs use SimplifiedLayerNormalization, which onnxruntime (not onnx) defines
    in the default domain; onnxruntime 1.32 runs it on the CPU provider."""
    nodes = [helper.make_node("SimplifiedLayerNormalization", ["x", "s"], ["y"], epsilon=1e-5, axis=-1)]
    assert scan_file(str(save(model(nodes), tmp_path))).findings == []


def test_name_onnxruntime_does_not_define_in_its_own_domain_is_low(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Steal", ["x"], ["a"], domain="com.microsoft"),
        helper.make_node("GroupQueryAttention", ["a"], ["y"], domain="com.microsoft"),
    ]
    result = scan_file(str(save(model(nodes, opsets=[helper.make_opsetid("com.microsoft", 1)]), tmp_path)))
    levels = {(f.rule_id, f.details["op_type"]): f.level for f in result.findings}
    assert levels == {("ONX003", "Steal"): Severity.LOW, ("ONX002", "GroupQueryAttention"): Severity.INFO}


def test_runtime_operator_list_holds_onnxruntime_contrib_ops() -> None:
    """The frozen list comes from onnxruntime's registry; the standard ONNX ops it holds agree with onnx's."""
    runtime = onnx_format.runtime_operators()
    standard = onnx_format.standard_operators()
    assert {"Attention", "MatMulNBits", "EPContext"} <= runtime["com.microsoft"]
    assert {"Relu", "Conv", "If"} <= runtime[""] & standard[""]


@pytest.mark.parametrize("location", [".. /.. /secret.bin", "sub\\\\..  \\\\..  \\\\secret.bin"])
def test_names_that_climb_out_as_windows_reads_them_are_high(tmp_path: Path, location: str) -> None:
    """Windows drops trailing dots and spaces from path components; lexical `..` checks do not."""
    [finding] = scan_file(str(save(external_model(external("w", location=location)), tmp_path))).findings
    assert finding.rule_id == "ONX004" and "as Windows reads it" in finding.evidence
    ep = scan_file(str(save(ep_context_model(embed_mode=0, ep_cache_context=location), tmp_path, "ctx.onnx")))
    assert "ONX007" in rule_ids(ep)


def test_initializer_bytes_that_are_a_zip_archive_are_a_polyglot(scan_data: ScanData) -> None:
    """`zipfile` finds an archive from the end of the file, so raw tensor bytes can hold one."""
    import io
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("data.pkl", evil_pickle())
    blob = archive.getvalue()
    weights = TensorProto(name="w", data_type=TensorProto.UINT8, dims=[len(blob)], raw_data=blob)
    data = external_model(weights).SerializeToString()
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["data.pkl"]
    result = scan_data(data, "model.onnx")
    assert "SCN002" in rule_ids(result) and is_code_execution(result)


def test_ep_context_node_sharing_another_nodes_program_adds_nothing(tmp_path: Path) -> None:
    """With weight sharing, nodes with `main_context=0` run a graph of the main node's context binary."""
    (tmp_path / "shared_ctx.bin").write_bytes(b"\0" * 8)
    main = ep_context_node(embed_mode=0, ep_cache_context="shared_ctx.bin", main_context=1)
    other = helper.make_node("EPContext", ["y"], ["z"], domain="com.microsoft", main_context=0, embed_mode=0)
    m = model([main, other], opsets=[helper.make_opsetid("com.microsoft", 1)])
    binaries = [f.evidence for f in scan_file(str(save(m, tmp_path))).findings if f.rule_id == "ONX008"]
    assert binaries == ["graph 'g' > node 'EPContext' loads the precompiled program in 'shared_ctx.bin' (8 bytes)"]
