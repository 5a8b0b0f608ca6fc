"""The dangerous TensorFlow operator catalogue (TFO0xx), shared by SavedModel, LiteRT Flex ops and
Keras operator-wrapping layers.

Ops run when the graph runs (at inference, or when a serving function is first called), not when
the model is loaded, so a model that "loads fine" can still read, write or call out later. Op names
are judged exactly as TensorFlow's registry spells them; `is_registered` tells custom ops (which need
a native library loaded with `tf.load_op_library`) from stock ones, using the op list frozen by
`scripts/gen_tf_data.py`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

from modelshield.core.findings import Finding
from modelshield.core.handler import Context
from modelshield.core.rules import Category, Rule, Severity
from modelshield.formats._data import load_data

CODE_EXECUTION = Rule(
    id="TFO001",
    title="TensorFlow graph calls back into Python (PyFunc)",
    severity=Severity.CRITICAL,
    category=Category.INFERENCE_TIME_CODE,
    overview="The graph contains `PyFunc`, `PyFuncStateless` or `EagerPyFunc`, the ops behind "
    "`tf.py_function`, `tf.numpy_function` and `tf.compat.v1.py_func`. They call a Python function "
    "registered in the running process under a token named in the op's `token` attribute.",
    attack="The Python function itself is not in the file: the op names a token that the process must "
    "have registered. A model shipped with a loader script, a Keras custom object or 'trust remote code' "
    "glue registers an arbitrary function under that token, and the graph calls it on every inference. "
    "Graphs that contain these ops cannot be served by TensorFlow Serving, so their presence means the "
    "model expects to run next to publisher-supplied Python.",
    impact="Arbitrary Python runs inside the serving process each time the graph executes, long after the "
    "model was reviewed and loaded.",
    remediation="Do not serve the model. Ask the publisher for a graph without `tf.py_function` "
    "(re-implement the function with TensorFlow ops) and never run accompanying loader code you have not "
    "reviewed.",
    example="`node { name: 'EagerPyFunc' op: 'EagerPyFunc' attr { key: 'token' value { s: 'pyfunc_0' } } }` "
    "inside `__inference_serve_42`.",
)

FILE_READ = Rule(
    id="TFO002",
    title="TensorFlow graph reads or lists files",
    severity=Severity.HIGH,
    category=Category.INFERENCE_TIME_CODE,
    overview="The graph (of a SavedModel, a TF1 checkpoint `.meta`, a frozen GraphDef or a LiteRT "
    "model's Flex ops) contains an op that opens or lists files by path: `ReadFile`, `MatchingFiles`, "
    "the TF1 reader ops (`TFRecordReaderV2`, `WholeFileReaderV2`...), dataset sources "
    "(`TFRecordDataset`, `TextLineDataset`, CSV, SQL and LMDB datasets, `LoadDataset`), checkpoint "
    "restores outside the generated restore function, `ImmutableConst` (memory-maps a file) and proto "
    "codecs that load descriptors from a path.",
    attack="TensorFlow's file ops accept any path and every registered filesystem (`/etc/passwd`, "
    "`~/.aws/credentials`, `gs://`, `s3://`, `hdfs://`). A model whose serving function reads a secret "
    "can return it as an output tensor or mix it into predictions, so anyone who can query the model "
    "can exfiltrate files from the server.",
    impact="Disclosure of files readable by the serving process (credentials, keys, other models); "
    "listing ops reveal the file system layout.",
    remediation="Do not serve the model. Inference graphs do not need file access: ask the publisher "
    "for a graph without it. Lookup-table vocabularies should be SavedModel assets (reported at low "
    "severity); check that the path is one.",
    example="`tf.io.read_file('/etc/passwd')` inside a `tf.function` saved with `tf.saved_model.save` "
    "becomes a `ReadFile` node in the function library.",
)

FILE_WRITE = Rule(
    id="TFO003",
    title="TensorFlow graph writes files",
    severity=Severity.HIGH,
    category=Category.INFERENCE_TIME_CODE,
    overview="The graph contains an op that creates or overwrites files: `WriteFile`, checkpoint writers "
    "(`SaveV2`, `MergeV2Checkpoints`...) outside the generated save function, summary writers "
    "(`CreateSummaryFileWriter`, `Write*Summary`), dataset savers and snapshots (`SaveDataset`, "
    "`DatasetToTFRecord`, `SnapshotDataset`), or `PrintV2` directed to a `file://` stream.",
    attack="File paths and contents can be constants in the graph or derived from inputs. A serving "
    "function that writes `~/.bashrc`, a cron file, a Python module on `sys.path` or another model "
    "turns inference into persistent code execution; summary and snapshot writers can fill disks.",
    impact="Overwritten or planted files on the serving host, which usually leads to code execution "
    "outside TensorFlow, or denial of service.",
    remediation="Do not serve the model. Inference graphs do not write files; the checkpoint ops that "
    "every SavedModel carries in its generated save function are already excluded, and ops in library "
    "functions that nothing the loader runs can call (uncalled traced functions of TF 2 Estimator "
    "exports) are reported as information.",
    example="`tf.io.write_file('/home/user/.bashrc', payload)` in a `tf.function` becomes `WriteFile`.",
)

NETWORK = Rule(
    id="TFO004",
    title="TensorFlow graph talks to the network or reconfigures file systems",
    severity=Severity.HIGH,
    category=Category.INFERENCE_TIME_CODE,
    overview="The graph contains an op that connects to an address chosen by the graph: the RPC ops "
    "(`RpcClient`, `RpcCall`, `RpcServer`...), tf.data service ops (`DataServiceDataset*`, "
    "`RegisterDataset*`), debugger ops that stream tensors to `debug_urls` (`DebugIdentity*`, "
    "`DebugNumericSummary*`), or `FileSystemSetConfiguration`. Send/Recv and collective ops are not "
    "reported: they only reach devices of the cluster the runtime was configured with.",
    attack="An address in the graph lets the model send inputs, outputs or read files to an attacker's "
    "server, or fetch data from it, every time it runs; debugger ops are only ever inserted by a live "
    "debugging session, so a saved graph has no reason to contain them.",
    impact="Exfiltration of inference data and files, server-side request forgery from inside the "
    "serving network, and remote control of what the model computes.",
    remediation="Do not serve the model, or serve it only where it has no network access, and ask the "
    "publisher why the graph needs remote calls.",
    example="`DebugIdentityV2` with `debug_urls: ['grpc://collector.example:6064']` after the input "
    "placeholder streams every request to that server.",
)

CUSTOM_OP = Rule(
    id="TFO005",
    title="TensorFlow op that is not in TensorFlow's registry (custom op)",
    severity=Severity.MEDIUM,
    category=Category.MODEL_DEPENDENCY,
    overview="The graph uses an op name that stock TensorFlow does not register and that is not a "
    "function in the model's own function library.",
    attack="A custom op's kernel is native code in a shared library that must be loaded with "
    "`tf.load_op_library` (or a Python package that does so) before the model can run. Users who want "
    "the model to work install whatever library the publisher points to, which runs native code with "
    "no sandbox; a benign-looking op name says nothing about what the kernel does.",
    impact="Native code of unknown origin runs in the serving process when the library is loaded and "
    "whenever the op executes.",
    remediation="Find out which library provides the op (TensorFlow Text, Addons, SentencePiece and "
    "similar are common) and install it only from its real publisher, at a reviewed version. Prefer "
    "models that use stock ops.",
    example="`op: 'ZeroOut'` from the custom-op tutorial, provided by `zero_out.so`.",
)

RUNTIME_GRAPH = Rule(
    id="TFO006",
    title="TensorFlow graph runs a graph it decodes at run time",
    severity=Severity.HIGH,
    category=Category.INFERENCE_TIME_CODE,
    overview="The graph contains `DatasetFromGraph`, which parses a serialized GraphDef from a string tensor "
    "and runs the tf.data pipeline it describes. The inner graph is data to the outer one: it is not in the "
    "function library, and modelshield does not decode it.",
    attack="Every op the analysers judge can be moved into a string constant: a dataset graph with "
    "`TFRecordDataset('/etc/passwd')`, `LoadDataset` or a `MapDataset` whose function writes files runs "
    "when the outer graph iterates the dataset, while the outer graph shows a single harmless-looking op.",
    impact="Whatever the hidden graph does (file, network or Python-callback ops) runs in the serving process.",
    remediation="Do not serve the model. Saved inference graphs have no reason to rebuild datasets from "
    "strings: ask the publisher for a model without it.",
    example="`DatasetFromGraph(graph_def=Const('\\n\\x1a\\n\\x0fTFRecordDataset...'))` in a serving function.",
)

RULES: tuple[Rule, ...] = (CODE_EXECUTION, FILE_READ, FILE_WRITE, NETWORK, CUSTOM_OP, RUNTIME_GRAPH)


class OpVerdict(NamedTuple):
    """Why an op is dangerous: the rule it breaks, a short reason and the severity to report."""

    rule: Rule
    reason: str
    severity: Severity


def _entries(rule: Rule, reason: str, names: str, severity: Severity | None = None) -> dict[str, OpVerdict]:
    verdict = OpVerdict(rule, reason, severity or rule.severity)
    return dict.fromkeys(names.split(), verdict)


#: Dangerous ops by exact registry name. Every name is checked against tf_ops.json by the tests.
_CATALOGUE: dict[str, OpVerdict] = {
    **_entries(
        CODE_EXECUTION, "calls a Python function registered in the process", "PyFunc PyFuncStateless EagerPyFunc"
    ),
    **_entries(FILE_READ, "reads a file by path", "ReadFile ImmutableConst LoadAndRemapMatrix GenerateVocabRemapping"),
    **_entries(
        FILE_READ,
        "lists files matching a pattern",
        "MatchingFiles MatchingFilesDataset ExperimentalMatchingFilesDataset",
    ),
    **_entries(
        FILE_READ,
        "TF1 reader that opens the files queued to it",
        "WholeFileReader WholeFileReaderV2 "
        "TextLineReader TextLineReaderV2 FixedLengthRecordReader FixedLengthRecordReaderV2 TFRecordReader "
        "TFRecordReaderV2 LMDBReader",
    ),
    **_entries(
        FILE_READ,
        "dataset that reads files, a database or a saved dataset by path",
        "TFRecordDataset "
        "TFRecordDatasetV2 TextLineDataset FixedLengthRecordDataset FixedLengthRecordDatasetV2 CSVDataset "
        "CSVDatasetV2 ExperimentalCSVDataset LMDBDataset ExperimentalLMDBDataset SqlDataset "
        "ExperimentalSqlDataset LoadDataset SnapshotDatasetReader SnapshotNestedDatasetReader "
        "SnapshotChunkDataset ListSnapshotChunksDataset",
    ),
    **_entries(
        FILE_READ,
        "restores tensors from a checkpoint path outside the generated restore function",
        "Restore RestoreV2 RestoreSlice DTensorRestoreV2",
    ),
    **_entries(
        FILE_READ,
        "initialises a lookup table from a text file (normally a SavedModel asset vocabulary)",
        "InitializeTableFromTextFile InitializeTableFromTextFileV2",
        Severity.LOW,
    ),
    **_entries(FILE_WRITE, "writes a file by path", "WriteFile"),
    **_entries(
        FILE_WRITE,
        "writes a checkpoint outside the generated save function",
        "Save SaveV2 SaveSlices MergeV2Checkpoints",
    ),
    **_entries(
        FILE_WRITE,
        "creates or writes a summary (event) file",
        "CreateSummaryFileWriter "
        "CreateSummaryDbWriter WriteSummary WriteRawProtoSummary WriteScalarSummary WriteHistogramSummary "
        "WriteImageSummary WriteAudioSummary WriteGraphSummary ImportEvent",
    ),
    **_entries(
        FILE_WRITE,
        "writes a dataset to files",
        "SaveDataset SaveDatasetV2 DistributedSave "
        "DatasetToTFRecord ExperimentalDatasetToTFRecord SnapshotDataset SnapshotDatasetV2",
    ),
    **_entries(
        FILE_WRITE,
        "writes a dataset cache file when its filename input is not empty",
        "CacheDataset CacheDatasetV2",
        Severity.MEDIUM,
    ),
    **_entries(FILE_WRITE, "writes calibration statistics to its output_file_path", "CalibrationStatisticsSaver"),
    **_entries(
        NETWORK,
        "makes or serves remote procedure calls",
        "RpcClient RpcServer RpcServerStart RpcServerRegister RpcCall RpcCheckStatus RpcGetValue",
    ),
    **_entries(
        NETWORK,
        "connects to a tf.data service address",
        "DataServiceDataset DataServiceDatasetV2 "
        "DataServiceDatasetV3 DataServiceDatasetV4 RegisterDataset RegisterDatasetV2",
    ),
    **_entries(
        NETWORK,
        "debugger op that streams tensors to its debug_urls (file:// or grpc://)",
        "DebugIdentity DebugIdentityV2 DebugIdentityV3 DebugNanCount DebugNumericSummary DebugNumericSummaryV2",
    ),
    **_entries(NETWORK, "sets file-system configuration (endpoints, credentials)", "FileSystemSetConfiguration"),
    **_entries(RUNTIME_GRAPH, "runs a dataset graph parsed from a string at run time", "DatasetFromGraph"),
}

_DESCRIPTOR_FILE = "loads a proto descriptor from a file"
#: Ops that are dangerous only with some attribute values: (attribute, judge of its first value).
_BY_ATTRIBUTE: dict[str, tuple[str, OpVerdict]] = {
    "PrintV2": ("output_stream", OpVerdict(FILE_WRITE, "prints to a file:// stream", Severity.HIGH)),
    "DecodeProtoV2": ("descriptor_source", OpVerdict(FILE_READ, _DESCRIPTOR_FILE, Severity.HIGH)),
    "EncodeProto": ("descriptor_source", OpVerdict(FILE_READ, _DESCRIPTOR_FILE, Severity.HIGH)),
}
_BENIGN_ATTRIBUTE_PREFIXES = {"output_stream": ("std", "log("), "descriptor_source": ("local://", "bytes://")}

#: The checkpoint ops that the generated save and restore functions (or a TF1 `Saver`) always hold,
#: with the inputs that name files (io_ops.cc): a standard Saver derives each from its fed filename.
CHECKPOINT_PATH_INPUTS: dict[str, tuple[int, ...]] = {
    "Save": (0,),
    "SaveV2": (0,),
    "SaveSlices": (0,),
    "MergeV2Checkpoints": (0, 1),
    "Restore": (0,),
    "RestoreV2": (0,),
    "RestoreSlice": (0,),
    "DTensorRestoreV2": (0,),
}
CHECKPOINT_OPS = frozenset(CHECKPOINT_PATH_INPUTS)
#: Ops `judge_op` may flag: the only ones whose string attributes a caller needs to collect.
JUDGED_OPS = frozenset(_CATALOGUE) | frozenset(_BY_ATTRIBUTE)

#: Python API symbols (as Keras TFOpLambda / TensorFlowOpLayer record them) and the op they run; the
#: gfile helpers are Python file I/O with no op of their own, judged as the op they resemble.
_PYTHON_API: dict[str, str] = {
    "py_function": "EagerPyFunc",
    "numpy_function": "PyFunc",
    "py_func": "PyFunc",
    "io.read_file": "ReadFile",
    "read_file": "ReadFile",
    "io.write_file": "WriteFile",
    "write_file": "WriteFile",
    "io.matching_files": "MatchingFiles",
    "matching_files": "MatchingFiles",
    "io.gfile.GFile": "ReadFile",
    "gfile.GFile": "ReadFile",
    "io.gfile.glob": "MatchingFiles",
    "io.gfile.listdir": "MatchingFiles",
    "io.gfile.walk": "MatchingFiles",
    "io.gfile.copy": "WriteFile",
    "io.gfile.rename": "WriteFile",
    "io.gfile.remove": "WriteFile",
    "io.gfile.rmtree": "WriteFile",
    "io.gfile.makedirs": "WriteFile",
    "data.TFRecordDataset": "TFRecordDatasetV2",
    "data.TextLineDataset": "TextLineDataset",
    "data.FixedLengthRecordDataset": "FixedLengthRecordDatasetV2",
    "data.experimental.CsvDataset": "CSVDatasetV2",
    "data.experimental.SqlDataset": "SqlDataset",
    "data.Dataset.load": "LoadDataset",
    "data.Dataset.list_files": "MatchingFilesDataset",
}
_API_PREFIXES = ("tf.", "compat.v1.", "compat.v2.", "raw_ops.")


def judge_op(name: str, attrs: Mapping[str, Sequence[str]] | None = None) -> OpVerdict | None:
    """The verdict for one op by its registry name (and string attributes, where they matter).

    Returns None for ops that are not dangerous by themselves; unknown names are not judged here
    (see `is_registered`).
    """
    verdict = _CATALOGUE.get(name)
    if verdict is not None:
        return verdict
    conditional = _BY_ATTRIBUTE.get(name)
    if conditional is None or attrs is None:
        return None
    key, verdict = conditional
    values = attrs.get(key) or ()
    if any(value and not value.startswith(_BENIGN_ATTRIBUTE_PREFIXES[key]) for value in values):
        return verdict
    return None


def judge_symbol(symbol: str) -> OpVerdict | None:
    """The verdict for a TensorFlow Python API symbol such as `tf.io.read_file` or `raw_ops.ReadFile`.

    Keras records the symbols its operator layers call; `tf.raw_ops.X` names op X directly.
    """
    name = symbol
    stripped = True
    while stripped:
        stripped = False
        for prefix in _API_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                stripped = True
    op = _PYTHON_API.get(name, name)
    return _CATALOGUE.get(op)


@cache
def registered_ops() -> frozenset[str]:
    """Every op stock TensorFlow registers (data/tf_ops.json, generated by scripts/gen_tf_data.py)."""
    return frozenset(load_data("tf_ops.json")["ops"])


def is_registered(name: str) -> bool:
    """Whether stock TensorFlow knows this op; anything else needs a native custom-op library."""
    return name in registered_ops()


#: Policy allowlist of custom op names the user trusts (their own kernels, MediaPipe's...).
CUSTOM_OPS_ALLOWLIST = "tensorflow-custom-ops"
#: Places and attribute values shown per finding; the total count is always given.
_SHOWN = 5
_NOT_REGISTERED = OpVerdict(CUSTOM_OP, "is not registered by stock TensorFlow", CUSTOM_OP.severity)


@dataclass
class _Use:
    verdict: OpVerdict
    count: int = 0
    places: dict[str, int] = field(default_factory=dict)
    attrs: dict[str, list[str]] = field(default_factory=dict)


def where(count: int, places: Mapping[str, int]) -> str:
    """'3 use(s) in a, b and elsewhere': the shown places of `count` uses."""
    text = f"{count} use(s) in " + ", ".join(places)
    return text + (" and elsewhere" if count > sum(places.values()) else "")


class OpUses:
    """Collects judged op uses so that a graph with thousands of them yields one finding per op."""

    def __init__(self, allowed_custom: frozenset[str]) -> None:
        self._allowed_custom = allowed_custom
        self._uses: dict[str, _Use] = {}

    def add(self, op: str, place: str, attrs: Mapping[str, Sequence[str]] | None = None, count: int = 1) -> None:
        """Judge `count` uses of `op` at `place` (a function or subgraph name): a catalogued op, or
        an op TensorFlow does not register (unless the policy allows it)."""
        verdict = judge_op(op, attrs)
        if verdict is None:
            if is_registered(op) or op in self._allowed_custom:
                return
            verdict = _NOT_REGISTERED
        use = self._uses.setdefault(op, _Use(verdict))
        use.count += count
        if place in use.places or len(use.places) < _SHOWN:
            use.places[place] = use.places.get(place, 0) + count
        for key, values in (attrs or {}).items():
            shown = use.attrs.setdefault(key, [])
            shown.extend(v for v in values[:_SHOWN] if v not in shown)
            del shown[_SHOWN:]

    def findings(
        self, ctx: Context, what: str, format_name: str, *, note: str = "", severity: Severity | None = None
    ) -> Iterator[Finding]:
        """One finding per op; `what` names the op kind in the evidence ("op", "Flex op"). A caller
        that knows more about where the uses sit (unreachable code) gives the `severity` and a `note`."""
        for op, use in self._uses.items():
            evidence = f"{what} '{op}' {use.verdict.reason}: {where(use.count, use.places)}"
            values = "; ".join(f"{key}={vals!r}" for key, vals in use.attrs.items() if vals)
            if values:
                evidence += f" ({values})"
            yield ctx.finding(
                use.verdict.rule,
                evidence + note,
                severity=use.verdict.severity if severity is None else severity,
                op=op,
                uses=use.count,
                places=list(use.places),
                attributes=use.attrs,
                format=format_name,
            )
