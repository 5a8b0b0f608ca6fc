"""ONNX models (a protobuf `ModelProto` without magic bytes): recognised by walking the top-level
fields, not yet analysed (fail closed)."""

from __future__ import annotations

from dataclasses import dataclass

from modelshield.core.source import Source
from modelshield.formats._protobuf import LEN, VARINT, WireError, fields, read_text
from modelshield.formats._unanalysed import UnanalysedFormat

#: ModelProto's top-level fields and their wire types (onnx.proto).
MODEL_FIELDS = {
    1: VARINT,  # ir_version
    2: LEN,  # producer_name
    3: LEN,  # producer_version
    4: LEN,  # domain
    5: VARINT,  # model_version
    6: LEN,  # doc_string
    7: LEN,  # graph
    8: LEN,  # opset_import
    14: LEN,  # metadata_props
    20: LEN,  # training_info
    25: LEN,  # functions
    26: LEN,  # configuration
}
#: IR version 3 (ONNX 1.0, 2017) is the oldest in real use; the current one is 11-14.
IR_VERSIONS = range(3, 65)
#: Top-level fields walked before accepting; real models have a handful plus metadata_props.
MAX_FIELDS = 4096
_TEXT_FIELDS = (2, 3, 4)


@dataclass(frozen=True)
class OnnxModel:
    ir_version: int
    producer: str


def read_model(source: Source) -> OnnxModel | None:
    """The head of an ONNX ModelProto, or None if the bytes are not one.

    Requires `ir_version` as the first field (protobuf writers emit fields in number order), a
    `graph`, only ModelProto field numbers with their proper wire types, short identification
    strings that are UTF-8, and field lengths that land exactly on the end of the file. Random
    bytes, text and other protobufs (SavedModel starts with a version 1, GraphDef with a message)
    fail one of these.
    """
    head = source.head(2)
    if len(head) < 2 or head[0] != 0x08:  # field 1, varint
        return None
    ir_version = None
    producer = ""
    has_graph = False
    try:
        for index, field in enumerate(fields(source, 0, source.size, MAX_FIELDS)):
            if MODEL_FIELDS.get(field.number) != field.wire_type:
                return None
            if index == 0:
                if field.value not in IR_VERSIONS:
                    return None
                ir_version = field.value
            elif field.number in _TEXT_FIELDS:
                text = read_text(source, field, 4096)
                if text is None:
                    return None
                if field.number == 2:
                    producer = text
            has_graph = has_graph or field.number == 7
    except WireError:
        return None
    if ir_version is None or not has_graph:
        return None
    return OnnxModel(ir_version, producer)


class OnnxHandler(UnanalysedFormat):
    name = "onnx"
    label = "ONNX model"
    extensions = frozenset({".onnx"})
    unchecked = "custom operator domains, external-data paths and model-local functions"

    def detect(self, source: Source) -> bool:
        return read_model(source) is not None

    def describe(self, source: Source) -> str:
        model = read_model(source)
        assert model is not None
        producer = f" from {model.producer!r}" if model.producer else ""
        return f"ONNX model (IR version {model.ir_version}){producer}"
