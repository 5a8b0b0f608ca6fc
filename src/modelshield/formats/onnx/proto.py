"""ONNX's ModelProto decoded without the `onnx` package: only what the scanner reads is kept.

Importing onnx costs most of a second (its numpy and ml_dtypes extensions) in every process, while a
typical model decodes in a millisecond. The schema below is onnx-ml.proto (onnx 1.23, proto2; the
variant ONNX Runtime is built with), field numbers beside each entry. Every embedded message and
packed number field the runtime parses is named, so that the bytes are rejected exactly where
ONNX Runtime's parser rejects them; kept fields are decoded with the runtime's semantics by
`_protobuf.decode`: a repeated `graph` is one graph with both node lists, the last `i` wins, and a
`data_location` the enum does not define is ignored. Strings are not UTF-8 checked (proto2): bytes
that are not UTF-8 keep their value as surrogate escapes, so they never equal a valid name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelshield.formats._protobuf import (
    BYTES,
    CHECK,
    ENUM,
    INT64,
    LEN,
    MESSAGE,
    MESSAGES,
    PACKED_FIXED32,
    PACKED_FIXED64,
    PACKED_VARINT,
    STRING,
    VARINT,
    Decoded,
    Schema,
    Spec,
    decode,
)

#: `TensorProto.DataLocation`: DEFAULT and EXTERNAL, the values a closed proto2 enum accepts.
DATA_LOCATIONS = frozenset({0, 1})


@dataclass(slots=True)
class StringStringEntry:
    key: str = ""
    value: str = ""


@dataclass(slots=True)
class Tensor:
    name: str = ""
    data_location: int = 0
    external_data: list[StringStringEntry] = field(default_factory=list)


@dataclass(slots=True)
class SparseTensor:
    values: Tensor = field(default_factory=Tensor)
    indices: Tensor = field(default_factory=Tensor)


@dataclass(slots=True)
class Attribute:
    name: str = ""
    i: int = 0
    s: bytes = b""
    t: Tensor | None = None
    g: Graph | None = None
    sparse_tensor: SparseTensor | None = None
    tensors: list[Tensor] = field(default_factory=list)
    graphs: list[Graph] = field(default_factory=list)
    sparse_tensors: list[SparseTensor] = field(default_factory=list)


@dataclass(slots=True)
class Node:
    name: str = ""
    op_type: str = ""
    domain: str = ""
    overload: str = ""
    attribute: list[Attribute] = field(default_factory=list)


@dataclass(slots=True)
class Graph:
    name: str = ""
    node: list[Node] = field(default_factory=list)
    initializer: list[Tensor] = field(default_factory=list)
    sparse_initializer: list[SparseTensor] = field(default_factory=list)


@dataclass(slots=True)
class Function:
    name: str = ""
    domain: str = ""
    overload: str = ""
    node: list[Node] = field(default_factory=list)
    attribute_proto: list[Attribute] = field(default_factory=list)


@dataclass(slots=True)
class TrainingInfo:
    initialization: Graph = field(default_factory=Graph)
    algorithm: Graph = field(default_factory=Graph)


@dataclass(slots=True)
class Model:
    graph: Graph = field(default_factory=Graph)
    functions: list[Function] = field(default_factory=list)
    training_info: list[TrainingInfo] = field(default_factory=list)
    metadata_props: list[StringStringEntry] = field(default_factory=list)


def refers_outside(tensor: Tensor) -> bool:
    """Whether a tensor names external data: the only tensors the scanner looks at (others are dropped)."""
    return tensor.data_location != 0 or bool(tensor.external_data)


def _string(attr: str) -> Spec:
    return Spec(STRING, attr)


def _message(schema: Schema, attr: str) -> Spec:
    return Spec(MESSAGE, attr, schema)


def _messages(schema: Schema, attr: str) -> Spec:
    return Spec(MESSAGES, attr, schema)


def _check(schema: Schema) -> Spec:
    return Spec(CHECK, schema=schema)


_VARINTS, _FIXED32, _FIXED64 = Spec(PACKED_VARINT), Spec(PACKED_FIXED32), Spec(PACKED_FIXED64)

MODEL = Schema("ModelProto", Model)
GRAPH = Schema("GraphProto", Graph)
NODE = Schema("NodeProto", Node)
ATTRIBUTE = Schema("AttributeProto", Attribute)
TENSOR = Schema("TensorProto", Tensor, refers_outside)
SPARSE_TENSOR = Schema(
    "SparseTensorProto", SparseTensor, lambda s: refers_outside(s.values) or refers_outside(s.indices)
)
FUNCTION = Schema("FunctionProto", Function)
TRAINING_INFO = Schema("TrainingInfoProto", TrainingInfo)
ENTRY = Schema("StringStringEntryProto", StringStringEntry)
# validated only: what they hold cannot name an operator, a subgraph or a file
CHECKED_ENTRY = Schema("StringStringEntryProto")  # strings only, but an embedded message to the parser
OPERATOR_SET = Schema("OperatorSetIdProto")
DEVICE_CONFIGURATION = Schema("DeviceConfigurationProto")
VALUE_INFO = Schema("ValueInfoProto")
TYPE = Schema("TypeProto")
TYPE_TENSOR = Schema("TypeProto.Tensor")  # also TypeProto.SparseTensor: same fields
TYPE_SEQUENCE = Schema("TypeProto.Sequence")  # also TypeProto.Optional: same fields
TYPE_MAP = Schema("TypeProto.Map")
TYPE_OPAQUE = Schema("TypeProto.Opaque")
SHAPE = Schema("TensorShapeProto")
DIMENSION = Schema("TensorShapeProto.Dimension")
SEGMENT = Schema("TensorProto.Segment")
TENSOR_ANNOTATION = Schema("TensorAnnotation")
NODE_DEVICE_CONFIGURATION = Schema("NodeDeviceConfigurationProto")
SHARDING_SPEC = Schema("ShardingSpecProto")
INT_INT_LIST_ENTRY = Schema("IntIntListEntryProto")
SHARDED_DIM = Schema("ShardedDimProto")
SIMPLE_SHARDED_DIM = Schema("SimpleShardedDimProto")

MODEL.define(
    {
        (7, LEN): _message(GRAPH, "graph"),
        (8, LEN): _check(OPERATOR_SET),  # opset_import
        (14, LEN): _messages(ENTRY, "metadata_props"),
        (20, LEN): _messages(TRAINING_INFO, "training_info"),
        (25, LEN): _messages(FUNCTION, "functions"),
        (26, LEN): _check(DEVICE_CONFIGURATION),  # configuration
    }
)
GRAPH.define(
    {
        (1, LEN): _messages(NODE, "node"),
        (2, LEN): _string("name"),
        (5, LEN): _messages(TENSOR, "initializer"),
        (15, LEN): _messages(SPARSE_TENSOR, "sparse_initializer"),
        (11, LEN): _check(VALUE_INFO),  # input
        (12, LEN): _check(VALUE_INFO),  # output
        (13, LEN): _check(VALUE_INFO),  # value_info
        (14, LEN): _check(TENSOR_ANNOTATION),  # quantization_annotation
        (16, LEN): _check(CHECKED_ENTRY),  # metadata_props
    }
)
NODE.define(
    {
        (3, LEN): _string("name"),
        (4, LEN): _string("op_type"),
        (7, LEN): _string("domain"),
        (8, LEN): _string("overload"),
        (5, LEN): _messages(ATTRIBUTE, "attribute"),
        (9, LEN): _check(CHECKED_ENTRY),  # metadata_props
        (10, LEN): _check(NODE_DEVICE_CONFIGURATION),  # device_configurations
    }
)
ATTRIBUTE.define(
    {
        (1, LEN): _string("name"),
        (3, VARINT): Spec(INT64, "i"),
        (4, LEN): Spec(BYTES, "s"),
        (5, LEN): _message(TENSOR, "t"),
        (6, LEN): _message(GRAPH, "g"),
        (22, LEN): _message(SPARSE_TENSOR, "sparse_tensor"),
        (14, LEN): _check(TYPE),  # tp
        (7, LEN): _FIXED32,  # floats
        (8, LEN): _VARINTS,  # ints
        (10, LEN): _messages(TENSOR, "tensors"),
        (11, LEN): _messages(GRAPH, "graphs"),
        (23, LEN): _messages(SPARSE_TENSOR, "sparse_tensors"),
        (15, LEN): _check(TYPE),  # type_protos
    }
)
TENSOR.define(
    {
        (1, LEN): _VARINTS,  # dims
        (3, LEN): _check(SEGMENT),
        (4, LEN): _FIXED32,  # float_data
        (5, LEN): _VARINTS,  # int32_data
        (7, LEN): _VARINTS,  # int64_data
        (8, LEN): _string("name"),
        (13, LEN): _messages(ENTRY, "external_data"),
        (14, VARINT): Spec(ENUM, "data_location", values=DATA_LOCATIONS),
        (10, LEN): _FIXED64,  # double_data
        (11, LEN): _VARINTS,  # uint64_data
        (16, LEN): _check(CHECKED_ENTRY),  # metadata_props
    }
)
SPARSE_TENSOR.define(
    {
        (1, LEN): _message(TENSOR, "values"),
        (2, LEN): _message(TENSOR, "indices"),
        (3, LEN): _VARINTS,  # dims
    }
)
FUNCTION.define(
    {
        (1, LEN): _string("name"),
        (10, LEN): _string("domain"),
        (13, LEN): _string("overload"),
        (7, LEN): _messages(NODE, "node"),
        (11, LEN): _messages(ATTRIBUTE, "attribute_proto"),
        (9, LEN): _check(OPERATOR_SET),  # opset_import
        (12, LEN): _check(VALUE_INFO),  # value_info
        (14, LEN): _check(CHECKED_ENTRY),  # metadata_props
    }
)
TRAINING_INFO.define(
    {
        (1, LEN): _message(GRAPH, "initialization"),
        (2, LEN): _message(GRAPH, "algorithm"),
        (3, LEN): _check(CHECKED_ENTRY),  # initialization_binding
        (4, LEN): _check(CHECKED_ENTRY),  # update_binding
    }
)
ENTRY.define({(1, LEN): _string("key"), (2, LEN): _string("value")})
CHECKED_ENTRY.define({})
OPERATOR_SET.define({})
DEVICE_CONFIGURATION.define({})
VALUE_INFO.define({(2, LEN): _check(TYPE), (4, LEN): _check(CHECKED_ENTRY)})
TYPE.define(
    {
        (1, LEN): _check(TYPE_TENSOR),  # tensor_type
        (4, LEN): _check(TYPE_SEQUENCE),  # sequence_type
        (5, LEN): _check(TYPE_MAP),  # map_type
        (9, LEN): _check(TYPE_SEQUENCE),  # optional_type
        (8, LEN): _check(TYPE_TENSOR),  # sparse_tensor_type
        (7, LEN): _check(TYPE_OPAQUE),  # opaque_type
    }
)
TYPE_TENSOR.define({(2, LEN): _check(SHAPE)})
TYPE_SEQUENCE.define({(1, LEN): _check(TYPE)})
TYPE_MAP.define({(2, LEN): _check(TYPE)})
TYPE_OPAQUE.define({})
SHAPE.define({(1, LEN): _check(DIMENSION)})
DIMENSION.define({})
SEGMENT.define({})
TENSOR_ANNOTATION.define({(2, LEN): _check(CHECKED_ENTRY)})
NODE_DEVICE_CONFIGURATION.define({(2, LEN): _check(SHARDING_SPEC)})
SHARDING_SPEC.define(
    {
        (2, LEN): _VARINTS,  # device
        (3, LEN): _check(INT_INT_LIST_ENTRY),  # index_to_device_group_map
        (4, LEN): _check(SHARDED_DIM),  # sharded_dim
    }
)
INT_INT_LIST_ENTRY.define({(2, LEN): _VARINTS})
SHARDED_DIM.define({(2, LEN): _check(SIMPLE_SHARDED_DIM)})
SIMPLE_SHARDED_DIM.define({})


def decode_model(data: bytes, limit: int) -> Decoded:
    """`data` as a ModelProto, keeping at most `limit` embedded messages; `WireError` where ONNX Runtime's
    parser rejects it."""
    return decode(data, MODEL, limit)
