"""ONNX Runtime's ORT format (`.ort`, flatbuffer identifier `ORTM`): the same graph as an ONNX model,
converted for mobile and minimal builds, which `InferenceSession` loads like a `.onnx` file.

Its operators need the same native code as in ONNX (custom domains, unknown operators) and its
`EPContext` nodes hand a provider a precompiled program, so both are judged with the ONNX rules.
The format has no external data and no model-local functions (the converter inlines them).
Read with the bounded reader of `formats/_flatbuffers.py`; slots are from onnxruntime's
`core/flatbuffers/schema/ort.fbs`, given beside each read.
"""

from __future__ import annotations

from collections.abc import Iterator

from modelshield.core.errors import LimitExceeded
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.source import Source
from modelshield.formats import _flatbuffers as flatbuffers
from modelshield.formats._flatbuffers import FlatBuffer, Table
from modelshield.formats.onnx import model as onnx_model
from modelshield.formats.onnx.model import EP_CONTEXT_OP, EpContext, OperatorJudge, Walk

IDENTIFIER = b"ORTM"


def _attributes(node: Table) -> list[tuple[str, Table]]:
    """`Node.attributes` (slot 10) with their `Attribute.name` (slot 0), repeated names kept."""
    return [(attribute.string(0) or "", attribute) for attribute in node.tables(10)]


def _ep_context(node: Table, where: str) -> EpContext:
    """`Attribute.i` (slot 4) and `Attribute.s` (slot 5) of every attribute."""
    values = ((name, a.scalar(4, "<q", 0), a.bytes(5) or b"") for name, a in _attributes(node))
    return EpContext.of(where, values)


def walk_session(buf: FlatBuffer, root: int) -> Walk:
    """Every node of the main graph and of every subgraph attribute, without recursion.

    `InferenceSession.model` (slot 1) > `Model.graph` (slot 7) > `Graph.nodes` (slot 2); subgraphs
    are `Attribute.g` (slot 7) and `Attribute.graphs` (slot 12). Flatbuffer offsets only point
    forward, so graphs cannot contain themselves; graphs shared by many attributes cost vector budget
    on every visit, which bounds the walk by the file's size.
    """
    result = Walk()
    judge = OperatorJudge()
    model = buf.table(root).subtable(1)
    graph = model.subtable(7) if model is not None else None
    pending: list[tuple[str, Table]] = [("graph", graph)] if graph is not None else []
    while pending:
        where, graph = pending.pop()
        for node in graph.tables(2):
            result.nodes += 1
            if result.nodes > onnx_model.MAX_NODES:
                result.truncated = True
                return result
            op_type = node.string(5) or ""  # Node.op_type
            node_where = f"{where} > node {node.string(0) or op_type!r}"  # Node.name
            result.operator(judge, node.string(2) or "", op_type, node_where)  # Node.domain
            if op_type == EP_CONTEXT_OP:
                result.contexts.append(_ep_context(node, node_where))
            for name, attribute in _attributes(node):
                subgraph = attribute.subtable(7)
                for sub in (*([subgraph] if subgraph is not None else []), *attribute.tables(12)):
                    pending.append((f"{node_where}.{name}", sub))
    return result


class OrtFormatHandler(Handler):
    name = "onnx-ort"
    label = "ONNX Runtime ORT-format model"
    extensions = frozenset({".ort"})
    rules = (
        onnx_model.CUSTOM_DOMAIN,
        onnx_model.VENDOR_DOMAIN,
        onnx_model.UNKNOWN_OPERATOR,
        onnx_model.EP_CONTEXT_ESCAPE,
        onnx_model.EP_CONTEXT_BINARY,
    )

    def detect(self, source: Source) -> bool:
        return flatbuffers.root_table(source, IDENTIFIER) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        root = flatbuffers.root_table(source, IDENTIFIER)
        if root is None:
            return
        walk = walk_session(FlatBuffer(ctx.read_whole(source, "ORT-format model")), root)
        findings = onnx_model.operator_findings(walk)
        findings += onnx_model.context_findings(walk.contexts, onnx_model.model_folder(ctx))
        yield from onnx_model.emit(ctx, findings)
        if walk.truncated:
            raise LimitExceeded("max_nodes", f"more than {onnx_model.MAX_NODES} nodes; the rest were not analysed")
