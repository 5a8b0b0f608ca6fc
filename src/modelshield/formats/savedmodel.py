"""TensorFlow SavedModel `saved_model.pb`: recognised by its protobuf structure, not yet analysed
(fail closed).

No file-name suffix is claimed: `.pb` also names frozen GraphDefs, ONNX test tensors and the
`fingerprint.pb` / `keras_metadata.pb` files beside every SavedModel, so claiming it would turn
those into false mismatch findings.
"""

from __future__ import annotations

from modelshield.core.source import Source
from modelshield.formats._protobuf import LEN, VARINT, Field, WireError, fields
from modelshield.formats._unanalysed import UnanalysedFormat

#: `SavedModel.saved_model_schema_version`; TensorFlow has only ever written 1.
SCHEMA_VERSIONS = range(1, 65)
#: MetaGraphDef fields 1-7 (meta_info_def, graph_def, saver_def, collection_def, signature_def,
#: asset_file_def, object_graph_def) are all messages.
META_GRAPH_FIELDS = range(1, 8)
MAX_FIELDS = 65536


def count_meta_graphs(source: Source) -> int | None:
    """How many MetaGraphDefs a SavedModel holds, or None if the bytes are not a SavedModel.

    The top level may only hold the schema version (field 1, varint, first) and meta graphs
    (field 2, messages) and must end exactly at the end of the file; the first meta graph must
    itself walk cleanly as MetaGraphDef fields and contain a graph_def or meta_info_def.
    """
    head = source.head(2)
    if len(head) < 2 or head[0] != 0x08:
        return None
    meta_graphs: list[Field] = []
    try:
        for index, field in enumerate(fields(source, 0, source.size, MAX_FIELDS)):
            if index == 0:
                if field.wire_type != VARINT or field.value not in SCHEMA_VERSIONS:
                    return None
            elif field.number == 2 and field.wire_type == LEN:
                meta_graphs.append(field)
            else:
                return None
        if not meta_graphs:
            return None
        first = meta_graphs[0]
        seen: set[int] = set()
        for inner in fields(source, first.offset, first.offset + first.value, MAX_FIELDS):
            if inner.number not in META_GRAPH_FIELDS or inner.wire_type != LEN:
                return None
            seen.add(inner.number)
    except WireError:
        return None
    return len(meta_graphs) if seen & {1, 2} else None


class SavedModelHandler(UnanalysedFormat):
    name = "savedmodel"
    label = "TensorFlow SavedModel"
    unchecked = "graph and function-library operators (PyFunc, ReadFile/WriteFile, custom ops)"

    def detect(self, source: Source) -> bool:
        return count_meta_graphs(source) is not None

    def describe(self, source: Source) -> str:
        return f"TensorFlow SavedModel protobuf with {count_meta_graphs(source)} meta graph(s)"
