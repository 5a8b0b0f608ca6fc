"""TensorFlow SavedModel (`saved_model.pb`, `saved_model.pbtxt`): every op of every meta graph and of
its whole function library, judged by the operator catalogue, without TensorFlow.

Real ops live in the function library (the top-level graph of a TF2 SavedModel only holds
placeholders and calls), so every FunctionDef is walked. The checkpoint ops of the generated save
and restore functions are not findings; they are identified by reachability, not by name: the
`saver_def` names the graph nodes that save and restore, and only nodes and functions reachable
from them and from nothing else (no other graph node, no other library function, no function the
object graph exposes) are exempt, so an attacker cannot launder a `SaveV2` by naming a function
`__inference__traced_save_1` or by calling the real save function from a serving function.

No file-name suffix is claimed: `.pb` also names frozen GraphDefs, ONNX test tensors and the
`fingerprint.pb` / `keras_metadata.pb` files beside every SavedModel.
"""

from __future__ import annotations

import codecs
import re
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple, Protocol

from modelshield.core.errors import LimitExceeded, ScanError
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.paths import escape_reason
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.source import BytesSource, Source
from modelshield.formats._protobuf import LEN, VARINT, Field, WireError, fields, plausible_head
from modelshield.formats.tensorflow import ops as tensorflow_ops

ASSET_ESCAPE = Rule(
    id="TFM001",
    title="SavedModel asset file name leaves the export folder",
    severity=Severity.HIGH,
    category=Category.LOAD_TIME_CODE,
    overview="A meta graph's `asset_file_def` (or the legacy `saved_model_assets` collection) names an "
    "asset file that is absolute or climbs out with `../`. Both `tf.saved_model.load` and the TF1 loader "
    "join the name to `<export>/assets/` with `file_io.join` and feed the result to the graph, whose "
    "initialisers (vocabulary tables, `tf.io.read_file` of an asset) open it while the model loads.",
    attack="An asset named `../../../../home/user/.aws/credentials` or `/etc/passwd` makes the loader hand "
    "that path to the model's own ops: a lookup table initialised from it turns every line of the secret "
    "into a vocabulary the serving function can return, with no file op that looks out of place (table "
    "initialisers from assets are normal).",
    impact="Disclosure of files outside the model folder through the model's outputs, at load time.",
    remediation="Do not load the model. Assets are files inside `assets/`: ask the publisher for an export "
    "whose asset names are plain relative names.",
    example="`asset_file_def { tensor_info { name: 'Const:0' } filename: '../../../../etc/passwd' }`",
)

#: Fields walked at the top level and in a meta graph while detecting (writers put 2 and 7 there).
MAX_FIELDS = 65536
#: TensorFlow writes one meta graph per tag set: one in TF2, a few in TF1 exports.
MAX_META_GRAPHS = 256
#: Nesting of function references inside attribute values (NameAttrList.attr holds AttrValues);
#: TensorFlow writes two or three levels, deeper is refused rather than skipped.
MAX_ATTR_DEPTH = 8
#: Text-format SavedModels are debugging artefacts; parsing one builds a tree in memory.
MAX_TEXT_BYTES = 64 * 1024 * 1024
MAX_TEXT_DEPTH = 64


def count_meta_graphs(source: Source) -> int | None:
    """How many MetaGraphDefs a SavedModel holds, or None if the bytes are not a SavedModel.

    Recognised by what `loader_impl.parse_saved_model` accepts (`SavedModel.ParseFromString`):
    fields in any order, the schema version optional (nothing reads it); unknown fields, groups and
    known numbers with another wire type skipped as unknown. What makes it a SavedModel is its
    meta graphs: every length-delimited field 2 must parse as a MetaGraphDef (the parser rejects
    the file otherwise), and one must hold a graph, the only thing a loader runs. Other protobufs
    fail this: ONNX's field 2 is a producer string, a GraphDef's nodes and keras_metadata.pb's
    objects do not walk as meta graphs, fingerprint.pb has no message in field 2.
    """
    if not plausible_head(source):
        return None
    meta_graphs = 0
    has_graph = False
    try:
        for index, item in enumerate(fields(source, 0, source.size, MAX_FIELDS)):
            if index == MAX_FIELDS - 1:  # padded with unknown fields: claimed, and the scan fails closed
                return meta_graphs
            if item.number == 2 and item.wire_type == LEN:
                meta_graphs += 1
                has_graph = _is_meta_graph(source, item) or has_graph
    except WireError:
        return None
    return meta_graphs if has_graph else None


def _is_meta_graph(source: Source, item: Field) -> bool:
    """Whether a meta graph holds a graph_def that reads as one; raises `WireError` if it does not
    walk as a message."""
    graph = False
    for inner in fields(source, item.offset, item.offset + item.value, MAX_FIELDS):
        if inner.number == GRAPH_DEF[0] and inner.wire_type == LEN:
            graph = graph or _plausible_graph(source, inner)
    return graph


#: How TensorFlow names ops and library functions; NodeDef.op is a proto3 string (UTF-8 enforced).
_OP_NAME = re.compile(rb"[A-Za-z_][\w>./-]*")
_MAX_OP_NAME = 1024


#: Nodes whose structure a graph of custom ops only must show before it is taken for a GraphDef.
_SNIFF_NODES = 16


def _plausible_graph(source: Source, graph: Field, *, empty: bool = True, broken: bool = True) -> bool:
    """Whether a GraphDef's nodes read as NodeDefs: every node has an op name, and one names an op
    stock TensorFlow registers or a function of the graph's own library (or, with `empty`, the
    graph has a function library). All nodes are looked at, not a few: a graph that opens with
    custom ops or function calls is still a graph to `import_graph_def`.

    SavedModel and a bare MetaGraphDef (a TF1 `.meta`) nest the same messages one level apart, so
    each would otherwise read as the other: a meta_info_def or a FunctionDef read as a node has no
    such op (its field 2 is a binary message or absent). MediaPipe's graph configs
    (`node { calculator: ... }`) name calculators, not ops."""
    library = False
    libraries: list[Field] = []
    called: set[bytes] = set()
    for node in fields(source, graph.offset, graph.offset + graph.value, MAX_FIELDS):
        if node.number == LIBRARY[0] and node.wire_type == LEN and node.value > 0:
            library = True
            libraries.append(node)
        if node.number != NODE[0] or node.wire_type != LEN:
            continue
        op = b""
        try:
            for inner in fields(source, node.offset, node.offset + node.value, MAX_FIELDS):
                if inner.number == OP[0] and inner.wire_type == LEN:
                    op = source.read_at(inner.offset, inner.value) if inner.value <= _MAX_OP_NAME else b""
        except WireError:
            return broken  # inside a SavedModel a broken node is still a node: the scan fails closed
        if _OP_NAME.fullmatch(op) is None:
            return False
        if tensorflow_ops.is_registered(op.decode()):
            return True
        called.add(op)
    # No registered op: inside a SavedModel a graph whose ops live in its function library (TF2
    # keeps them there); a FunctionDefLibrary read as a graph has none unless it lists gradients.
    # A bare graph whose nodes call its own library functions is one too.
    return (empty and library) or bool(called & _function_names(source, libraries))


def _function_names(source: Source, libraries: Iterable[Field]) -> set[bytes]:
    """The names of a FunctionDefLibrary's functions (function 1 -> signature 1 -> name 1)."""
    names: set[bytes] = set()
    for library in libraries:
        for function in fields(source, library.offset, library.offset + library.value, MAX_FIELDS):
            if function.number != FUNCTION[0] or function.wire_type != LEN:
                continue
            for signature in fields(source, function.offset, function.offset + function.value, MAX_FIELDS):
                if signature.number != SIGNATURE[0] or signature.wire_type != LEN:
                    continue
                for item in fields(source, signature.offset, signature.offset + signature.value, MAX_FIELDS):
                    if item.number == NAME[0] and item.wire_type == LEN and item.value <= _MAX_OP_NAME:
                        names.add(source.read_at(item.offset, item.value))
    return names


def is_meta_graph_def(source: Source) -> bool:
    """Whether the bytes are a bare MetaGraphDef, as `tf.compat.v1.train.import_meta_graph` reads a
    checkpoint's `.meta` (`MetaGraphDef.ParseFromString`): a graph_def whose nodes read as nodes,
    fields in any order, unknown fields skipped. A graph with no nodes is not claimed."""
    if not plausible_head(source):
        return False
    try:
        graphs = [f for f in fields(source, 0, source.size, MAX_FIELDS) if f.number == GRAPH_DEF[0]]
        graphs = [g for g in graphs if g.wire_type == LEN]
        # TF1 graphs always have nodes (a `.meta` is written from a live graph with a saver)
        return bool(graphs) and all(_plausible_graph(source, g, empty=False) for g in graphs)
    except WireError:
        return False


_COMMENTS = rb"(?:\s|#[^\n]*\n)*"
#: What `text_format.Parse` accepts before the first meta graph: comments, the optional schema
#: version with an optional separator, and `meta_graphs`, its colon optional, opening `{` or `<`.
_TEXT_START = re.compile(
    rb"\A" + _COMMENTS + rb"(?:saved_model_schema_version\s*:\s*\d+\s*[;,]?" + _COMMENTS + rb")?"
    rb"meta_graphs\s*:?\s*[{<]"
)


def is_text_saved_model(source: Source) -> bool:
    """A text-format SavedModel starts with the schema version and/or the first `meta_graphs` block."""
    return _TEXT_START.match(source.head(4096)) is not None


# -- one view of binary and text messages -----------------------------------------------------------

#: Fields used, as (number, text-format name); both encodings are read through the same code.
META_GRAPHS = (2, "meta_graphs")
GRAPH_DEF, SAVER_DEF, OBJECT_GRAPH_DEF = (2, "graph_def"), (3, "saver_def"), (7, "object_graph_def")
NODE, LIBRARY = (1, "node"), (2, "library")
FUNCTION, GRADIENT = (1, "function"), (2, "gradient")
FUNCTION_ATTR = (5, "attr")  # FunctionDef.attr
SIGNATURE, NODE_DEF = (1, "signature"), (3, "node_def")
INPUT_ARG = (2, "input_arg")  # OpDef.input_arg, each an ArgDef named by field 1
TENSOR, STRING_VAL = (8, "tensor"), (8, "string_val")  # AttrValue.tensor, TensorProto.string_val
NAME, OP, INPUT, ATTR = (1, "name"), (2, "op"), (3, "input"), (5, "attr")
KEY, VALUE = (1, "key"), (2, "value")
LIST, S, FUNC, LIST_FUNC = (1, "list"), (2, "s"), (10, "func"), (9, "func")
FUNC_ATTR = (2, "attr")  # NameAttrList.attr
GRADIENT_NAMES = ((1, "function_name"), (2, "gradient_func"))
REGISTERED_GRADIENT, REGISTERED_GRADIENT_FUNC = (3, "registered_gradients"), (1, "gradient_func")
FILENAME_TENSOR, SAVE_TENSOR, RESTORE_OP = (1, "filename_tensor_name"), (2, "save_tensor_name"), (3, "restore_op_name")
OBJECT_NODES, CONCRETE_FUNCTIONS = (1, "nodes"), (2, "concrete_functions")
SAVED_FUNCTION, BARE_FUNCTION = (6, "function"), (8, "bare_concrete_function")
CONCRETE_NAMES, BARE_NAME = (1, "concrete_functions"), (1, "concrete_function_name")
ASSET_FILE_DEF, ASSET_FILENAME = (6, "asset_file_def"), (2, "filename")
COLLECTION_DEF, ANY_LIST, ANY_ITEM, TYPE_URL = (4, "collection_def"), (5, "any_list"), (1, "value"), (1, "type_url")
#: Any.value read as the message it packs; text format writes it expanded under this name
ANY_ASSET = (2, "[type.googleapis.com/tensorflow.AssetFileDef]")
ASSETS_COLLECTION = "saved_model_assets"

FieldId = tuple[int, str]


class Message(Protocol):
    def messages(self, field_id: FieldId) -> Iterator[Message]: ...

    def strings(self, field_id: FieldId) -> Iterator[str]: ...


class WireMessage:
    """A binary message: walks its fields each time one is asked for (cheap: payloads are skipped)."""

    def __init__(self, source: Source, start: int, end: int) -> None:
        self.source, self.start, self.end = source, start, end

    def _fields(self, number: int) -> Iterator[Field]:
        # Every field takes at least two bytes, so this limit walks the whole message. A field of
        # this number with another wire type is an unknown field to the parser: skipped, as it does.
        for item in fields(self.source, self.start, self.end, (self.end - self.start) // 2 + 1):
            if item.number == number and item.wire_type == LEN:
                yield item

    def messages(self, field_id: FieldId) -> Iterator[Message]:
        for item in self._fields(field_id[0]):
            yield WireMessage(self.source, item.offset, item.offset + item.value)

    def strings(self, field_id: FieldId) -> Iterator[str]:
        for item in self._fields(field_id[0]):
            yield self.source.read_at(item.offset, item.value).decode("utf-8", "replace")


@dataclass
class TextMessage:
    """A text-format message: the fields the analyser reads, by name."""

    values: dict[str, list[str | TextMessage]] = field(default_factory=dict)

    def messages(self, field_id: FieldId) -> Iterator[Message]:
        return (v for v in self.values.get(field_id[1], ()) if isinstance(v, TextMessage))

    def strings(self, field_id: FieldId) -> Iterator[str]:
        return (v for v in self.values.get(field_id[1], ()) if isinstance(v, str))


#: Text-format fields worth keeping; everything else (tensors, shapes, object graph details) is
#: tokenised and dropped, so memory follows what the analysis needs.
_TEXT_KEEP = frozenset(
    name
    for _, name in (
        META_GRAPHS,
        GRAPH_DEF,
        SAVER_DEF,
        OBJECT_GRAPH_DEF,
        NODE,
        LIBRARY,
        FUNCTION,
        GRADIENT,
        SIGNATURE,
        NODE_DEF,
        NAME,
        OP,
        INPUT,
        ATTR,
        KEY,
        VALUE,
        LIST,
        S,
        FUNC,
        *GRADIENT_NAMES,
        REGISTERED_GRADIENT,
        INPUT_ARG,
        TENSOR,
        STRING_VAL,
        FILENAME_TENSOR,
        SAVE_TENSOR,
        RESTORE_OP,
        OBJECT_NODES,
        CONCRETE_FUNCTIONS,
        SAVED_FUNCTION,
        BARE_FUNCTION,
        BARE_NAME,
        ASSET_FILE_DEF,
        ASSET_FILENAME,
        COLLECTION_DEF,
        ANY_LIST,
        TYPE_URL,
        ANY_ASSET,
    )
)
_TOKENS = re.compile(
    rb"""\s+|\#[^\n]*|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[{}<>\[\]:;,]|[^\s{}<>\[\]:;,"'\#]+""", re.DOTALL
)
_IDENTIFIER = re.compile(rb"[A-Za-z_]\w*")


def parse_text(data: bytes) -> TextMessage:
    """Parse protobuf text format into nested `TextMessage`s, iteratively and within bounds.

    Accepts what `text_format` writes (`name: value`, `name { ... }`, `name < ... >`, scalar lists
    `[a, b]`, comments, `;`/`,` separators); anything else is a `WireError` (fail closed).
    """
    root = TextMessage()
    stack: list[TextMessage | None] = [root]
    name: bytes | None = None
    in_list = False
    pos = 0
    while pos < len(data):
        match = _TOKENS.match(data, pos)
        if match is None:
            raise WireError(f"unexpected character at offset {pos} of the text SavedModel")
        token, pos = match.group(), match.end()
        if token[:1].isspace() or token[:1] == b"#":
            continue
        if name is None:
            if token in (b"}", b">"):
                if len(stack) == 1:
                    raise WireError(f"unbalanced '{token.decode()}' at offset {match.start()}")
                stack.pop()
            elif token == b"[":  # an extension or Any type URL: `[type.googleapis.com/x.Y] { ... }`
                end = data.find(b"]", pos)
                if end < 0:
                    raise WireError(f"unterminated '[' at offset {match.start()}")
                name, pos = data[match.start() : end + 1], end + 1
            elif token not in (b",", b";"):
                if not _IDENTIFIER.fullmatch(token):
                    raise WireError(f"expected a field name at offset {match.start()}")
                name = token
            continue
        parent = stack[-1]
        key = name.decode()
        if token == b":" and not in_list:
            continue
        if token in (b"{", b"<") and not in_list:
            child = TextMessage() if parent is not None and key in _TEXT_KEEP else None
            if child is not None and parent is not None:
                parent.values.setdefault(key, []).append(child)
            stack.append(child)
            if len(stack) > MAX_TEXT_DEPTH:
                raise LimitExceeded("max_depth", f"text SavedModel nested deeper than {MAX_TEXT_DEPTH}")
            name = None
        elif token == b"[" and not in_list:
            in_list = True
        elif token == b"]" and in_list:
            in_list, name = False, None
        elif token == b"," and in_list:
            continue
        elif token[:1] in b"{}<>[]:;,":
            raise WireError(f"unexpected '{token.decode()}' at offset {match.start()}")
        else:
            if parent is not None and key in _TEXT_KEEP:
                parent.values.setdefault(key, []).append(_scalar(token))
            if not in_list:
                name = None
    if len(stack) != 1 or name is not None:
        raise WireError("the text SavedModel ends inside a message")
    return root


def _scalar(token: bytes) -> str:
    if token[:1] in (b'"', b"'"):
        return codecs.escape_decode(token[1:-1])[0].decode("utf-8", "replace")
    return token.decode("utf-8", "replace")


# -- the graph model -----------------------------------------------------------------------------------


class Node(NamedTuple):
    name: str
    op: str
    #: names of the nodes (or function arguments) this one depends on, control inputs included
    inputs: list[str]
    calls: list[str]
    strings: dict[str, list[str]]
    #: data inputs as written (`node`, `node:1`, `node:output:0`), in argument order
    data: tuple[str, ...] = ()
    #: the function a `PartitionedCall`/`StatefulPartitionedCall` calls with its inputs as arguments
    direct: str = ""
    #: the short string values of a `Const` (None when it has none or one is too long to keep)
    consts: tuple[str, ...] | None = None


class MetaGraph(NamedTuple):
    nodes: list[Node]
    functions: dict[str, list[Node]]
    #: functions referenced from outside the graph: gradients, those the object graph exposes, and
    #: those with an `api_implements` attribute (Grappler may swap one in for a called function)
    exposed: set[str]
    #: graph nodes the saver runs: its save tensor's and its restore op's
    saver_roots: list[str]
    #: the tensor the loader feeds with the checkpoint path (`saver_def.filename_tensor_name`)
    filename: str = ""
    #: each function's argument names, in order
    args: Mapping[str, Sequence[str]] = MappingProxyType({})
    #: asset file names (`asset_file_def` and the legacy `saved_model_assets` collection)
    assets: Sequence[str] = ()


def _attr_values(value: Message, depth: int, calls: list[str], strings: list[str]) -> None:
    """Collect function names and strings of one AttrValue (`func`, `list.func`, `s`, `list.s`)."""
    if depth > MAX_ATTR_DEPTH:
        raise WireError(f"attribute values nested deeper than {MAX_ATTR_DEPTH}")
    strings.extend(value.strings(S))
    funcs = list(value.messages(FUNC))
    for listed in value.messages(LIST):
        strings.extend(listed.strings(S))
        funcs.extend(listed.messages(LIST_FUNC))
    for func in funcs:
        calls.extend(func.strings(NAME))
        for entry in func.messages(FUNC_ATTR):
            for inner in entry.messages(VALUE):
                _attr_values(inner, depth + 1, calls, [])


def last(values: Iterable[str]) -> str:
    """A singular field's value as the parser sees it: a field repeated on the wire is legal and the
    last occurrence wins, so reading the first would judge an op TensorFlow never runs."""
    value = ""
    for value in values:  # noqa: B007 - the loop keeps the last one
        pass
    return value


#: Ops whose attribute strings the saver's filename check reads (`StringJoin.separator`).
_PATH_OPS = frozenset({"StringJoin"})
#: Constant strings kept per `Const` node for that check: checkpoint suffixes are a few bytes.
_MAX_CONST = 256
_MAX_CONSTS = 16
_CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})


def _const_strings(message: Message) -> tuple[str, ...] | None:
    values: list[str] = []
    for entry in message.messages(ATTR):
        if last(entry.strings(KEY)) != "value":
            continue
        for value in entry.messages(VALUE):
            for tensor in value.messages(TENSOR):
                values.extend(tensor.strings(STRING_VAL))
    if not values or len(values) > _MAX_CONSTS or any(len(v) > _MAX_CONST for v in values):
        return None
    return tuple(values)


def read_node(message: Message, *, all_strings: bool = False) -> Node:
    """One NodeDef; `all_strings` keeps every op's string attributes (a Flex op's NodeDef may run
    under another op's name, so its attributes are judged whatever its own op says)."""
    name = last(message.strings(NAME))
    op = last(message.strings(OP))
    calls: list[str] = []
    strings: dict[str, list[str]] = {}
    direct = ""
    for entry in message.messages(ATTR):
        values: list[str] = []
        before = len(calls)
        for value in entry.messages(VALUE):
            _attr_values(value, 0, calls, values)
        key = last(entry.strings(KEY))
        if values and (all_strings or op in tensorflow_ops.JUDGED_OPS or op in _PATH_OPS):
            strings[key] = values
        if key == "f" and op in _CALL_OPS and len(calls) > before:
            direct = calls[before]
    written = list(message.strings(INPUT))
    inputs = [text.lstrip("^").split(":", 1)[0] for text in written]
    data = tuple(text for text in written if not text.startswith("^"))
    consts = _const_strings(message) if op == "Const" else None
    return Node(name, op, inputs, calls, strings, data, direct, consts)


def read_assets(meta: Message) -> list[str]:
    """Asset file names, which both loaders join to `<export>/assets/` with `file_io.join` (an absolute
    name replaces the folder) and feed to the graph: TF2 `load.py` reads `asset_file_def`, the TF1
    `loader_impl.get_asset_tensors` also the legacy `saved_model_assets` collection of packed
    AssetFileDefs. Both are returned: a name in either is one the file asks a loader to open."""
    names = [last(asset.strings(ASSET_FILENAME)) for asset in meta.messages(ASSET_FILE_DEF)]
    for entry in meta.messages(COLLECTION_DEF):
        if last(entry.strings(KEY)) != ASSETS_COLLECTION:
            continue
        for collection in entry.messages(VALUE):
            for any_list in collection.messages(ANY_LIST):
                for item in any_list.messages(ANY_ITEM):
                    url = last(item.strings(TYPE_URL))
                    if url and not url.endswith("/tensorflow.AssetFileDef"):
                        continue  # `Any.Unpack` refuses another type: the loader reads no name from it
                    names.extend(last(asset.strings(ASSET_FILENAME)) for asset in item.messages(ANY_ASSET))
    return names


def read_meta_graph(meta: Message) -> MetaGraph:
    nodes: list[Node] = []
    functions: dict[str, list[Node]] = {}
    args: dict[str, list[str]] = {}
    exposed: set[str] = set()
    for graph in meta.messages(GRAPH_DEF):
        nodes += (read_node(node) for node in graph.messages(NODE))
        for library in graph.messages(LIBRARY):
            for function in library.messages(FUNCTION):
                signatures = list(function.messages(SIGNATURE))
                name = last(n for sig in signatures for n in sig.strings(NAME))
                functions.setdefault(name, []).extend(read_node(node) for node in function.messages(NODE_DEF))
                args[name] = [last(arg.strings(NAME)) for sig in signatures for arg in sig.messages(INPUT_ARG)]
                if any(last(entry.strings(KEY)) == "api_implements" for entry in function.messages(FUNCTION_ATTR)):
                    exposed.add(name)
            for gradient in library.messages(GRADIENT):
                for field_id in GRADIENT_NAMES:
                    exposed.update(gradient.strings(field_id))
            # `tf.custom_gradient` functions, registered by load.py for their op type: run by any gradient
            for registered in library.messages(REGISTERED_GRADIENT):
                exposed.update(registered.strings(REGISTERED_GRADIENT_FUNC))
    for objects in meta.messages(OBJECT_GRAPH_DEF):
        for entry in objects.messages(CONCRETE_FUNCTIONS):
            exposed.update(entry.strings(KEY))
        for obj in objects.messages(OBJECT_NODES):
            for saved in obj.messages(SAVED_FUNCTION):
                exposed.update(saved.strings(CONCRETE_NAMES))
            for bare in obj.messages(BARE_FUNCTION):
                exposed.update(bare.strings(BARE_NAME))
    savers = list(meta.messages(SAVER_DEF))  # a message repeated on the wire is merged field by field
    saver_roots = [
        text.split(":", 1)[0]
        for f in (SAVE_TENSOR, RESTORE_OP)
        if (text := last(s for saver in savers for s in saver.strings(f)))
    ]
    filename = last(s for saver in savers for s in saver.strings(FILENAME_TENSOR))
    return MetaGraph(nodes, functions, exposed, saver_roots, filename, args, read_assets(meta))


def read_saved_model(root: Message) -> list[MetaGraph]:
    meta_graphs: list[MetaGraph] = []
    for meta in root.messages(META_GRAPHS):
        if len(meta_graphs) == MAX_META_GRAPHS:  # each costs a walk: a flood of tiny ones is a time bomb
            raise LimitExceeded("max_members", f"more than {MAX_META_GRAPHS} meta graphs in one SavedModel")
        meta_graphs.append(read_meta_graph(meta))
    return meta_graphs


# -- which checkpoint ops belong to the saver ------------------------------------------------------------


def _reachable(roots: Iterable[str], successors: Callable[[str], Iterable[str]]) -> set[str]:
    """Every name reachable from `roots` (which must be known to `successors`), roots included."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(n for n in successors(name) if n not in seen)
    return seen


def _ancestors(by_name: dict[str, Node], roots: Iterable[str]) -> set[str]:
    return _reachable((r for r in roots if r in by_name), lambda n: (i for i in by_name[n].inputs if i in by_name))


def _callees(functions: dict[str, list[Node]], roots: Iterable[str]) -> set[str]:
    def calls(name: str) -> Iterator[str]:
        for node in functions[name]:
            yield from (c for c in (*node.calls, node.op) if c in functions)

    return _reachable((r for r in roots if r in functions), calls)


def _node_calls(nodes: Iterable[Node]) -> list[str]:
    return [c for node in nodes for c in (*node.calls, node.op)]


def saver_only(meta: MetaGraph) -> tuple[set[str], set[str]]:
    """Graph nodes and library functions that only the saver reaches: their checkpoint ops are the
    generated save/restore machinery (TF2 `__inference__traced_save_N`, TF1 `save/SaveV2`)."""
    by_name = {node.name: node for node in meta.nodes}
    saver = _ancestors(by_name, meta.saver_roots)
    others = _ancestors(by_name, (name for name in by_name if name not in saver))
    saver_nodes = saver - others
    saver_functions = _callees(meta.functions, _node_calls(by_name[n] for n in saver_nodes))
    other_roots = [
        *_node_calls(node for node in meta.nodes if node.name not in saver_nodes),
        *(name for name in meta.functions if name not in saver_functions),
        *meta.exposed,
    ]
    return saver_nodes, saver_functions - _callees(meta.functions, other_roots)


# -- does a checkpoint op do what the standard Saver does? ------------------------------------------------

#: Ops a standard Saver builds its paths with (saver.py, functional_saver.py): pass-throughs, the
#: `_temp/part` (or `.part` on S3) suffix join, the shard name, and the list of shards to merge.
_PASS_THROUGH = frozenset({"Identity", "PlaceholderWithDefault", "Snapshot"})
_SELECT = frozenset({"Select", "SelectV2"})
#: A derivation chain longer than this is not one a Saver writes: the path is judged not fed.
_MAX_PATH_DEPTH = 32
#: Combinations of constant suffixes followed before the path is judged not fed.
_MAX_SUFFIXES = 16
#: Rounds of passing the fed filename down calls: one per level of saver functions calling each
#: other (TensorFlow writes one level), so a deeper chain's ops are reported rather than walked.
_MAX_ROUNDS = 8


#: A constant whose strings were not kept (long, many, or not strings): still a constant, and never a
#: safe suffix (the marker holds `..` and a NUL).
_UNKEPT_TEXT = "\0..(a constant too long to keep)"
_UNKEPT = frozenset({_UNKEPT_TEXT})


class _Fed:
    """The value starts with the fed filename (the loader's variables path)."""


FED = _Fed()
#: A value is the fed filename (FED), a set of known constant strings, or anything else (None).
PathValue = _Fed | frozenset[str] | None


def _ref(text: str) -> tuple[str, int]:
    """`node`, `node:1` (graph) or `node:output:1` (function) as (node, output index)."""
    parts = text.split(":")
    index = parts[-1] if len(parts) > 1 else "0"
    return parts[0], int(index) if index.isdigit() else -1


def _safe_suffix(text: str) -> bool:
    """A suffix appended to the fed path that cannot climb out of it or cut it short."""
    return ".." not in text and "\0" not in text


class _Scope:
    """The nodes of the graph or of one function, with what is known about its path values."""

    def __init__(self, nodes: Iterable[Node], fed: set[tuple[str, int]], fed_args: set[str]) -> None:
        self.by_name = {node.name: node for node in nodes}
        self.fed, self.fed_args = fed, fed_args
        self.memo: dict[tuple[str, int], PathValue] = {}

    def value(self, text: str, depth: int = 0) -> PathValue:
        name, index = _ref(text)
        if (name, index) in self.fed or (name in self.fed_args and name not in self.by_name):
            return FED
        key = (name, index)
        if key in self.memo:
            return self.memo[key]
        self.memo[key] = None  # a cycle is not a Saver's path
        node = self.by_name.get(name)
        result = None if node is None or depth > _MAX_PATH_DEPTH else self._compute(node, index, depth + 1)
        self.memo[key] = result
        return result

    def _compute(self, node: Node, index: int, depth: int) -> PathValue:
        data = node.data
        if node.op == "Const":
            if index != 0:
                return None
            return frozenset(node.consts) if node.consts is not None else _UNKEPT
        if node.op in _PASS_THROUGH and index == 0 and data:
            return self.value(data[0], depth)
        if node.op == "IdentityN" and 0 <= index < len(data):
            return self.value(data[index], depth)
        if node.op in _SELECT and index == 0 and len(data) == 3:
            return _either(self.value(data[1], depth), self.value(data[2], depth))
        if node.op == "ShardedFilename" and index == 0 and data:
            return FED if self.value(data[0], depth) is FED else None
        if node.op == "Pack" and index == 0 and data:
            return FED if all(self.value(d, depth) is FED for d in data) else None
        if node.op == "StringJoin" and index == 0 and data:
            return self._joined(node, depth)
        return None

    def _joined(self, node: Node, depth: int) -> PathValue:
        """`StringJoin([fed, suffix...])`: the fed path first, then constant suffixes that stay inside it."""
        if self.value(node.data[0], depth) is not FED:
            return None
        separator = last(node.strings.get("separator", ()))
        suffixes = {""}
        for text in node.data[1:]:
            value = self.value(text, depth)
            if not isinstance(value, frozenset):
                return None
            suffixes = {done + separator + more for done in suffixes for more in value}
            if len(suffixes) > _MAX_SUFFIXES:
                return None
        return FED if all(_safe_suffix(suffix) for suffix in suffixes) else None


def _either(first: PathValue, second: PathValue) -> PathValue:
    if first is FED and second is FED:
        return FED
    if isinstance(first, frozenset) and isinstance(second, frozenset) and len(first | second) <= _MAX_SUFFIXES:
        return first | second
    return None


def _positional_calls(node: Node, functions: Mapping[str, object]) -> tuple[str, list[str]]:
    """The function this node calls with its inputs as arguments (a direct call or `f` of a
    PartitionedCall), and the functions it reaches otherwise (loop bodies, branches, dataset `f`...)."""
    target = node.direct or (node.op if node.op in functions else "")
    others = [c for c in node.calls if c in functions]
    if target and target in others:
        others.remove(target)
    if target in others:  # called positionally and some other way too: its arguments are unknown
        target = ""
    return target, others


def unfed_checkpoint_ops(meta: MetaGraph, saver_nodes: set[str], saver_functions: set[str]) -> set[tuple[str, str]]:
    """The checkpoint ops of the saver's own code whose path inputs do not come from the filename the
    loader feeds (`saver_def.filename_tensor_name`), as (function or "" for the graph, node name).

    A standard Saver builds every path from that tensor: the TF1 loader and TensorFlow Serving run
    the restore op with it fed, the generated `__inference__traced_save/restore` functions receive it
    as their `file_prefix` argument. A constant path, or a suffix that climbs out (`/../`), is not
    what a Saver does, so such an op is not exempt. An argument counts as the fed filename only if
    every call of its function passes it so (least fixpoint: a recursive pass never qualifies)."""
    fed = {_ref(meta.filename)} if meta.filename else set()
    fed_args: dict[str, set[str]] = {name: set() for name in saver_functions}
    callers = [("", [n for n in meta.nodes if n.name in saver_nodes])]
    callers += [(name, meta.functions[name]) for name in saver_functions]
    for _ in range(_MAX_ROUNDS):  # stopping early leaves arguments unfed: their ops are reported
        scopes = {"": _Scope(callers[0][1], fed, set())}
        scopes.update((name, _Scope(meta.functions[name], set(), fed_args[name])) for name in saver_functions)
        passed: dict[str, list[set[str]]] = {name: [] for name in saver_functions}
        for scope_name, nodes in callers:
            for node in nodes:
                target, others = _positional_calls(node, meta.functions)
                for other in others:
                    if other in passed:
                        passed[other].append(set())
                if target in passed:
                    args = meta.args.get(target, ())
                    values = [scopes[scope_name].value(text) for text in node.data]
                    passed[target].append({arg for arg, value in zip(args, values, strict=False) if value is FED})
        updated = {name: set.intersection(*calls) if calls else set() for name, calls in passed.items()}
        if updated == fed_args:
            break
        fed_args = updated
    unfed: set[tuple[str, str]] = set()
    for scope_name, nodes in callers:
        for node in nodes:
            positions = tensorflow_ops.CHECKPOINT_PATH_INPUTS.get(node.op)
            if positions is None:
                continue
            scope = scopes[scope_name]
            if any(p >= len(node.data) or scope.value(node.data[p]) is not FED for p in positions):
                unfed.add((scope_name, node.name))
    return unfed


def reachable_functions(meta: MetaGraph) -> set[str]:
    """Library functions the loader can run: those graph nodes call (a TF1 session may run any node),
    those the object graph restores and exposes (signatures, methods, saveables' save and restore
    functions), gradients and swappable implementations, and everything they call in turn.

    A traced function that nothing references (TF 2 Estimator exports carry unused
    `__inference__traced_save/restore` functions) is loaded into the function runtime and never run.
    """
    return _callees(meta.functions, [*_node_calls(meta.nodes), *meta.exposed])


class Uses(NamedTuple):
    """Where judged op uses go: live code, unreachable functions, and checkpoint ops of a graph
    saved without its saver definition (a bare GraphDef), where the saver cannot be told apart."""

    live: tensorflow_ops.OpUses
    unreachable: tensorflow_ops.OpUses
    saverless: tensorflow_ops.OpUses | None
    #: table initialisers whose file name is a constant of the graph: not an asset the loader feeds
    constant: tensorflow_ops.OpUses


_UNREACHABLE = (
    "; unreachable: no graph node, signature, object-graph function, gradient or implementation swap "
    "calls these functions, so loading and serving never run them"
)
_UNFED = "in the saver's code, but its path is not the filename the loader feeds"
#: Table initialisers and the input that names their file (lookup_ops.cc).
_TABLE_FILE_INPUT = {"InitializeTableFromTextFile": 1, "InitializeTableFromTextFileV2": 1}
_CONSTANT_TABLE = (
    "; the file name is a constant in the graph, not an asset path the loader feeds, so the table is "
    "filled from that file wherever the model is served"
)
_SAVERLESS = (
    "; the graph carries no saver definition, so a TF1 Saver's own checkpoint nodes (written with "
    "training graphs) cannot be told apart: check that nothing you fetch depends on them"
)


def judge_meta_graph(meta: MetaGraph, index: int, uses: Uses) -> None:
    """Judge every op of the graph and its library, each use where `uses` says it belongs."""
    saver_nodes, saver_functions = saver_only(meta)
    unfed = unfed_checkpoint_ops(meta, saver_nodes, saver_functions)
    reachable = reachable_functions(meta)
    prefix = f"meta graph {index}: " if index else ""
    places = [(f"{prefix}graph", "", meta.nodes, saver_nodes, False, uses.saverless or uses.live)]
    places += [
        (
            f"{prefix}function {name}",
            name,
            nodes,
            set(),
            name in saver_functions,
            uses.live if name in reachable else uses.unreachable,
        )
        for name, nodes in meta.functions.items()
    ]
    for place, scope, nodes, exempt_nodes, exempt_all, into in places:
        values: _Scope | None = None
        for node in nodes:
            if not node.op or node.op in meta.functions:
                continue  # no op (TensorFlow refuses such a node), or a library function's call, judged there
            position = _TABLE_FILE_INPUT.get(node.op)
            if position is not None and into is not uses.unreachable and position < len(node.data):
                values = values or _Scope(nodes, set(), set())
                path = values.value(node.data[position])
                if isinstance(path, frozenset):
                    shown = sorted(p if p != _UNKEPT_TEXT else "(a long constant)" for p in path)
                    uses.constant.add(node.op, place, {**node.strings, "filename": shown})
                    continue
            if node.op in tensorflow_ops.CHECKPOINT_OPS and (exempt_all or node.name in exempt_nodes):
                if (scope, node.name) not in unfed:
                    continue
                uses.live.add(node.op, f"{place} ({_UNFED})", node.strings)
                continue
            live = into is uses.saverless and node.op not in tensorflow_ops.CHECKPOINT_OPS
            (uses.live if live else into).add(node.op, place, node.strings)


def judge(
    ctx: Context, meta_graphs: Iterable[MetaGraph], format_name: str, *, saverless: bool = False
) -> Iterator[Finding]:
    allowed = ctx.policy.allowed(tensorflow_ops.CUSTOM_OPS_ALLOWLIST)
    uses = Uses(
        tensorflow_ops.OpUses(allowed),
        tensorflow_ops.OpUses(allowed),
        tensorflow_ops.OpUses(allowed) if saverless else None,
        tensorflow_ops.OpUses(allowed),
    )
    for index, meta in enumerate(meta_graphs):
        judge_meta_graph(meta, index, uses)
    yield from uses.live.findings(ctx, "op", format_name)
    yield from uses.unreachable.findings(ctx, "op", format_name, note=_UNREACHABLE, severity=Severity.INFO)
    if uses.saverless is not None:
        yield from uses.saverless.findings(ctx, "op", format_name, note=_SAVERLESS, severity=Severity.MEDIUM)
    yield from uses.constant.findings(ctx, "op", format_name, note=_CONSTANT_TABLE, severity=Severity.HIGH)


def is_graph_def(source: Source) -> bool:
    """Whether the bytes are a bare GraphDef (a frozen `.pb` that `tf.compat.v1.import_graph_def`
    loads): nodes first-class at the top level, the first one a NodeDef with an op name. SavedModel
    and fingerprint files have varints in field 1, a `.meta` a MetaInfoDef, keras_metadata.pb and
    SentencePiece models messages whose field 2 is not an op name."""
    if not plausible_head(source):
        return False
    try:
        whole = Field(0, LEN, 0, source.size)
        return _plausible_graph(source, whole, empty=False, broken=False) or _graph_by_structure(source)
    except WireError:
        return False


#: GraphDef fields (node, library, deprecated version, versions, debug_info) and NodeDef fields (name,
#: op, input, device, attr, experimental_debug_info, experimental_type), all length-delimited but one.
_GRAPH_FIELDS = {1: LEN, 2: LEN, 3: VARINT, 4: LEN, 5: LEN}
_NODE_FIELDS = frozenset(range(1, 8))
#: How TensorFlow names nodes (`kNodeNameRe` in graph/node_builder and importer.py).
_NODE_NAME = re.compile(rb"[A-Za-z0-9.][\w>./-]*")


def _graph_by_structure(source: Source) -> bool:
    """A GraphDef whose first nodes name no op stock TensorFlow registers (a graph of custom ops) is
    still one: only GraphDef's fields at the top, a `versions` VersionDef (every writer sets its
    producer), and nodes that are NodeDefs field by field, with node and op names as TensorFlow
    spells them and attributes that are map entries. MediaPipe graph configs have no field 4."""
    versions = False
    nodes = 0
    for item in fields(source, 0, source.size, MAX_FIELDS):
        if _GRAPH_FIELDS.get(item.number) != item.wire_type:
            return False
        if item.number == 4:
            inner = list(fields(source, item.offset, item.offset + item.value, 64))
            if not any(f.number == 1 for f in inner) or any(f.number > 3 or f.wire_type != VARINT for f in inner):
                return False
            versions = True
        elif item.number == 1 and nodes < _SNIFF_NODES:
            if not _is_node_def(source, item):
                return False
            nodes += 1
    return versions and nodes > 0


def _is_node_def(source: Source, node: Field) -> bool:
    name = op = b""
    for item in fields(source, node.offset, node.offset + node.value, MAX_FIELDS):
        if item.number not in _NODE_FIELDS or item.wire_type != LEN:
            return False
        if item.number in (1, 2):
            text = source.read_at(item.offset, item.value) if item.value <= _MAX_OP_NAME else b""
            name, op = (text, op) if item.number == 1 else (name, text)
        elif item.number == 5:
            entry = list(fields(source, item.offset, item.offset + item.value, 3))
            if [(f.number, f.wire_type) for f in entry] not in ([(1, LEN), (2, LEN)], [(1, LEN)]):
                return False
    return _NODE_NAME.fullmatch(name) is not None and _OP_NAME.fullmatch(op) is not None


class _AsMetaGraph:
    """A bare GraphDef seen as the graph_def of a meta graph with nothing else."""

    def __init__(self, graph: Message) -> None:
        self.graph = graph

    def messages(self, field_id: FieldId) -> Iterator[Message]:
        return iter([self.graph] if field_id == GRAPH_DEF else [])

    def strings(self, field_id: FieldId) -> Iterator[str]:
        return iter(())


def judge_assets(ctx: Context, meta_graphs: Iterable[MetaGraph]) -> Iterator[Finding]:
    for index, meta in enumerate(meta_graphs):
        for name in dict.fromkeys(meta.assets):
            reason = escape_reason(name)
            if reason is not None:
                where = f" in meta graph {index}" if index else ""
                evidence = f"asset file {name!r}{where} {reason}: the loader opens it in place of a file in assets/"
                yield ctx.finding(ASSET_ESCAPE, evidence, asset=name)


class SavedModelHandler(Handler):
    name = "savedmodel"
    label = "TensorFlow SavedModel"
    rules = (*tensorflow_ops.RULES, ASSET_ESCAPE)
    allowlists = (tensorflow_ops.CUSTOM_OPS_ALLOWLIST,)

    def detect(self, source: Source) -> bool:
        return count_meta_graphs(source) is not None or is_text_saved_model(source)

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        text = count_meta_graphs(source) is None
        if text and source.size > MAX_TEXT_BYTES:
            raise LimitExceeded("max_buffer_bytes", f"text SavedModel of {source.size} bytes is over {MAX_TEXT_BYTES}")
        data = ctx.read_whole(source, "SavedModel")
        if not text and len(list(fields(BytesSource(data), 0, len(data), MAX_FIELDS))) == MAX_FIELDS:
            raise LimitExceeded("max_members", f"{MAX_FIELDS} or more top-level fields in a SavedModel")
        try:
            root: Message = parse_text(data) if text else WireMessage(BytesSource(data), 0, len(data))
            meta_graphs = read_saved_model(root)
        except WireError as exc:
            raise ScanError(f"malformed SavedModel: {exc}") from exc
        yield from judge(ctx, meta_graphs, self.name)
        yield from judge_assets(ctx, meta_graphs)


_META_GRAPH_TEXT = re.compile(
    rb"\A" + _COMMENTS + rb"(?:meta_info_def|graph_def|saver_def|collection_def|signature_def)\s*:?\s*[{<]"
)
_GRAPH_TEXT = re.compile(rb"\A" + _COMMENTS + rb"(?:node|library|versions)\s*:?\s*[{<]")
_OP_FIELD = re.compile(rb"\bop\s*:\s*[\"']")


class _BareGraphHandler(Handler):
    """A graph saved without the SavedModel around it, binary or in text format (the TF1 readers
    fall back to text when the bytes do not parse), judged like a SavedModel's meta graph."""

    rules = tensorflow_ops.RULES
    allowlists = (tensorflow_ops.CUSTOM_OPS_ALLOWLIST,)
    #: the message at the top of the file, for error messages
    message: str
    #: whether the message has no saver definition (checkpoint ops of the graph are graded medium)
    saverless = False

    @abstractmethod
    def is_binary(self, source: Source) -> bool:
        """Whether the bytes are the binary message."""

    @abstractmethod
    def is_text(self, head: bytes) -> bool:
        """Whether the head starts the message in text format."""

    def detect(self, source: Source) -> bool:
        return self.is_binary(source) or self.is_text(source.head(4096))

    def read(self, root: Message) -> MetaGraph:
        return read_meta_graph(root)

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        text = not self.is_binary(source)
        if text and source.size > MAX_TEXT_BYTES:
            detail = f"text {self.message} of {source.size} bytes is over {MAX_TEXT_BYTES}"
            raise LimitExceeded("max_buffer_bytes", detail)
        data = ctx.read_whole(source, self.message)
        try:
            meta = self.read(parse_text(data) if text else WireMessage(BytesSource(data), 0, len(data)))
        except WireError as exc:
            raise ScanError(f"malformed {self.message}: {exc}") from exc
        yield from judge(ctx, [meta], self.name, saverless=self.saverless)


class MetaGraphHandler(_BareGraphHandler):
    """A bare MetaGraphDef: the `.meta` file a TF1 `Saver` writes beside every checkpoint, which
    `import_meta_graph` loads into a graph whose ops run when a session runs them. Judged like a
    SavedModel's meta graph: graph nodes, function library, the saver's own subgraph exempt.

    No suffix is claimed: `.meta` also names Unity, Dask and many other tools' files."""

    name = "tf-meta-graph"
    label = "TensorFlow MetaGraphDef (TF1 checkpoint .meta)"
    message = "MetaGraphDef"

    def is_binary(self, source: Source) -> bool:
        return is_meta_graph_def(source)

    def is_text(self, head: bytes) -> bool:
        return _META_GRAPH_TEXT.match(head) is not None


class GraphDefHandler(_BareGraphHandler):
    """A bare GraphDef: frozen graphs (`frozen_inference_graph.pb`) and `tf.io.write_graph` output,
    loaded with `import_graph_def` and run in a session. Without a saver definition, checkpoint ops
    in the graph are medium (a training graph's Saver nodes look the same); every other op as usual.

    No suffix is claimed: `.pb` names many protobufs."""

    name = "tf-graph"
    label = "TensorFlow GraphDef (frozen graph)"
    message = "GraphDef"
    saverless = True

    def is_binary(self, source: Source) -> bool:
        return is_graph_def(source)

    def is_text(self, head: bytes) -> bool:
        # MediaPipe graphs (`node { calculator: ... }`) also start with nodes; TensorFlow's have ops
        return _GRAPH_TEXT.match(head) is not None and _OP_FIELD.search(head) is not None

    def read(self, root: Message) -> MetaGraph:
        return read_meta_graph(_AsMetaGraph(root))
