"""Write the committed ONNX Runtime ORT-format fixtures (tests/fixtures/onnx/*.ort) with real onnxruntime.

The tests only read these files, so CI needs no onnxruntime. Regenerate in a throwaway virtualenv:

    python3 -m venv /tmp/ort-env && /tmp/ort-env/bin/pip install onnxruntime onnx numpy
    /tmp/ort-env/bin/python scripts/make_ort_fixtures.py

- `standard.ort`: an ONNX model (MatMul, an If with two branches, a `com.microsoft` Gelu inside a branch)
  converted by onnxruntime's own converter (`onnxruntime.tools.convert_onnx_models_to_ort`).
- The hostile files are assembled with the flatbuffer bindings onnxruntime ships for its schema
  (`ort_flatbuffers_py`), since the converter builds a session first and refuses operators no kernel
  implements: a custom-domain operator inside an If branch, `EPContext` nodes whose context file
  climbs out of the model folder, and one that embeds its precompiled program.
Nothing is run: the converter only optimises and serialises the standard model.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import flatbuffers
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.tools.ort_format_model.ort_flatbuffers_py import fbs

BOOL, F32 = fbs.TensorDataType.TensorDataType.BOOL, fbs.TensorDataType.TensorDataType.FLOAT

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "onnx"
FLOAT = TensorProto.FLOAT


def standard_onnx() -> onnx.ModelProto:
    value = [helper.make_tensor_value_info("x", FLOAT, [2, 2])]

    def branch(name: str, op: str, domain: str = "") -> onnx.GraphProto:
        out = helper.make_tensor_value_info(f"{name}_out", FLOAT, [2, 2])
        return helper.make_graph([helper.make_node(op, ["m"], [f"{name}_out"], domain=domain)], name, [], [out])

    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("ReduceSum", ["m"], ["s"], keepdims=0),
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("zero", FLOAT, [], [0.0])),
        helper.make_node("Greater", ["s", "zero"], ["c"]),
        helper.make_node(
            "If", ["c"], ["y"], then_branch=branch("then", "Gelu", "com.microsoft"), else_branch=branch("else", "Relu")
        ),
    ]
    weights = numpy_helper.from_array(np.eye(2, dtype=np.float32), "w")
    graph = helper.make_graph(
        nodes, "main", value, [helper.make_tensor_value_info("y", FLOAT, [2, 2])], initializer=[weights]
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def convert(model: onnx.ModelProto, target: Path) -> None:
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "model.onnx"
        onnx.save(model, str(source))
        subprocess.run(
            [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(source)],
            check=True,
            capture_output=True,
        )
        target.write_bytes(source.with_suffix(".ort").read_bytes())


class Builder:
    """Just enough of the ORT schema's builders for single-graph sessions with attributes and subgraphs."""

    def __init__(self) -> None:
        self.b = flatbuffers.Builder(1024)

    def strings(self, values: list[str], start: object) -> int:
        offsets = [self.b.CreateString(v) for v in values]
        start(self.b, len(offsets))  # type: ignore[operator]
        for offset in reversed(offsets):
            self.b.PrependUOffsetTRelative(offset)
        return int(self.b.EndVector())

    def tables(self, offsets: list[int], start: object) -> int:
        start(self.b, len(offsets))  # type: ignore[operator]
        for offset in reversed(offsets):
            self.b.PrependUOffsetTRelative(offset)
        return int(self.b.EndVector())

    def attribute(self, name: str, *, i: int | None = None, s: bytes | None = None, g: int | None = None) -> int:
        b = self.b
        name_at = b.CreateString(name)
        s_at = b.CreateString(s) if s is not None else None
        fbs.Attribute.AttributeStart(b)
        fbs.Attribute.AttributeAddName(b, name_at)
        if i is not None:
            fbs.Attribute.AttributeAddType(b, fbs.AttributeType.AttributeType.INT)
            fbs.Attribute.AttributeAddI(b, i)
        if s_at is not None:
            fbs.Attribute.AttributeAddType(b, fbs.AttributeType.AttributeType.STRING)
            fbs.Attribute.AttributeAddS(b, s_at)
        if g is not None:
            fbs.Attribute.AttributeAddType(b, fbs.AttributeType.AttributeType.GRAPH)
            fbs.Attribute.AttributeAddG(b, g)
        return int(fbs.Attribute.AttributeEnd(b))

    def node(
        self, op: str, domain: str, inputs: list[str], outputs: list[str], attrs: list[int], *, index: int = 0
    ) -> int:
        b = self.b
        name_at, op_at, domain_at = (b.CreateString(v) for v in (f"{op}_{index}", op, domain))
        inputs_at = self.strings(inputs, fbs.Node.NodeStartInputsVector)
        outputs_at = self.strings(outputs, fbs.Node.NodeStartOutputsVector)
        attrs_at = self.tables(attrs, fbs.Node.NodeStartAttributesVector)
        implicit_at = self.strings([], fbs.Node.NodeStartImplicitInputsVector)
        fbs.Node.NodeStartInputArgCountsVector(b, len(inputs))
        for _ in inputs:
            b.PrependInt32(1)
        counts_at = b.EndVector()
        fbs.Node.NodeStart(b)
        fbs.Node.NodeAddName(b, name_at)
        fbs.Node.NodeAddDomain(b, domain_at)
        fbs.Node.NodeAddSinceVersion(b, 1)
        fbs.Node.NodeAddIndex(b, index)
        fbs.Node.NodeAddOpType(b, op_at)
        fbs.Node.NodeAddInputs(b, inputs_at)
        fbs.Node.NodeAddOutputs(b, outputs_at)
        fbs.Node.NodeAddAttributes(b, attrs_at)
        fbs.Node.NodeAddInputArgCounts(b, counts_at)
        fbs.Node.NodeAddImplicitInputs(b, implicit_at)
        return int(fbs.Node.NodeEnd(b))

    def value(self, name: str, elem_type: int) -> int:
        b = self.b
        name_at = b.CreateString(name)
        fbs.TensorTypeAndShape.TensorTypeAndShapeStart(b)
        fbs.TensorTypeAndShape.TensorTypeAndShapeAddElemType(b, elem_type)
        tensor_type = fbs.TensorTypeAndShape.TensorTypeAndShapeEnd(b)
        fbs.TypeInfo.TypeInfoStart(b)
        fbs.TypeInfo.TypeInfoAddValueType(b, fbs.TypeInfoValue.TypeInfoValue.tensor_type)
        fbs.TypeInfo.TypeInfoAddValue(b, tensor_type)
        type_at = fbs.TypeInfo.TypeInfoEnd(b)
        fbs.ValueInfo.ValueInfoStart(b)
        fbs.ValueInfo.ValueInfoAddName(b, name_at)
        fbs.ValueInfo.ValueInfoAddType(b, type_at)
        return int(fbs.ValueInfo.ValueInfoEnd(b))

    def graph(self, nodes: list[int], inputs: list[str], outputs: list[str], values: dict[str, int]) -> int:
        b = self.b
        values_at = self.tables([self.value(n, t) for n, t in values.items()], fbs.Graph.GraphStartNodeArgsVector)
        nodes_at = self.tables(nodes, fbs.Graph.GraphStartNodesVector)
        inputs_at = self.strings(inputs, fbs.Graph.GraphStartInputsVector)
        outputs_at = self.strings(outputs, fbs.Graph.GraphStartOutputsVector)
        fbs.Graph.GraphStart(b)
        fbs.Graph.GraphAddNodeArgs(b, values_at)
        fbs.Graph.GraphAddNodes(b, nodes_at)
        fbs.Graph.GraphAddMaxNodeIndex(b, len(nodes))
        fbs.Graph.GraphAddInputs(b, inputs_at)
        fbs.Graph.GraphAddOutputs(b, outputs_at)
        return int(fbs.Graph.GraphEnd(b))

    def session(self, graph: int, domains: list[str]) -> bytes:
        b = self.b
        opsets = []
        for domain in domains:
            domain_at = b.CreateString(domain)
            fbs.OperatorSetId.OperatorSetIdStart(b)
            fbs.OperatorSetId.OperatorSetIdAddDomain(b, domain_at)
            fbs.OperatorSetId.OperatorSetIdAddVersion(b, 17 if domain == "" else 1)
            opsets.append(fbs.OperatorSetId.OperatorSetIdEnd(b))
        opsets_at = self.tables(opsets, fbs.Model.ModelStartOpsetImportVector)
        producer = b.CreateString("modelshield-fixtures")
        fbs.Model.ModelStart(b)
        fbs.Model.ModelAddIrVersion(b, 9)
        fbs.Model.ModelAddOpsetImport(b, opsets_at)
        fbs.Model.ModelAddProducerName(b, producer)
        fbs.Model.ModelAddGraph(b, graph)
        model = fbs.Model.ModelEnd(b)
        version = b.CreateString("6")
        fbs.InferenceSession.InferenceSessionStart(b)
        fbs.InferenceSession.InferenceSessionAddOrtVersion(b, version)
        fbs.InferenceSession.InferenceSessionAddModel(b, model)
        session = fbs.InferenceSession.InferenceSessionEnd(b)
        b.Finish(session, file_identifier=b"ORTM")
        return bytes(b.Output())


def custom_op_in_a_branch() -> bytes:
    fb = Builder()
    inner = fb.graph([fb.node("Exfiltrate", "com.example.ops", ["x"], ["t"], [])], [], ["t"], {"x": F32, "t": F32})
    other = fb.graph([fb.node("Identity", "", ["x"], ["e"], [])], [], ["e"], {"x": F32, "e": F32})
    branches = [fb.attribute("then_branch", g=inner), fb.attribute("else_branch", g=other)]
    outer = fb.node("If", "", ["c"], ["y"], branches)
    values = {"c": BOOL, "x": F32, "y": F32}
    return fb.session(fb.graph([outer], ["c", "x"], ["y"], values), ["", "com.example.ops"])


def ep_context(embed_mode: int, context: bytes, model_filename: str | None = None) -> bytes:
    fb = Builder()
    attrs = [
        fb.attribute("embed_mode", i=embed_mode),
        fb.attribute("ep_cache_context", s=context),
        fb.attribute("source", s=b"QNNExecutionProvider"),
    ]
    if model_filename is not None:
        attrs.append(fb.attribute("onnx_model_filename", s=model_filename.encode()))
    node = fb.node("EPContext", "com.microsoft", ["x"], ["y"], attrs)
    return fb.session(fb.graph([node], ["x"], ["y"], {"x": F32, "y": F32}), ["", "com.microsoft"])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    convert(standard_onnx(), OUT / "standard.ort")
    (OUT / "custom_op_in_a_branch.ort").write_bytes(custom_op_in_a_branch())
    (OUT / "ep_context_escape.ort").write_bytes(ep_context(0, b"../../shared/engine.bin"))
    (OUT / "ep_context_embedded.ort").write_bytes(ep_context(1, b"QNN-CONTEXT-BINARY" * 8))
    for path in sorted(OUT.glob("*.ort")):
        print(path.relative_to(OUT.parents[2]), path.stat().st_size)


if __name__ == "__main__":
    main()
