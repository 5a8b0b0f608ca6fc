"""TensorFlow Lite / LiteRT flatbuffer models (`TFL3`): operator codes and the operators of every
subgraph, read by the bounded flatbuffer reader in `formats/_flatbuffers.py`.

It reads only the few tables the rules need (schema.fbs slots are given beside each read).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

from modelshield.core.errors import ScanError
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.source import BytesSource, DecodedSource, SliceSource, Source
from modelshield.formats import _flatbuffers as flatbuffers
from modelshield.formats._data import load_data
from modelshield.formats._flatbuffers import FlatBuffer, Malformed, Table
from modelshield.formats.tensorflow import ops as tensorflow_ops
from modelshield.formats.tensorflow.flex import FlexError, FlexNode, decode

IDENTIFIER = b"TFL3"
#: Select TF ops are custom ops named "Flex" + the TensorFlow op name.
FLEX_PREFIX = "Flex"
CUSTOM = 32
STABLEHLO_CUSTOM_CALL = 173
#: `BuiltinOptions2.StablehloCustomCallOptions`
STABLEHLO_CUSTOM_CALL_OPTIONS = 5
#: Names and places shown in one finding; counts are always complete.
_SHOWN = 8

CUSTOM_OP = Rule(
    id="TFL001",
    title="LiteRT model uses a custom operator the stock runtime does not ship",
    severity=Severity.MEDIUM,
    category=Category.MODEL_DEPENDENCY,
    overview="An operator code is `CUSTOM` with a name outside the few custom kernels the stock "
    "interpreter registers (`TFLite_Detection_PostProcess`, `Mfcc`, `AudioSpectrogram`, `NumericVerify`) "
    "and is not a Flex (Select TF) op.",
    attack="A custom operator's kernel is native code that the application must compile in or register "
    "through its op resolver. To make such a model work, users link the library the publisher provides "
    "(an Android AAR, a shared object, a pip package with a native extension), which runs with the app's "
    "privileges; the operator name says nothing about what the kernel does.",
    impact="Native code of unknown origin runs whenever the model executes, or the model cannot run.",
    remediation="Find out which library implements the operator and take it only from its real "
    "publisher. Operators that MediaPipe's runtime registers itself (`TransformTensorBilinear`, "
    "`Convolution2DTransposeBias`, `MaxPoolingWithArgmax2D`...) are low: the model carries no kernel "
    "and runs with MediaPipe's, so what matters is running it with MediaPipe from its official "
    "distribution. Allow names you trust with `[tool.modelshield.allow] tensorflow-custom-ops`.",
    example="`operator_codes[1] = {builtin_code: CUSTOM, custom_code: 'MyNativeKernel'}`",
)

FLEX_RUNTIME = Rule(
    id="TFL002",
    title="LiteRT model needs TensorFlow (Flex) operators",
    severity=Severity.INFO,
    category=Category.MODEL_DEPENDENCY,
    overview="The model uses Select TF ops (custom codes `Flex<Op>`), which only run with the Flex "
    "delegate: a copy of the TensorFlow runtime linked into the app. Each Flex op is also judged by the "
    "TensorFlow operator rules (TFO0xx).",
    attack="Flex ops bring TensorFlow's much larger kernel set, including file and system ops, into an "
    "on-device runtime that normally has none.",
    impact="Larger attack surface; dangerous TensorFlow ops are reported separately.",
    remediation="Nothing to do if the listed ops are expected; prefer builtin-only conversions.",
    example="`TFLiteConverter` with `SELECT_TF_OPS` writes `custom_code: 'FlexStringLength'` for `tf.strings.length`.",
)

UNKNOWN_BUILTIN = Rule(
    id="TFL003",
    title="LiteRT operator code unknown to the schema",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="An operator code holds a builtin number that the LiteRT schema this version knows does not define.",
    attack="Either the model targets a newer runtime, or the file was crafted to hit runtimes and "
    "scanners at an unvalidated enum value; what the operator does cannot be determined.",
    impact="The operator's behaviour is unknown to the scanner.",
    remediation="Check that the model was produced by a current converter; upgrade modelshield if the "
    "runtime added operators.",
    example="`operator_codes[1] = {builtin_code: 250}` where the schema ends at 209 (`STABLEHLO_CASE`).",
)

STABLEHLO_CALL = Rule(
    id="TFL004",
    title="LiteRT model makes a StableHLO custom call",
    severity=Severity.MEDIUM,
    category=Category.MODEL_DEPENDENCY,
    overview="The model uses `STABLEHLO_CUSTOM_CALL`, which calls a backend function by name "
    "(`call_target_name`) instead of a defined operator.",
    attack="Custom call targets are native functions the runtime or app must register; like custom "
    "operators they pull in code from outside the model, and `has_side_effect` calls may do anything.",
    impact="Native code outside the model runs when the operator executes.",
    remediation="Find out which runtime provides the call target and trust it only from its publisher.",
    example="`STABLEHLO_CUSTOM_CALL` with `call_target_name: 'my_native_kernel'`, `has_side_effect: true`.",
)

FLEX_DISGUISED = Rule(
    id="TFL005",
    title="LiteRT Flex operator runs another op than its name says, or cannot be decoded",
    severity=Severity.HIGH,
    category=Category.INFERENCE_TIME_CODE,
    overview="A Flex operator's `custom_options` hold the op the Flex delegate runs and the NodeDef it "
    "runs with (tensorflow/lite/delegates/flex/kernel.cc). The converter writes the same op name three "
    "times: `Flex<Op>` as the custom code, `<Op>` first in the options, and the NodeDef's `op`. Here they "
    "differ, or the options do not decode as the delegate reads them.",
    attack="The delegate takes any custom code starting with `Flex` and runs the op named inside the "
    "options, so `FlexStringLength` can run `WriteFile`: a scanner or reviewer that reads operator codes "
    "sees a harmless string op. Options that do not decode are read by the runtime without bounds checks.",
    impact="A hidden TensorFlow kernel (file, network or Python ops) runs on the device whenever the model "
    "executes; the op actually run is judged separately by the TFO rules.",
    remediation="Do not run the model. No converter writes mismatched names: regenerate the model from its "
    "source with the official converter.",
    example="`custom_code: 'FlexStringLength'`, custom options `['WriteFile', NodeDef{op: 'StringLength'}]`.",
)

RULES: tuple[Rule, ...] = (CUSTOM_OP, FLEX_RUNTIME, UNKNOWN_BUILTIN, STABLEHLO_CALL, FLEX_DISGUISED)

#: Custom operators that a known runtime registers with its own kernels, so the model runs only
#: there and brings no code of its own: MediaPipe's op resolvers (mediapipe/util/tflite/operations,
#: mediapipe/tasks/cc/text/custom_ops; names checked in libmediapipe.so of mediapipe 1.2.3).
KNOWN_RUNTIME_OPS: dict[str, str] = dict.fromkeys(
    (
        "MaxPoolingWithArgmax2D",
        "MaxUnpooling2D",
        "Convolution2DTransposeBias",
        "TransformTensorBilinear",
        "TransformLandmarks",
        "Landmarks2TransformMatrix",
        "Landmarks2TransformMatrixV2",
        "RaggedTensorToTensor",
        "TFSentencepieceTokenizeOp",
        "Resampler",
    ),
    "MediaPipe",
)


def root_table(source: Source) -> int | None:
    """Offset of the flatbuffer's root `Model` table, or None if this is not a TFLite model."""
    return flatbuffers.root_table(source, IDENTIFIER)


@cache
def _litert_data() -> tuple[dict[int, str], frozenset[str]]:
    """Builtin operator names by code and the stock custom ops (data/tflite_builtins.json)."""
    data = load_data("tflite_builtins.json")
    return {code: name for name, code in data["builtins"].items()}, frozenset(data["stock_custom_ops"])


@dataclass
class OperatorCode:
    index: int
    builtin: int
    custom: str | None
    places: dict[str, int] = field(default_factory=dict)
    uses: int = 0
    call_targets: list[str] = field(default_factory=list)
    #: for Flex codes, each operator's place and what its custom options decode to (or why they do not)
    flex: list[tuple[str, FlexNode | str]] = field(default_factory=list)

    @property
    def unused(self) -> str:
        return f"operator_codes[{self.index}] (not used by any operator)"

    @property
    def where(self) -> str:
        return tensorflow_ops.where(self.uses, self.places) if self.uses else self.unused


def read_model(buf: FlatBuffer, root: int) -> list[OperatorCode]:
    """Operator codes with their uses across all subgraphs (Model slots 1 and 2)."""
    model = buf.table(root)
    codes = []
    for index, table in enumerate(model.tables(1)):
        # OperatorCode: deprecated_builtin_code (int8, slot 0), custom_code (1), builtin_code (int32, 3);
        # the effective code is the larger of the two builtin fields.
        builtin = max(table.scalar(3, "<i", 0), table.scalar(0, "<b", 0))
        codes.append(OperatorCode(index, builtin, table.string(1)))
    for number, subgraph in enumerate(model.tables(2)):
        name = subgraph.string(4)  # SubGraph.name
        place = f"subgraph {number}" + (f" '{name}'" if name else "")
        for operator in subgraph.tables(3):  # SubGraph.operators
            index = operator.scalar(0, "<I", 0)  # Operator.opcode_index
            if index >= len(codes):
                raise Malformed(f"operator in {place} uses operator code {index} of {len(codes)}")
            code = codes[index]
            code.uses += 1
            if place in code.places or len(code.places) < _SHOWN:
                code.places[place] = code.places.get(place, 0) + 1
            if code.builtin == CUSTOM and (code.custom or "").startswith(FLEX_PREFIX):
                code.flex.append((place, _flex_node(buf, operator)))
            # Operator.builtin_options_2_type (slot 11) / builtin_options_2 (slot 12)
            if code.builtin == STABLEHLO_CUSTOM_CALL and operator.scalar(11, "<B", 0) == STABLEHLO_CUSTOM_CALL_OPTIONS:
                options = operator.subtable(12)
                target = options.string(0) if options is not None else None  # call_target_name
                if target and target not in code.call_targets and len(code.call_targets) < _SHOWN:
                    code.call_targets.append(target)
    return codes


def _flex_node(buf: FlatBuffer, operator: Table) -> FlexNode | str:
    """Decode an operator's custom options as the interpreter hands them to the delegate
    (interpreter_builder.cc): from `large_custom_options_offset/size` (slots 9, 10) when the offset is
    over 1 (models past 2 GB keep them after the flatbuffer), otherwise from `custom_options` (slot 5)."""
    offset, size = operator.scalar(9, "<Q", 0), operator.scalar(10, "<Q", 0)
    if offset > 1:
        if offset + size > len(buf.data):
            return f"large custom options at offset {offset} run past the end of the model"
        options: bytes | None = buf.data[offset : offset + size]
    else:
        options = operator.bytes(5)
    if not options:
        return "no custom options (the delegate refuses the node)"
    try:
        return decode(options)
    except FlexError as exc:
        return str(exc)


# -- TFLite Metadata: the associated-files zip ---------------------------------------------------------

#: The TFLite Metadata spec (tensorflow/lite/experimental/support/metadata, MediaPipe's metadata
#: writers): `Model.metadata` holds an entry of this name whose buffer is a ModelMetadata flatbuffer
#: with this file identifier; associated files (labels, vocabularies) are a zip appended to the model.
METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
_EOCD = struct.Struct("<4s4H2LH")
_CENTRAL_HEADER = 46
#: Associated files are a few labels and vocabularies: a bigger directory is not this layout.
MAX_ASSOCIATED_DIRECTORY = 1 << 20


def has_metadata(buf: FlatBuffer, root: int) -> bool:
    """Whether the model's metadata list (Model slot 6: Metadata{name 0, buffer 1}) names a
    TFLITE_METADATA buffer (Model slot 4: Buffer{data 0}) holding a ModelMetadata flatbuffer."""
    model = buf.table(root)
    for entry in model.tables(6):
        if entry.string(0) == METADATA_NAME:
            index = entry.scalar(1, "<I", 0)
            buffers = list(model.tables(4))
            if index >= len(buffers):
                return False
            target = buffers[index]._target(0)
            if target is None:
                return False
            start, length = buf.vector(target, 1)
            return length >= 8 and buf.data[start + 4 : start + 8] == METADATA_IDENTIFIER
    return False


def associated_files_start(source: Source, *, decoded: bool = False) -> int | None:
    """Where the associated-files zip of a model with TFLite Metadata starts, or None if the bytes
    are not that layout: a zip with no comment ending the file, whose first member starts right
    where a complete TFLite model carrying TFLITE_METADATA ends. The zip is then the model's
    member (scanned as one), not a second format. A decoded stream is only looked at when it is
    already in memory (`decoded`, while scanning)."""
    if isinstance(source, DecodedSource) and not decoded:
        return None  # probing the tail of a decoded stream would decode all of it
    if source.size < _EOCD.size or source.head(8)[4:8] != IDENTIFIER:
        return None
    end = source.size - _EOCD.size
    signature, _, _, _, _, cd_size, cd_offset, comment = _EOCD.unpack(source.read_at(end, _EOCD.size))
    if signature != b"PK\x05\x06" or comment or cd_size > MAX_ASSOCIATED_DIRECTORY or cd_offset + cd_size != end:
        return None
    directory = source.read_at(cd_offset, cd_size)
    starts: list[int] = []
    pos = 0
    while pos + _CENTRAL_HEADER <= len(directory) and directory[pos : pos + 4] == b"PK\x01\x02":
        name, extra, note = struct.unpack_from("<3H", directory, pos + 28)
        starts.append(struct.unpack_from("<L", directory, pos + 42)[0])
        pos += _CENTRAL_HEADER + name + extra + note
    if pos != len(directory):
        return None
    # MediaPipe also appends an empty zip (its end record alone) to models with no associated file.
    start = min(starts) if starts else cd_offset
    signature = b"PK\x03\x04" if starts else b"PK\x05\x06"
    if start < 8 or 0xFFFFFFFF in starts or source.read_at(start, 4) != signature:
        return None  # zip64 offsets live in extra fields: not what the metadata writers produce
    model = SliceSource(source, 0, start)
    root = root_table(model)
    prefix = model.read_at(0, start)
    if root is None or b"PK\x03\x04" in prefix:
        return None  # a local header before the first listed member: a hidden entry, left to the zip reader
    try:
        return start if has_metadata(FlatBuffer(prefix), root) else None
    except ScanError:
        return None


def rebased_zip(source: Source, start: int) -> bytes:
    """The appended zip as a zip of its own: the writer (Python's zipfile appending to the model)
    records offsets from the start of the file, so each is moved back by `start`. Only called on
    what `associated_files_start` accepted (no comment, no zip64, one directory ending the file)."""
    data = bytearray(source.read_at(start, source.size - start))
    end = len(data) - _EOCD.size
    cd_offset = struct.unpack_from("<L", data, end + 16)[0] - start
    struct.pack_into("<L", data, end + 16, cd_offset)
    pos = cd_offset
    while pos < end:
        name, extra, note = struct.unpack_from("<3H", data, pos + 28)
        struct.pack_into("<L", data, pos + 42, struct.unpack_from("<L", data, pos + 42)[0] - start)
        pos += _CENTRAL_HEADER + name + extra + note
    return bytes(data)


class TfliteHandler(Handler):
    name = "tflite"
    label = "TensorFlow Lite / LiteRT model"
    extensions = frozenset({".tflite", ".lite"})
    rules = (*RULES, *tensorflow_ops.RULES)
    allowlists = (tensorflow_ops.CUSTOM_OPS_ALLOWLIST,)

    def _flex(self, ctx: Context, code: OperatorCode, flex: tensorflow_ops.OpUses) -> Iterator[Finding]:
        """Judge what each Flex operator runs: the op its options name, with its NodeDef's attributes
        (and the NodeDef's own op, which must be registered too). A code no operator uses, or options
        that do not decode, are judged by the name in the custom code."""
        named = (code.custom or "")[len(FLEX_PREFIX) :]
        disguised: dict[str, int] = {}
        broken: dict[str, int] = {}
        for place, item in code.flex:
            if isinstance(item, str):
                broken[item] = broken.get(item, 0) + 1
                if named:
                    flex.add(named, place)
                continue
            names = dict.fromkeys(n for n in (item.runs, item.node.op) if n)
            for name in names:
                flex.add(name, place, item.node.strings)
            if set(names) != {named}:
                text = f"runs {item.runs!r} (NodeDef op {item.node.op!r})"
                disguised[text] = disguised.get(text, 0) + 1
        if named and not code.uses:
            flex.add(named, code.unused)
        for text, count in list(disguised.items())[:_SHOWN]:
            evidence = f"Flex operator {code.custom!r} {text} in {count} operator(s): {code.where}"
            yield ctx.finding(FLEX_DISGUISED, evidence, op=code.custom, uses=count)
        for reason, count in list(broken.items())[:_SHOWN]:
            evidence = (
                f"Flex operator {code.custom!r}: custom options of {count} operator(s) do not decode ({reason}), "
                f"so it is judged by its name alone: {code.where}"
            )
            yield ctx.finding(FLEX_DISGUISED, evidence, severity=Severity.MEDIUM, op=code.custom, uses=count)

    def detect(self, source: Source) -> bool:
        return root_table(source) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        root = root_table(source)
        assert root is not None
        codes = read_model(FlatBuffer(ctx.read_whole(source, "LiteRT model")), root)
        builtins, stock_custom = _litert_data()
        allowed = ctx.policy.allowed(tensorflow_ops.CUSTOM_OPS_ALLOWLIST)
        flex = tensorflow_ops.OpUses(allowed)
        flex_names: list[str] = []
        for code in codes:
            if code.builtin == CUSTOM:
                custom = code.custom or ""
                if custom.startswith(FLEX_PREFIX):
                    flex_names.append(custom)
                    yield from self._flex(ctx, code, flex)
                elif custom in KNOWN_RUNTIME_OPS and custom not in allowed:
                    runtime = KNOWN_RUNTIME_OPS[custom]
                    evidence = (
                        f"custom operator {custom!r} is provided by {runtime}'s op resolver: {code.where}; the model "
                        f"brings no kernel of its own and runs with {runtime}'s, so check that you run it "
                        f"with {runtime} from its official distribution (elsewhere the app must register a "
                        "kernel under this name, and that kernel is what runs)"
                    )
                    yield ctx.finding(
                        CUSTOM_OP, evidence, severity=Severity.LOW, op=custom, uses=code.uses, runtime=runtime
                    )
                elif custom not in stock_custom and custom not in allowed:
                    yield ctx.finding(CUSTOM_OP, f"custom operator {custom!r}: {code.where}", op=custom, uses=code.uses)
            elif code.builtin not in builtins:
                yield ctx.finding(
                    UNKNOWN_BUILTIN, f"unknown builtin operator code {code.builtin}: {code.where}", code=code.builtin
                )
            elif code.builtin == STABLEHLO_CUSTOM_CALL:
                targets = ", ".join(map(repr, code.call_targets)) or "unnamed"
                yield ctx.finding(
                    STABLEHLO_CALL, f"StableHLO custom call to {targets}: {code.where}", targets=code.call_targets
                )
        yield from flex.findings(ctx, "Flex op", self.name)
        attached = associated_files_start(source, decoded=True)
        if attached is not None:
            yield from ctx.scan_member("<associated files>", BytesSource(rebased_zip(source, attached)))
        if flex_names:
            shown = ", ".join(flex_names[:_SHOWN]) + (
                f" and {len(flex_names) - _SHOWN} more" if len(flex_names) > _SHOWN else ""
            )
            yield ctx.finding(FLEX_RUNTIME, f"{len(flex_names)} Flex operator(s): {shown}", ops=flex_names[:_SHOWN])
