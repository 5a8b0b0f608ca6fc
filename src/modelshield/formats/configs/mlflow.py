"""MLflow model folders: the `MLmodel` file that tells `mlflow.pyfunc.load_model` what to import and load.

`mlflow.pyfunc.load_model` (mlflow 3.17, `pyfunc/__init__.py`, read) takes the `python_function`
flavour of `MLmodel`, prepends `<model>/<code>` to `sys.path` (`utils/model_utils.py`: so a shipped
`code/numpy.py` shadows numpy for the rest of the process), then calls
`importlib.import_module(loader_module)._load_pyfunc(<model>/<data>)`. mlflow's own flavours name
`mlflow.<flavour>` loader modules, which load the flavour's file (`mlflow.sklearn`: a pickle, cloudpickle
or skops file, the latter with `skops.io.load(trusted=<the flavour's skops_trusted_types>)`, a list the
file itself supplies; `mlflow.pyfunc.model`: `python_model.pkl` with cloudpickle, or, for models from
code, executes `model_code_path`). Any other loader module is code: shipped in `code/` (analysed with
`core/remote_code`, the same analysis as Hugging Face remote code) or taken from the environment (judged
with `core/callables`). `python_env.yaml`, `conda.yaml` and `requirements.txt` are what `mlflow models
serve` and `spark_udf` install with `env_manager=virtualenv|conda`: listed, and unusual sources raised.
The flavour's model files are scanned as files of the folder by their own analysers; a path that leaves
the folder is a dependency (DEP002). YAML is read with the shared bounded reader (`yaml_tree`).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import Any

from modelshield.core import callables, remote_code
from modelshield.core.dependencies import named
from modelshield.core.dependency_rules import DEPENDENCY, DEPENDENCY_RULES
from modelshield.core.findings import Finding, Location
from modelshield.core.handler import Context, Handler
from modelshield.core.pysource import CodeProblem, analyse_source
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.source import Source
from modelshield.formats.configs import _requirements, yaml_tree
from modelshield.formats.configs.torchserve import shadows

LOADER_CODE = Rule(
    id="MLF001",
    title="MLflow model imports code it ships",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="The `python_function` flavour's `loader_module` is a module of the model's own `code/` folder, "
    "or the model is a model from code (`model_code_path`): `mlflow.pyfunc.load_model` imports or executes "
    "it when the model loads. The code is analysed statically (process execution, dynamic code, network "
    "access, file writes at import time and in constructors raise the severity); files of `code/` that the "
    "loader may import are analysed too.",
    attack="An MLflow model is a folder anyone can write: `loader_module: evil_loader` with "
    "`code/evil_loader.py` starting a shell at import runs on `mlflow.pyfunc.load_model(uri)`, before any "
    "prediction, and `code/` is first on `sys.path` for the rest of the process.",
    impact="Arbitrary code execution when the model is loaded.",
    remediation="Load models only from registries you control; review the `code/` folder and the loader "
    "module, or load the flavour's model file with its own, data-only loader.",
    example="`loader_module: evil_loader` and `code/evil_loader.py` calling `os.system(...)` at module level.",
)
LOADER_MODULE = Rule(
    id="MLF002",
    title="MLflow loader module is not one of mlflow's flavours",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="The `python_function` flavour names a `loader_module` outside `mlflow.*` that the model does "
    "not ship, so `mlflow.pyfunc.load_model` imports it from the environment and calls its `_load_pyfunc`. "
    "It is judged with the catalogue of callables: a module that runs code or commands is critical.",
    attack="The attacker picks an installed module whose import (or whose `_load_pyfunc`) acts, or one that a "
    "second package of theirs provides.",
    impact="Whatever importing the module does.",
    remediation="Use a model saved by an mlflow flavour, or review the package that provides the module.",
    example="`loader_module: antigravity`",
)
SHADOWING_CODE = Rule(
    id="MLF003",
    title="MLflow code path shadows installed modules or leaves the model folder",
    severity=Severity.HIGH,
    category=Category.LOAD_TIME_CODE,
    overview="mlflow prepends the flavour's `code` folder to `sys.path` when loading. A module there named "
    "like a standard-library or known package (`numpy.py`, `sklearn/`) replaces it for every later import in "
    "the process; a `code` path that is absolute or climbs out of the model folder puts a directory the model "
    "does not contain first on the import path.",
    attack="The loader module is mlflow's own and the model file is clean, but `code/sklearn/__init__.py` runs "
    "when mlflow.sklearn imports scikit-learn to unpickle the model.",
    impact="The shipped module's code runs under a trusted name.",
    remediation="Do not load the model; a model never needs to ship a module under another package's name.",
    example="`code: code` with `code/numpy.py`.",
)
TRUSTS_TYPES = Rule(
    id="MLF004",
    title="MLflow model makes skops trust types",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="The `sklearn` flavour's `skops_trusted_types` is passed by `mlflow.sklearn` to "
    "`skops.io.load(trusted=...)`: the file decides which types skops' audit lets through. Each type is "
    "judged with the catalogue of callables; see SKP001 and SKP002 for what skops does with them.",
    attack="The attacker lists `builtins.eval` (or their own class) in `skops_trusted_types` and uses it in "
    "the skops schema: skops' audit passes because the model itself said so.",
    impact="Whatever the trusted types do when skops imports and calls them; code execution for dangerous ones.",
    remediation="Load the skops file yourself with `trusted=` limited to types you reviewed.",
    example="`skops_trusted_types: [builtins.eval]`",
)
REQUIREMENTS = Rule(
    id="MLF005",
    title="MLflow model names packages to install",
    severity=Severity.INFO,
    category=Category.MODEL_DEPENDENCY,
    overview="The model's `requirements.txt`, `python_env.yaml` and `conda.yaml` list the packages that "
    "`mlflow models serve`, `mlflow models build-docker` and `spark_udf` install with "
    "`env_manager=virtualenv` or `conda` (installing a package runs its build code). The list is in the "
    "finding's details; index options, URLs, VCS links, local archives and URL channels are high.",
    attack="A clean model folder whose `requirements.txt` adds `--extra-index-url` to the attacker's index, "
    "or a typosquatted package, runs code on the serving host when the environment is built.",
    impact="Code execution at environment build time, outside the model's own files.",
    remediation="Build serving environments from reviewed, pinned requirements, not the model's own lists.",
    example="`requirements.txt` with `git+https://github.com/evil/pkg`.",
)
NOT_ANALYSED = Rule(
    id="MLF006",
    title="MLflow model not fully analysed",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="The `MLmodel` file or an environment file could not be parsed, or the loader module, model "
    "code or `code/` files it names are missing, over the bounds or unreadable (inside an archive the files "
    "beside `MLmodel` are not read), so some of what the loader runs was not judged.",
    attack="An attacker pads the loader module past the bound or ships more files than are analysed.",
    impact="Unknown: part of the code was not analysed.",
    remediation="Review the model folder by hand before loading it.",
)
RULES = (LOADER_CODE, LOADER_MODULE, SHADOWING_CODE, TRUSTS_TYPES, REQUIREMENTS, NOT_ANALYSED, *DEPENDENCY_RULES)

MAX_MLMODEL = 1024 * 1024
#: Bytes of a file's head in which `flavors:` must appear for it to be an MLmodel.
HEAD = 16 * 1024
MAX_ENV_FILE = 1024 * 1024
MAX_CODE_FILES = 64
#: Python of a code folder analysed besides the loader module (about two seconds per megabyte).
MAX_CODE_BYTES = 2 * 1024 * 1024
#: Keys of a flavour whose value is a file or folder the flavour's loader opens, relative to the model.
MODEL_FILE_KEYS = ("model_path", "pickled_model", "data", "python_model", "model_code_path", "model_data")
#: Environment files read per model (requirements files may include others with `-r`).
MAX_ENV_FILES = 8


def _text(node: yaml_tree.Node | None) -> str | None:
    text = yaml_tree.text_of(node)
    return None if text is None or (text in ("", "~", "null", "Null", "NULL") and _plain(node)) else text


def _inside(path: str) -> bool:
    """Whether a relative file name stays inside the model folder."""
    return not os.path.isabs(path) and ".." not in path.replace("\\", "/").split("/")


def _plain(node: yaml_tree.Node | None) -> bool:
    return isinstance(node, yaml_tree.Scalar) and node.plain


def _items(node: yaml_tree.Node | None) -> list[yaml_tree.Node]:
    return node.items if isinstance(node, yaml_tree.Sequence) else []


def read_mlmodel(source: Source) -> yaml_tree.Mapping | None:
    """The MLmodel document if the bytes are one (a YAML mapping with a `flavors` mapping), else None."""
    head = source.head(HEAD)
    # mlflow writes MLmodel's keys sorted: `flavors` follows a few short keys, well inside the head.
    # Only then is the size asked, which for a decoded member means decoding it.
    if b"flavors:" not in head or b"\0" in head or source.size > MAX_MLMODEL:
        return None
    data = source.read_at(0, source.size)
    try:
        stream = yaml_tree.parse(data)
    except yaml_tree.YamlSyntax:
        return None
    doc = stream.documents[0] if len(stream.documents) == 1 else None
    return doc if isinstance(doc, yaml_tree.Mapping) and isinstance(doc.get("flavors"), yaml_tree.Mapping) else None


class MlflowModel:
    """One MLmodel file and the folder beside it (None inside an archive)."""

    def __init__(self, doc: yaml_tree.Mapping, ctx: Context) -> None:
        self.doc = doc
        self.ctx = ctx
        self.folder = None if ctx.location.members else os.path.dirname(os.path.abspath(ctx.location.path))
        flavors = doc.get("flavors")
        assert isinstance(flavors, yaml_tree.Mapping)
        self.flavors = {key.value: value for key, value in flavors.pairs if isinstance(key, yaml_tree.Scalar)}

    def finding(
        self, rule: Rule, evidence: str, severity: Severity | None = None, file: str = "", **details: Any
    ) -> Finding:
        if file and self.folder is not None:
            return Finding(rule, Location(os.path.join(self.folder, file)), evidence, severity, details)
        return self.ctx.finding(rule, evidence, severity=severity, **details)

    def flavour(self, name: str) -> yaml_tree.Mapping | None:
        value = self.flavors.get(name)
        return value if isinstance(value, yaml_tree.Mapping) else None

    def findings(self) -> Iterator[Finding]:
        pyfunc = self.flavour("python_function")
        confs = [conf for conf in self.flavors.values() if isinstance(conf, yaml_tree.Mapping)]
        folders: dict[str, str] = {}  # `code` value -> its folder (every flavour's loader prepends its own)
        for code in dict.fromkeys(c for conf in confs if (c := _text(conf.get("code")))):
            folder = yield from self._code_folder(code)
            if folder is not None:
                folders[code] = folder
        analysed: list[str] = []
        if pyfunc is not None:
            analysed = yield from self._loader_module(pyfunc, folders.get(_text(pyfunc.get("code")) or ""))
            yield from self._model_code(pyfunc)
        for folder in folders.values():
            yield from self._other_code(folder, analysed)
        sklearn = self.flavour("sklearn")
        if sklearn is not None:
            yield from self._trusted_types(sklearn)
        for name, conf in self.flavors.items():
            if isinstance(conf, yaml_tree.Mapping):
                yield from self._model_files(name, conf)
        if self.folder is not None:
            yield from self._environment()

    # ------------------------------------------------------------------ code
    def _code_folder(self, code: str | None) -> Generator[Finding, None, str | None]:
        """The `code` folder prepended to sys.path: where it points, and what it shadows."""
        if code is None:
            return None
        if not _inside(code):
            evidence = f"code path {code!r} leaves the model folder: mlflow puts it first on sys.path"
            yield self.finding(SHADOWING_CODE, evidence)
            return None
        if self.folder is None:
            return None
        folder = os.path.join(self.folder, code)
        if not os.path.isdir(folder):
            return None
        real, home = os.path.realpath(folder), os.path.realpath(self.folder)
        if os.path.commonpath([real, home]) != home:
            evidence = (
                f"code path {code!r} is a link to {real}, outside the model folder: mlflow puts it first on sys.path"
            )
            yield self.finding(SHADOWING_CODE, evidence)
            return None
        for entry in sorted(os.listdir(folder))[: MAX_CODE_FILES * 4]:
            module = entry.removesuffix(".py") if entry.endswith(".py") else entry
            is_package = os.path.isdir(os.path.join(folder, entry))
            if (entry.endswith(".py") or is_package) and module.isidentifier() and shadows(module):
                evidence = f"{code}/{entry} shadows the installed module {module!r}: {code}/ is first on sys.path"
                yield self.finding(SHADOWING_CODE, evidence, file=os.path.join(code, entry), module=module)
        return folder

    def _loader_module(self, pyfunc: yaml_tree.Mapping, code_folder: str | None) -> Generator[Finding, None, list[str]]:
        """The loader module, shipped (analysed; its files returned) or from the environment (judged)."""
        module = _text(pyfunc.get("loader_module"))
        if module is None:
            yield self.finding(NOT_ANALYSED, "python_function flavour without a loader_module", Severity.LOW)
            return []
        if module == "mlflow" or module.startswith("mlflow."):
            verdict = callables.judge(module, "")
            if verdict.severity >= Severity.HIGH:  # mlflow.projects runs commands
                yield self.finding(
                    LOADER_MODULE, f"loader_module {module!r}: it {verdict.kind.value}", verdict.severity
                )
            return []
        if code_folder is not None and remote_code.MODULE_NAME.match(module):
            package = os.path.join(code_folder, *module.split("."), "__init__.py")
            name = f"{module}.__init__" if os.path.isfile(package) else module
            problems, analysed = remote_code.analyse_modules(code_folder, [name])
            if analysed:
                yield self._code_finding(f"loader_module {module!r} is shipped in code/", problems, analysed)
                return [os.path.join(code_folder, a) for a in analysed]
        if self.folder is None:
            evidence = f"loader_module {module!r} is not mlflow's; its code folder is not readable inside an archive"
            yield self.finding(NOT_ANALYSED, evidence)
        verdict = callables.judge(module, "_load_pyfunc")
        evidence = f"loader_module {module!r} is imported from the environment and its _load_pyfunc called; "
        evidence += f"it {verdict.kind.value} ({verdict.reason})"
        yield self.finding(LOADER_MODULE, evidence, max(verdict.severity, Severity.MEDIUM), callable=module)
        return []

    def _other_code(self, folder: str, analysed: list[str]) -> Iterator[Finding]:
        """The other `.py` files of a code folder: importable by the loader or the pickled model."""
        assert self.folder is not None
        files: list[str] = []
        for root, dirs, names in os.walk(folder):
            dirs.sort()
            files += [os.path.join(root, n) for n in sorted(names) if n.endswith(".py")]
            if len(files) > MAX_CODE_FILES:
                break
        if len(files) > MAX_CODE_FILES:
            yield self.finding(
                NOT_ANALYSED, f"more than {MAX_CODE_FILES} Python files in {folder}; the rest not analysed"
            )
        budget = MAX_CODE_BYTES
        for path in files[:MAX_CODE_FILES]:
            if path in analysed:
                continue
            name = os.path.relpath(path, self.folder)
            size = os.path.getsize(path)
            if size > budget:
                evidence = f"{name} not analysed: over {MAX_CODE_BYTES} bytes of Python in all"
                yield self.finding(NOT_ANALYSED, evidence, file=name)
                continue
            budget -= size
            with open(path, "rb") as handle:
                problems, _ = analyse_source(handle.read().decode("utf-8", "replace"), name)
            if problems:
                shown = "; ".join(str(p) for p in problems[:3])
                evidence = f"{name} is on sys.path while the model loads (its code folder is prepended); {shown}"
                severity = max(p.severity for p in problems)
                yield self.finding(LOADER_CODE, evidence, severity, file=name, problems=[str(p) for p in problems[:20]])

    def _model_code(self, pyfunc: yaml_tree.Mapping) -> Iterator[Finding]:
        """Models from code: mlflow executes `<model>/<basename of model_code_path>` as a module."""
        path = _text(pyfunc.get("model_code_path"))
        if path is None or self.folder is None:
            return
        name = os.path.basename(path)
        file = os.path.join(self.folder, name)
        if not os.path.isfile(file):
            yield self.finding(NOT_ANALYSED, f"model_code_path {path!r}: {name} is not in the model folder")
            return
        module = name.removesuffix(".py")
        problems, analysed = remote_code.analyse_modules(self.folder, [module]) if module.isidentifier() else ([], [])
        if not analysed:
            yield self.finding(NOT_ANALYSED, f"model_code_path {path!r} could not be analysed", file=name)
            return
        yield self._code_finding(f"model_code_path {name} is executed to build the model", problems, analysed)

    def _code_finding(self, what: str, problems: list[CodeProblem], analysed: list[str]) -> Finding:
        severity = max([Severity.MEDIUM, *(p.severity for p in problems)])
        shown = "; ".join(str(p) for p in problems[:3]) or "no dangerous call found by static analysis"
        evidence = f"{what}, imported by mlflow.pyfunc.load_model; {shown}"
        return self.finding(
            LOADER_CODE, evidence, severity, analysed=analysed, problems=[str(p) for p in problems[:20]]
        )

    # ------------------------------------------------------------------ files and trust
    def _trusted_types(self, sklearn: yaml_tree.Mapping) -> Iterator[Finding]:
        for node in _items(sklearn.get("skops_trusted_types"))[:200]:
            name = _text(node)
            if name is None:
                continue
            module, _, qualname = name.rpartition(".")
            verdict = callables.judge(module, qualname)
            if verdict.trusted or callables.is_ufunc(module, qualname):
                continue
            evidence = f"skops_trusted_types lists {name!r}, passed to skops.io.load(trusted=...): "
            evidence += f"it {verdict.kind.value} ({verdict.reason})"
            yield self.finding(TRUSTS_TYPES, evidence, verdict.severity, callable=name)

    def _model_files(self, flavour: str, conf: yaml_tree.Mapping) -> Iterator[Finding]:
        """A flavour file outside the model folder is loaded from wherever it points: a dependency."""
        for key in MODEL_FILE_KEYS:
            value = _text(conf.get(key))
            if value is None or _inside(value):
                continue
            if key == "model_code_path":
                continue  # mlflow keeps only its basename, inside the model folder
            dependency = named(value, f"mlflow {flavour} {key}", hub=False)
            if dependency is not None:
                evidence = f"{flavour}.{key} {value!r} is outside the model folder: the flavour loads it from there"
                yield self.finding(DEPENDENCY, evidence, Severity.MEDIUM, **dependency.details())

    def _environment(self) -> Iterator[Finding]:
        """One finding for the model: every requirement of its environment files, by file."""
        assert self.folder is not None
        listed: dict[str, list[str]] = {}
        names: dict[str, None] = {}
        unusual: list[str] = []
        files = self._env_files()
        for name, kind in files:  # grows with `-r other.txt` includes
            path = os.path.join(self.folder, name)
            if not os.path.isfile(path):
                continue
            if os.path.getsize(path) > MAX_ENV_FILE:
                yield self.finding(NOT_ANALYSED, f"{name} is over the {MAX_ENV_FILE}-byte bound", file=name)
                continue
            with open(path, "rb") as handle:
                data = handle.read(MAX_ENV_FILE)
            lines, odd = yield from self._env_lines(name, kind, data)
            requirements = []
            for requirement in _requirements.parse(lines):
                include = requirement.text.partition(" ")[2].strip() if requirement.text.startswith("-r ") else None
                if include is None:
                    requirements.append(requirement)
                elif _inside(include) and len(files) < MAX_ENV_FILES and (include, "requirements") not in files:
                    files.append((os.path.normpath(include), "requirements"))
            unusual += [f"{name}: {u}" for u in odd]
            unusual += [f"{name}: {r.text[:80]}: {r.unusual}" for r in requirements if r.unusual]
            if requirements:
                listed[name] = [r.text for r in requirements]
                names.update(dict.fromkeys(r.name or r.text[:40] for r in requirements))
        if not listed and not unusual:
            return
        shown = list(names)
        evidence = f"the environment files list {', '.join(shown[:10])}" + (", ..." if len(shown) > 10 else "")
        if unusual:
            evidence += "; " + "; ".join(unusual[:3])
        yield self.finding(REQUIREMENTS, evidence, Severity.HIGH if unusual else None, requirements=listed)

    def _env_files(self) -> list[tuple[str, str]]:
        """The environment files mlflow would build from: `requirements.txt` and the python_function
        flavour's `env` files (`virtualenv`, `conda`), by default `python_env.yaml` and `conda.yaml`."""
        pyfunc = self.flavour("python_function")
        env = pyfunc.get("env") if pyfunc is not None else None
        named_files = {"virtualenv": "python_env.yaml", "conda": "conda.yaml"}
        if isinstance(env, yaml_tree.Mapping):
            for kind in named_files:
                value = _text(env.get(kind))
                if value is not None and _inside(value):
                    named_files[kind] = os.path.normpath(value)
        return [("requirements.txt", "requirements"), *((name, kind) for kind, name in named_files.items())]

    def _env_lines(self, name: str, kind: str, data: bytes) -> Generator[Finding, None, tuple[list[str], list[str]]]:
        """Requirement lines of one environment file, and the unusual channels of a conda file."""
        if kind == "requirements":
            return data.decode("utf-8", "replace").splitlines(), []
        try:
            stream = yaml_tree.parse(data)
        except (yaml_tree.YamlSyntax, yaml_tree.YamlLimit) as exc:
            yield self.finding(NOT_ANALYSED, f"{name}: {exc}", file=name)
            return [], []
        doc = stream.documents[0] if stream.documents else None
        if not isinstance(doc, yaml_tree.Mapping):
            return [], []
        lines: list[str] = []
        unusual: list[str] = []
        for key in ("build_dependencies", "dependencies"):
            for item in _items(doc.get(key)):
                if isinstance(item, yaml_tree.Mapping):  # conda's `- pip: [...]`
                    lines += [t for n in _items(item.get("pip")) if (t := _text(n))]
                elif (text := _text(item)) is not None and (kind == "virtualenv" or "://" in text):
                    lines.append(text)  # conda's own packages are conda specs, not pip requirements
        for channel in _items(doc.get("channels")):
            text = _text(channel)
            if text is not None and ("://" in text or text.startswith(("/", "."))):
                unusual.append(f"conda channel {text[:80]}: packages come from a channel the model chose")
        return lines, unusual


class MlflowModelHandler(Handler):
    name = "mlflow"
    label = "MLflow MLmodel"
    rules = RULES

    def detect(self, source: Source) -> bool:
        return read_mlmodel(source) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        doc = read_mlmodel(source)
        assert doc is not None
        yield from MlflowModel(doc, ctx).findings()
