"""ONNX models: operators that need native code supplied at load, and external-data references.

An ONNX file cannot carry code, but it can name operators that only a custom-op library (a shared
object the loader registers) implements, it can point tensors at files anywhere: loaders that
follow `external_data` have read arbitrary files (CVE-2022-25882, CVE-2024-27318, CVE-2026-27489),
or at a raw memory address (ONNX Runtime's `*/_ORT_MEM_ADDR_/*` location), and its `EPContext`
nodes hand an execution provider a precompiled engine, embedded or in a file the node names.
The model is decoded by our own bounded protobuf reader (`proto.py`), with the wire semantics of
ONNX Runtime's parser (merged repeated messages, last scalar wins), from bytes read here: nothing
opens an external file, which is only `stat`ed, never read. The `onnx` package is not imported,
except to look up an operator that the frozen copy of its registry lacks (a newer onnx release).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from modelshield.core.errors import LimitExceeded, ScanError
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.paths import escape_reason
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.source import Source
from modelshield.formats._data import load_data
from modelshield.formats._protobuf import LEN, VARINT, WireError, fields, plausible_head, read_text
from modelshield.formats.onnx.proto import Attribute, Graph, Model, Node, Tensor, decode_model

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
#: Top-level fields walked while detecting; real models have a handful plus metadata_props.
MAX_FIELDS = 4096

#: Every ONNX operator domain starts so (`ai.onnx`, `ai.onnx.ml`, `ai.onnx.preview.training`...).
ONNX_DOMAIN_PREFIX = "ai.onnx"
#: Domain names that mean the default ONNX operator set, besides the empty string.
DEFAULT_DOMAIN_ALIASES = frozenset({"", "ai.onnx"})
#: ONNX's own domains; `ai.onnx.training` is reserved by the spec and has no operators yet.
RESERVED_DOMAINS = frozenset({"ai.onnx.training"})
#: Domains of operators built into ONNX Runtime and its companion projects (onnxruntime constants.h,
#: onnxruntime-extensions): they run code that ships with the runtime, not with the model.
VENDOR_DOMAINS = frozenset(
    {
        "com.microsoft",
        "com.microsoft.nchwc",
        "com.microsoft.experimental",
        "com.microsoft.dml",
        "com.ms.internal.nhwc",
        "org.pytorch.aten",
        "com.intel.ai",
        "com.xilinx",
        "ai.onnx.contrib",
    }
)
#: Keys ONNX defines for `external_data` (onnx.proto, TensorProto.external_data).
EXTERNAL_KEYS = frozenset({"location", "offset", "length", "checksum", "basepath"})
#: Nodes visited per model; real models have at most a few hundred thousand.
MAX_NODES = 2_000_000
#: Embedded messages (nodes, attributes, external tensors, entries) kept per node allowed: memory stays
#: bounded; tensors that name no external data are not kept at all.
MESSAGES_PER_NODE = 2
#: Findings per rule, so a model with a million bad tensors stays a short report.
MAX_FINDINGS_PER_RULE = 20

_CUSTOM_OPS = (
    "ONNX Runtime and other runtimes resolve each node by (domain, op type). Operators outside the "
    "standard set run only if the application registers a custom-op library, a native shared object "
    "(`SessionOptions.register_custom_ops_library`) or Python callbacks (onnxruntime-extensions `PyOp`)."
)
_OPS_REMEDIATION = (
    "Find out which library implements the operators and review it as the code it is; load the model "
    "only with libraries you trust. Prefer models that use standard ONNX operators only."
)
_EXTERNAL_REMEDIATION = (
    "Do not load the model from a folder that holds anything else. Rewrite the external-data "
    "references to plain file names next to the model (`onnx.external_data_helper`), or ask the "
    "publisher for a corrected file; keep the `onnx` package at 1.21 or later."
)

CUSTOM_DOMAIN = Rule(
    id="ONX001",
    title="Operator from a custom domain needs native code at load",
    severity=Severity.MEDIUM,
    category=Category.INFERENCE_TIME_CODE,
    overview="Nodes use an operator domain that is neither ONNX's own nor a known runtime vendor's. "
    "The model only runs where a library implementing these operators is registered.",
    attack=_CUSTOM_OPS + " A model that requires such a library is how an attacker gets users to "
    "install and load their native code: the model is only the bait, the library is the payload.",
    impact="Whatever the custom-op library does runs in the inference process with its privileges.",
    remediation=_OPS_REMEDIATION,
    example="A node `Decrypt` in domain `com.example.ops`, shipped with `libexample_ops.so`.",
)

VENDOR_DOMAIN = Rule(
    id="ONX002",
    title="Operator from a runtime vendor's domain",
    severity=Severity.INFO,
    category=Category.INFERENCE_TIME_CODE,
    overview="Nodes use operators that ONNX Runtime or a companion project ships (`com.microsoft` "
    "contrib ops, `org.pytorch.aten`, onnxruntime-extensions' `ai.onnx.contrib`...). Optimised and "
    "quantised models use them routinely.",
    attack=_CUSTOM_OPS + " Vendor operators come with the runtime itself, so they need no extra "
    "library; they are listed so that the model's runtime requirements are known.",
    impact="The model needs that runtime; no code is supplied by the model's publisher.",
    remediation="Nothing to do if you use the named runtime; otherwise expect the model not to load.",
    example="`Attention` and `SkipLayerNormalization` in domain `com.microsoft`.",
)

UNKNOWN_OPERATOR = Rule(
    id="ONX003",
    title="Unknown operator in a standard or runtime-owned ONNX domain",
    severity=Severity.MEDIUM,
    category=Category.INFERENCE_TIME_CODE,
    overview="A node uses an operator name that neither ONNX nor ONNX Runtime defines in that standard "
    "domain, and no model-local function of that name exists. In a domain ONNX Runtime owns "
    "(`com.microsoft` and its layout domains) a name its registry lacks is low: a newer or training "
    "build may define it.",
    attack=_CUSTOM_OPS + " Custom-op libraries can register operators under standard and vendor domains "
    "too, so an unknown name in `ai.onnx` or `com.microsoft` is a custom operator that passes a glance "
    "at its domain.",
    impact="The model needs code from outside the model to run; that code runs in the inference process.",
    remediation=_OPS_REMEDIATION,
    example="A node `Exec` in the default domain; `Steal` in `com.microsoft`.",
)

EXTERNAL_ESCAPE = Rule(
    id="ONX004",
    title="External data location escapes the model folder",
    severity=Severity.HIGH,
    category=Category.MODEL_DEPENDENCY,
    overview="A tensor stores its data in an external file whose `location` is absolute, climbs out "
    "of the model folder with `..`, is a URL, contains a NUL byte, or resolves outside the folder "
    "through a symbolic link.",
    attack="`onnx.load` and ONNX Runtime read external data relative to the model. Path traversal in "
    "that lookup has been fixed repeatedly (CVE-2022-25882, CVE-2024-27318, CVE-2026-27489 for "
    "symlinks); an older or hand-written loader reads `/etc/passwd`, SSH keys or cloud credentials into "
    "a tensor, where model outputs or error messages can leak them.",
    impact="Disclosure of arbitrary files readable by the loading process; loading fails or depends on "
    "files that were never reviewed with the model.",
    remediation=_EXTERNAL_REMEDIATION,
    example="An initializer with `external_data {key: 'location' value: '../../.ssh/id_rsa'}`.",
)

EXTERNAL_INVALID = Rule(
    id="ONX005",
    title="Invalid external data reference",
    severity=Severity.MEDIUM,
    category=Category.MODEL_DEPENDENCY,
    overview="An external-data entry is malformed (no `location`, an `offset` or `length` that is not "
    "a non-negative integer, a key ONNX does not define) or its byte range lies outside the external "
    "file found next to the model.",
    attack="Unknown keys were set as attributes on onnx's `ExternalDataInfo` (CVE-2026-34445); ranges "
    "past the end make memory-mapping loaders fault or read the wrong bytes; loaders disagree on "
    "malformed entries, so the weights differ between tools.",
    impact="Loader crashes, out-of-bounds reads, or weights that differ from what was reviewed.",
    remediation=_EXTERNAL_REMEDIATION,
    example="`offset: 4096`, `length: 1048576` against a 10 kB `model.onnx.data`.",
)

EXTERNAL_MISSING = Rule(
    id="ONX006",
    title="External data file not found next to the model",
    severity=Severity.LOW,
    category=Category.MODEL_DEPENDENCY,
    overview="A tensor's external data file does not exist in the scanned model's folder, so its "
    "contents and size could not be checked.",
    attack="The file is fetched or placed separately at load time, from a source the scan never saw.",
    impact="Part of the model was not reviewed; loading fails or uses whatever file is there at load time.",
    remediation="Scan the model together with its external data files.",
    example="`model.onnx` scanned alone while its initializers live in `model.onnx.data`.",
)

_EP_CONTEXT = (
    "An `EPContext` node (ONNX Runtime's EP context cache) replaces a partition of the graph with a "
    "program precompiled for one execution provider (a TensorRT engine, a QNN context binary, an "
    "OpenVINO blob...). With `embed_mode=1` the program is the `ep_cache_context` attribute itself; with "
    "`embed_mode=0` the attribute is a file name that the provider joins to the model's folder and "
    "deserializes."
)

EP_CONTEXT_ESCAPE = Rule(
    id="ONX007",
    title="EPContext node loads a context binary from outside the model folder",
    severity=Severity.HIGH,
    category=Category.MODEL_DEPENDENCY,
    overview="An `EPContext` node with `embed_mode=0` names its context binary (or TensorRT's "
    "`onnx_model_filename` for weight refitting) with an absolute path, a path that climbs out of the "
    "model folder, a URL, a NUL byte, or a name that resolves outside the folder through a link.",
    attack=_EP_CONTEXT + " TensorRT's provider refuses absolute paths and `..`; the QNN, OpenVINO, "
    "Vitis AI and plugin providers each resolve the name their own way, and none checks symbolic links. "
    "A model that points its context at a file placed elsewhere (a download folder, a shared cache) "
    "makes the accelerator run a program nobody reviewed with the model.",
    impact="A precompiled program of unknown origin runs on the accelerator, or an arbitrary file is "
    "read and handed to the provider's deserializer.",
    remediation="Do not load the model; regenerate the EP context model yourself from the source ONNX "
    "model (`ep.context_enable=1`) on the target hardware.",
    example="`EPContext` with `embed_mode: 0`, `ep_cache_context: '../../shared/engine.bin'`.",
)

EP_CONTEXT_BINARY = Rule(
    id="ONX008",
    title="EPContext node runs a precompiled engine that cannot be analysed",
    severity=Severity.MEDIUM,
    category=Category.INFERENCE_TIME_CODE,
    overview="An `EPContext` node carries a precompiled program for an execution provider, embedded in "
    "the node or in a file next to the model. Its contents are a vendor's compiled format, which "
    "modelshield does not analyse; the rest of the model says nothing about what it computes.",
    attack=_EP_CONTEXT + " The graph a reviewer sees is only the node's inputs and outputs: what runs "
    "is the compiled program, whose deserializer is native code parsing attacker-supplied bytes, and "
    "some formats name plugin or op-package libraries that the provider loads.",
    impact="Whatever the compiled program computes, including outputs unrelated to the published graph; "
    "memory-safety bugs in the provider's deserializer are reachable from the file.",
    remediation="Take EP context models only from their real publisher, or regenerate them yourself from "
    "the source ONNX model on the target hardware.",
    example="`EPContext` with `source: 'QNNExecutionProvider'`, `embed_mode: 1` and a 40 MB `ep_cache_context`.",
)

MEMORY_ADDRESS = Rule(
    id="ONX009",
    title="External data location is a raw memory address",
    severity=Severity.HIGH,
    category=Category.MODEL_DEPENDENCY,
    overview="A tensor's external-data `location` is ONNX Runtime's in-memory tag `*/_ORT_MEM_ADDR_/*`, "
    "which tells a loader that `offset` is a pointer into its own process, not a file position.",
    attack="ONNX Runtime uses the tag internally for initializers it already holds in memory. A loader "
    "that honours it in a model read from a file copies `length` bytes from an address the file chose: a "
    "crash at best, process memory (keys, other users' inputs) in the model's outputs at worst. "
    "onnxruntime 1.16 does so (1.32 refuses the tag in model files), and so did OpenVINO's ONNX frontend.",
    impact="Denial of service or disclosure of the loading process's memory.",
    remediation="Do not load the model; no file written by a real exporter uses this location.",
    example="`external_data {location: '*/_ORT_MEM_ADDR_/*', offset: '140737488355328', length: '4096'}`.",
)

SESSION_CONFIG = Rule(
    id="ONX010",
    title="Model carries ONNX Runtime session options",
    severity=Severity.LOW,
    category=Category.INTEGRITY,
    overview="The model's `metadata_props` hold an `ort_config` JSON, which ONNX Runtime applies to the "
    "session when the process sets `ORT_LOAD_CONFIG_FROM_MODEL=1` (inference_session_utils.cc): thread "
    "pool sizes, execution mode, graph optimisation level and profiling.",
    attack="With the variable set, the file rather than the application decides how the session runs: "
    "`enable_profiling` makes every session write a JSON profile into the working directory, and "
    "thread counts in the thousands exhaust the host.",
    impact="Files written where the application runs; denial of service through thread pools.",
    remediation="Remove the `ort_config` entry, or make sure `ORT_LOAD_CONFIG_FROM_MODEL` is unset "
    "where the model runs.",
    example='`metadata_props {key: "ort_config" value: \'{"session_options": {"enable_profiling": 1}}\'}`',
)

RULES = (
    CUSTOM_DOMAIN,
    VENDOR_DOMAIN,
    UNKNOWN_OPERATOR,
    EXTERNAL_ESCAPE,
    EXTERNAL_INVALID,
    EXTERNAL_MISSING,
    EP_CONTEXT_ESCAPE,
    EP_CONTEXT_BINARY,
    MEMORY_ADDRESS,
    SESSION_CONFIG,
)


class OnnxModel(NamedTuple):
    ir_version: int
    producer: str


def read_model(source: Source) -> OnnxModel | None:
    """The identification of an ONNX ModelProto, or None if the bytes are not one.

    Recognised by what `onnx.load` / ONNX Runtime accept (`ModelProto.ParseFromString`): fields in
    any order; unknown fields, groups and known numbers with another wire type skipped as unknown;
    strings of any length and encoding (onnx.proto is proto2). What the runtimes require is an
    `ir_version` and a `graph`, and every length must land exactly on the end of the file. Random
    bytes and text fail the walk; SavedModel, GraphDef and the Keras metadata have no field 7.
    """
    if not plausible_head(source):
        return None
    ir_version = None
    producer = ""
    has_graph = False
    try:
        for index, item in enumerate(fields(source, 0, source.size, MAX_FIELDS)):
            if MODEL_FIELDS.get(item.number) != item.wire_type:
                continue  # unknown to the parser, skipped
            if item.number == 1:
                ir_version = item.value  # a repeated scalar: the parser keeps the last
            elif item.number == 2:
                producer = read_text(source, item, 4096) or ""
            has_graph = has_graph or item.number == 7
            if index == MAX_FIELDS - 1 and ir_version is not None:
                has_graph = True  # padded past the walk: claimed, and the parser judges the rest
    except WireError:
        return None
    if ir_version is None or ir_version not in IR_VERSIONS or not has_graph:
        return None
    return OnnxModel(ir_version, producer)


#: `onnx.TensorProto.EXTERNAL`, the data location of tensors stored outside the model file.
_EXTERNAL = 1


@functools.cache
def runtime_operators() -> dict[str, frozenset[str]]:
    """Operator names per domain that ONNX Runtime implements (data/onnxruntime_ops.json, from its registry)."""
    return {domain: frozenset(names) for domain, names in load_data("onnxruntime_ops.json")["domains"].items()}


@functools.cache
def standard_operators() -> dict[str, frozenset[str]]:
    """Operator names per standard domain: onnx's schema registry frozen into data/onnx_ops.json
    (scripts/gen_onnx_data.py), so that a scan never pays for importing onnx."""
    frozen = load_data("onnx_ops.json")["domains"]
    return {domain: frozenset(frozen.get(domain, ())) for domain in {*frozen, *RESERVED_DOMAINS}}


@functools.cache
def installed_operators() -> dict[str, frozenset[str]]:
    """The frozen table plus the installed onnx package's registry, which only ever grows: consulted only
    for an operator the frozen table lacks, so a newer onnx release's operators are never false alarms.
    Without onnx, the frozen table alone."""
    names = {domain: set(ops) for domain, ops in standard_operators().items()}
    try:
        import onnx.defs  # noqa: PLC0415 - costs most of a second; needed only for an operator newer than the table
    except ImportError:
        return standard_operators()
    for schema in onnx.defs.get_all_schemas_with_history():
        names.setdefault(schema.domain, set()).add(schema.name)
    return {domain: frozenset(ops) for domain, ops in names.items()}


@dataclass
class _OpUse:
    """Nodes of one (domain, operator): how many, and where the first one is."""

    count: int = 0
    first: str = ""


class EpContext(NamedTuple):
    """What an `EPContext` node hands its execution provider (contrib_defs.cc; onnx_ctx_model_helper.cc)."""

    where: str
    #: `embed_mode` values: providers read `ep_cache_context` as a file name when it is 0 (default 1)
    embed_modes: tuple[int, ...]
    #: `ep_cache_context` values: the program, or a file name relative to the model's folder
    contexts: tuple[bytes, ...]
    #: `onnx_model_filename` values: TensorRT refits a weight-stripped engine from this file in the folder
    model_filenames: tuple[str, ...]
    #: `main_context` values: 0 means the node runs a graph of another node's context and loads none itself
    main_contexts: tuple[int, ...] = (1,)

    @classmethod
    def of(cls, where: str, attributes: Iterable[tuple[str, int, bytes]]) -> EpContext:
        """From (name, int value, string value) of every attribute. A repeated attribute keeps every
        value: which one a provider's attribute map keeps is not the scanner's to guess."""
        values: dict[str, list[tuple[int, bytes]]] = {}
        for name, number, text in attributes:
            values.setdefault(name, []).append((number, text))
        embed_modes = tuple(number for number, _ in values.get("embed_mode", [])) or (1,)
        contexts = tuple(text for _, text in values.get("ep_cache_context", [])) or (b"",)
        model_files = tuple(text.decode("utf-8", "replace") for _, text in values.get("onnx_model_filename", []))
        main = tuple(number for number, _ in values.get("main_context", [])) or (1,)
        return cls(where, embed_modes, contexts, model_files, main)


#: The op type providers look for; they match it without looking at the domain.
EP_CONTEXT_OP = "EPContext"


class OperatorJudge:
    """Which rule an operator falls under: standard, model-local function, vendor, or custom."""

    def __init__(self, functions: frozenset[tuple[str, str, str]] = frozenset()) -> None:
        self.functions = functions
        self.standard = standard_operators()
        self.runtime = runtime_operators()

    def rule(self, domain: str, op_type: str, overload: str = "") -> Rule | None:
        domain = _domain(domain)
        if (domain, op_type, overload) in self.functions:
            return None  # a model-local function: its body is walked on its own
        rule = self._rule(self.standard, domain, op_type)
        if rule is not None and (domain in self.standard or _onnx_namespace(domain)):
            return self._rule(installed_operators(), domain, op_type)  # maybe newer than the frozen table
        return rule

    def _rule(self, standard: dict[str, frozenset[str]], domain: str, op_type: str) -> Rule | None:
        known = op_type in self.runtime.get(domain, ())
        if domain in standard:
            return None if known or op_type in standard[domain] else UNKNOWN_OPERATOR
        if domain in self.runtime:
            return VENDOR_DOMAIN if known else UNKNOWN_OPERATOR
        return VENDOR_DOMAIN if domain in VENDOR_DOMAINS else CUSTOM_DOMAIN


@dataclass
class Walk:
    """Everything found while walking one model, aggregated so reports stay short."""

    ops: dict[tuple[Rule, str, str], _OpUse] = field(default_factory=dict)
    tensors: list[tuple[str, Tensor]] = field(default_factory=list)
    contexts: list[EpContext] = field(default_factory=list)
    nodes: int = 0
    #: the walk stopped at MAX_NODES
    truncated: bool = False

    def operator(self, judge: OperatorJudge, domain: str, op_type: str, where: str, overload: str = "") -> None:
        rule = judge.rule(domain, op_type, overload)
        if rule is not None:
            use = self.ops.setdefault((rule, _domain(domain), op_type), _OpUse(first=where))
            use.count += 1


def _graph_tensors(graph: Graph) -> Iterator[Tensor]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices


def _attribute_tensors(attribute: Attribute) -> Iterator[Tensor]:
    if attribute.t is not None:
        yield attribute.t
    yield from attribute.tensors
    sparse_tensors = [attribute.sparse_tensor] if attribute.sparse_tensor is not None else []
    for sparse in (*sparse_tensors, *attribute.sparse_tensors):
        yield sparse.values
        yield sparse.indices


class ModelWalker:
    """Visits every node of the main graph, subgraphs, local functions and training graphs."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.judge = OperatorJudge(frozenset((_domain(f.domain), f.name, f.overload) for f in model.functions))
        self.result = Walk()

    def walk(self) -> Walk:
        """Walk iteratively: nesting depth costs no Python stack."""
        model = self.model
        pending: list[tuple[str, Iterable[Node], Iterable[Tensor]]] = []
        pending.append((f"graph {model.graph.name!r}", model.graph.node, _graph_tensors(model.graph)))
        for function in model.functions:
            # default attribute values (`attribute_proto`) can hold tensors too
            defaults = (t for attribute in function.attribute_proto for t in _attribute_tensors(attribute))
            pending.append((f"function {function.domain}:{function.name}", function.node, defaults))
        for index, info in enumerate(model.training_info):
            for part in ("initialization", "algorithm"):
                graph = getattr(info, part)
                pending.append((f"training_info[{index}].{part}", graph.node, _graph_tensors(graph)))
        while pending:
            where, graph_nodes, tensors = pending.pop()
            self.result.tensors.extend((where, tensor) for tensor in tensors)
            for node in graph_nodes:
                self.result.nodes += 1
                if self.result.nodes > MAX_NODES:
                    self.result.truncated = True
                    return self.result
                node_where = f"{where} > node {node.name or node.op_type!r}"
                self.result.operator(self.judge, node.domain, node.op_type, node_where, node.overload)
                if node.op_type == EP_CONTEXT_OP:
                    attributes = ((a.name, a.i, a.s) for a in node.attribute)
                    self.result.contexts.append(EpContext.of(node_where, attributes))
                for attribute in node.attribute:
                    self.result.tensors.extend((node_where, t) for t in _attribute_tensors(attribute))
                    subgraphs = [attribute.g] if attribute.g is not None else []
                    for graph in (*subgraphs, *attribute.graphs):
                        sub_where = f"{node_where}.{attribute.name}"
                        pending.append((sub_where, graph.node, _graph_tensors(graph)))
        return self.result


def _onnx_namespace(domain: str) -> bool:
    """Whether a newer onnx could define `domain`: it names its domains `ai.onnx.*`, vendors aside."""
    return domain.startswith(ONNX_DOMAIN_PREFIX) and domain not in VENDOR_DOMAINS


def _domain(name: str) -> str:
    return "" if name in DEFAULT_DOMAIN_ALIASES else name


class _Problem(NamedTuple):
    rule: Rule
    evidence: str


def _nonnegative(value: str | None) -> int | None:
    """A decimal offset or length as onnx parses it; None if it is not a non-negative integer."""
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def _windows_part(part: str) -> str:
    """A path component as Windows may open it: trailing dots and spaces dropped; dots and spaces only
    (`.. `, `... `) taken as the parent folder, the reading that escapes."""
    trimmed = part.rstrip(". ")
    if trimmed:
        return trimmed
    return ".." if ".." in part else part


def _escape_reason(location: str) -> str | None:
    """`escape_reason`, also as Windows reads the name: it drops trailing dots and spaces from components,
    so `.. /secret` can be `../secret` there while lexical checks see an ordinary name."""
    reason = escape_reason(location)
    if reason is not None:
        return reason
    slashed = location.replace("\\", "/")
    windows = "/".join(_windows_part(part) for part in slashed.split("/"))
    reason = escape_reason(windows) if windows != slashed else None
    return None if reason is None else f"{reason} as Windows reads it ({windows!r})"


#: ONNX Runtime's tag for external data already in memory (tensorprotoutils.h `kTensorProtoMemoryAddressTag`):
#: `offset` is then a pointer. OpenVINO's ONNX frontend honours the same string.
MEMORY_ADDRESS_TAG = "_ORT_MEM_ADDR_"

#: The metadata key ONNX Runtime reads session options from (inference_session_utils.h `kOrtConfigKey`).
ORT_CONFIG_KEY = "ort_config"

_MISSING, _LINK_OUT, _NOT_A_FILE = "missing", "link", "not a file"


def referenced_file(folder: str, name: str) -> int | str:
    """Size of a file the model names relative to its folder, or why it cannot be used: stat only, never read."""
    path = os.path.join(folder, name)
    if not os.path.lexists(path):
        return _MISSING
    real_folder = os.path.realpath(folder)
    if os.path.commonpath([real_folder, os.path.realpath(path)]) != real_folder:
        return _LINK_OUT
    if not os.path.isfile(path):
        return _NOT_A_FILE
    return os.stat(path).st_size


class ExternalData:
    """Checks external-data references; stats files next to a model on disk, never reads them."""

    def __init__(self, folder: str | None) -> None:
        self.folder = folder
        self.problems: list[_Problem] = []
        self.escapes: dict[tuple[str, str], list[str]] = {}
        self.missing: dict[str, list[str]] = {}

    def check(self, where: str, tensor: Tensor) -> None:
        external = tensor.data_location == _EXTERNAL
        if not external and not tensor.external_data:
            return
        entries: dict[str, str] = {}
        what = f"{where}: tensor {tensor.name!r}"
        for entry in tensor.external_data:
            if entry.key not in EXTERNAL_KEYS or entry.key in entries:
                kind = "undefined" if entry.key not in EXTERNAL_KEYS else "repeated"
                self.problems.append(_Problem(EXTERNAL_INVALID, f"{what} has {kind} external_data key {entry.key!r}"))
            entries[entry.key] = entry.value
        location = entries.get("location")
        if location is None:
            if external:
                self.problems.append(_Problem(EXTERNAL_INVALID, f"{what} is stored externally but names no location"))
            return
        offset, length = (entries.get(key) for key in ("offset", "length"))
        if MEMORY_ADDRESS_TAG in location:
            evidence = f"{what} has external data at location {location!r}, address {offset!r}, length {length!r}"
            self.problems.append(_Problem(MEMORY_ADDRESS, evidence))
            return
        for key in ("location", "basepath"):
            reason = _escape_reason(entries[key]) if key in entries else None
            if reason is not None:
                self.escapes.setdefault((entries[key], f"{key} {reason}"), []).append(what)
                return
        start, span = _nonnegative(offset), _nonnegative(length)
        if (offset is not None and start is None) or (length is not None and span is None):
            evidence = f"{what} has offset {offset!r} and length {length!r}; both must be non-negative integers"
            self.problems.append(_Problem(EXTERNAL_INVALID, evidence))
            return
        size = self._size(location, what)
        if size is None:
            return
        end = (start or 0) + (span if span is not None else max(size - (start or 0), 0))
        if (start or 0) > size or end > size:
            evidence = f"{what} reads bytes [{start or 0}, {end}) of {location!r}, which has {size} bytes"
            self.problems.append(_Problem(EXTERNAL_INVALID, evidence))

    def _size(self, location: str, what: str) -> int | None:
        """The external file's size if it is next to the model; records a missing file or a link out."""
        if self.folder is None:
            return None
        found = referenced_file(self.folder, location)
        if found == _MISSING:
            self.missing.setdefault(location, []).append(what)
        elif found == _LINK_OUT:
            self.escapes.setdefault((location, "resolves outside the model folder through a link"), []).append(what)
        elif found == _NOT_A_FILE:
            self.problems.append(_Problem(EXTERNAL_INVALID, f"{what}: external data {location!r} is not a file"))
        return found if isinstance(found, int) else None


def context_findings(contexts: Iterable[EpContext], folder: str | None) -> Iterator[tuple[Rule, str, dict[str, Any]]]:
    """Judge each `EPContext` node by what its provider loads: the program, and the files it names."""
    for node in contexts:
        if all(main == 0 for main in node.main_contexts) and not any(node.contexts):
            continue  # shares the program of its main node, which is judged on its own
        for context in node.contexts:
            if any(mode != 0 for mode in node.embed_modes):
                yield EP_CONTEXT_BINARY, f"{node.where} embeds a {len(context)}-byte precompiled program", {}
            if 0 in node.embed_modes:
                yield from _context_file(node.where, "ep_cache_context", context.decode("utf-8", "replace"), folder)
        for name in node.model_filenames:
            yield from _context_file(node.where, "onnx_model_filename", name, folder)


def _context_file(
    where: str, attribute: str, name: str, folder: str | None
) -> Iterator[tuple[Rule, str, dict[str, Any]]]:
    """A file an EPContext node names: an escape is ONX007; the context program itself is ONX008 either way."""
    reason = _escape_reason(name)
    found = referenced_file(folder, name) if folder is not None and name and reason is None else None
    if found == _LINK_OUT:
        reason = "resolves outside the model folder through a link"
    if reason is not None:
        yield EP_CONTEXT_ESCAPE, f"{where}: {attribute} {name!r} {reason}", {"location": name}
    elif attribute == "ep_cache_context":
        state = f"{found} bytes" if isinstance(found, int) else found or "not looked up inside an archive"
        evidence = f"{where} loads the precompiled program in {name!r} ({state})" if name else f"{where} names no file"
        yield EP_CONTEXT_BINARY, evidence, {"location": name}


def emit(ctx: Context, findings: Iterable[tuple[Rule, str, dict[str, Any]]]) -> Iterator[Finding]:
    """Findings with at most MAX_FINDINGS_PER_RULE of each rule, and a note that the rest were left out."""
    counts: dict[str, int] = {}
    for rule, evidence, details in findings:
        count = counts[rule.id] = counts.get(rule.id, 0) + 1
        if count <= MAX_FINDINGS_PER_RULE:
            yield ctx.finding(rule, evidence, **details)
        elif count == MAX_FINDINGS_PER_RULE + 1:
            yield ctx.finding(rule, f"further {rule.id} findings in this model are not listed")


def operator_findings(walk: Walk) -> list[tuple[Rule, str, dict[str, Any]]]:
    findings = []
    for (rule, domain, op_type), use in sorted(walk.ops.items(), key=lambda item: (item[0][0].id, *item[0][1:])):
        shown = f"domain {domain!r}" if domain else "the default domain"
        evidence = f"{use.count} node(s) of operator {op_type!r} in {shown}; first at {use.first}"
        details: dict[str, Any] = {"domain": domain, "op_type": op_type, "nodes": use.count}
        if rule is UNKNOWN_OPERATOR and domain in VENDOR_DOMAINS:
            evidence += "; not in onnxruntime's registry (newer or training builds may define it)"
            details["severity"] = Severity.LOW
        findings.append((rule, evidence, details))
    return findings


def model_folder(ctx: Context) -> str | None:
    """The folder a loader resolves the model's file references in; None inside an archive."""
    return None if ctx.location.members else os.path.dirname(ctx.location.path) or "."


class OnnxHandler(Handler):
    name = "onnx"
    label = "ONNX model"
    extensions = frozenset({".onnx"})
    rules = RULES

    def detect(self, source: Source) -> bool:
        return read_model(source) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        data = ctx.read_whole(source, "ONNX model")
        try:
            model, cut = decode_model(data, MESSAGES_PER_NODE * MAX_NODES)
        except WireError as exc:
            raise ScanError(f"malformed ONNX protobuf: {exc}") from exc
        walk = ModelWalker(model).walk()
        findings = operator_findings(walk)
        folder = model_folder(ctx)
        external = ExternalData(folder)
        for where, tensor in walk.tensors:
            external.check(where, tensor)
        for (location, reason), tensors in external.escapes.items():
            evidence = f"external data {location!r} {reason} ({len(tensors)} tensor(s); first: {tensors[0]})"
            findings.append((EXTERNAL_ESCAPE, evidence, {"location": location}))
        findings += [(p.rule, p.evidence, {}) for p in external.problems]
        for location, tensors in external.missing.items():
            evidence = f"external data file {location!r} is missing ({len(tensors)} tensor(s); first: {tensors[0]})"
            findings.append((EXTERNAL_MISSING, evidence, {"location": location}))
        findings += context_findings(walk.contexts, folder)
        findings += [
            (SESSION_CONFIG, f"metadata_props ort_config = {entry.value[:200]!r}", {})
            for entry in model.metadata_props
            if entry.key == ORT_CONFIG_KEY
        ]
        yield from emit(ctx, findings)
        if cut:
            what = f"more than {MESSAGES_PER_NODE * MAX_NODES} ONNX nodes, attributes and external tensors"
            raise LimitExceeded("max_nodes", f"{what}; the rest were not analysed")
        if walk.truncated:
            raise LimitExceeded("max_nodes", f"more than {MAX_NODES} ONNX nodes; the rest were not analysed")
