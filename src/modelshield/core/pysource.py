"""The shared analyser of Python source that loaders run, with Python's `ast`: parsed, never executed.

Two readings of one parser. `analyse_source` reads hand-written code (remote code a config's `auto_map`
names, code shipped beside a model): what runs at import time (module level, class bodies, decorators,
default values) and in constructors runs as soon as the model loads, and process execution, dynamic
code, network access, file writes and dynamic imports there are what a payload needs.
`analyse_generated` reads code a framework generated and stores in the file (the `forward()` of a
`torch.fx.GraphModule`): every import and call must be a known tensor or arithmetic operation, and
anything else is judged with the callable catalogue (`modelshield.core.callables`).
"""

from __future__ import annotations

import ast
import collections
import fnmatch
from collections.abc import Callable
from typing import NamedTuple, Protocol

from modelshield.core.findings import truncate
from modelshield.core.rules import Severity

#: Methods that run when a model object is built.
CONSTRUCTORS = frozenset({"__init__", "__new__", "__post_init__", "__init_subclass__", "__set_name__"})

_RUNS = "runs a command or native code"
_CODE = "executes dynamic code"
_NET = "accesses the network"
_WRITE = "writes or removes files"
_IMPORT = "imports a module named at run time"

#: Dotted names (globs) of calls, by what they do; a call is judged by its first matching group.
_CALLS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        _RUNS,
        (
            "os.system",
            "os.popen",
            "os.exec*",
            "os.spawn*",
            "os.posix_spawn*",
            "os.fork*",
            "subprocess.*",
            "pty.spawn",
            "commands.*",
            "ctypes.*",
            "posix.system",
            "nt.system",
        ),
    ),
    (_CODE, ("eval", "exec", "builtins.eval", "builtins.exec", "runpy.*", "marshal.loads", "types.CodeType")),
    (_NET, ("socket.*", "urllib.request.*", "urllib.urlopen", "urllib2.*", "requests.*", "httpx.*", "http.client.*")),
    (_NET, ("aiohttp.*", "ftplib.*", "smtplib.*", "telnetlib.*", "paramiko.*", "huggingface_hub.*download*")),
    (
        _WRITE,
        (
            "os.remove",
            "os.unlink",
            "os.rename",
            "os.replace",
            "os.rmdir",
            "os.removedirs",
            "os.chmod",
            "os.chown",
            "os.symlink",
            "os.truncate",
            "shutil.rmtree",
            "shutil.move",
            "shutil.copy*",
        ),
    ),
    (_CODE, ("compile", "builtins.compile")),
)
#: Dynamic imports are judged by their argument: a constant module name is an ordinary import.
_IMPORTERS = frozenset({"__import__", "builtins.__import__", "importlib.import_module", "importlib.__import__"})
_GETATTRS = frozenset({"getattr", "builtins.getattr"})
_WRITE_METHODS = frozenset({"write_text", "write_bytes"})
_SEVERE = frozenset({_RUNS, _CODE})


class CodeProblem(NamedTuple):
    severity: Severity
    file: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local names bound by imports anywhere in the file, to the dotted names they stand for."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """`a.b.c` with import aliases resolved; `__import__('os').system` and `getattr(os, 'system')` too."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
            continue
        if isinstance(node, ast.Call) and len(node.args) >= 1:
            func = _dotted(node.func, aliases)
            first, last = node.args[0], node.args[-1]
            if func in _IMPORTERS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                parts.append(first.value)
                break
            if func in _GETATTRS and len(node.args) == 2 and isinstance(last, ast.Constant):
                parts.append(str(last.value))
                node = first
                continue
        if not isinstance(node, ast.Name):
            return None
        parts.append(aliases.get(node.id, node.id))
        break
    return ".".join(reversed(parts))


def _writes(call: ast.Call) -> bool:
    """`open(path, 'w')` and the like: a constant mode that writes, appends or creates."""
    modes = [kw.value for kw in call.keywords if kw.arg == "mode"] + call.args[1:2]
    return any(isinstance(m, ast.Constant) and isinstance(m.value, str) and set(m.value) & set("wax+") for m in modes)


def _judge(call: ast.Call, aliases: dict[str, str]) -> str | None:
    """What a call does that remote code must not do, or None."""
    if isinstance(call.func, ast.Attribute) and call.func.attr in _WRITE_METHODS:
        return _WRITE
    name = _dotted(call.func, aliases)
    if name is None:
        return None
    if name in _GETATTRS:
        attr = call.args[1] if len(call.args) > 1 else None
        return None if isinstance(attr, ast.Constant) else _CODE
    if name in _IMPORTERS:
        first = call.args[0] if call.args else None
        return None if isinstance(first, ast.Constant) else _IMPORT
    if name in ("open", "builtins.open", "io.open"):
        return _WRITE if _writes(call) else None
    for what, patterns in _CALLS:
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return what
    return None


def analyse_source(
    text: str, file: str, constructors: frozenset[str] = CONSTRUCTORS
) -> tuple[list[CodeProblem], list[str]]:
    """Problems in one file's code, and the modules it imports relatively (`from .x import y` -> 'x');
    methods named in `constructors` are judged as running at load."""
    try:
        tree = ast.parse(text, filename=file)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return [CodeProblem(Severity.MEDIUM, file, 0, f"could not be parsed ({type(exc).__name__}); not analysed")], []
    aliases = _aliases(tree)
    problems: list[CodeProblem] = []
    relative: list[str] = []
    # (node, when it runs, whether it is directly in a class body); an explicit stack bounds recursion.
    stack: list[tuple[ast.AST, str, bool]] = [(tree, "at import time", False)]
    called: set[int] = set()
    while stack:
        node, when, in_class = stack.pop()
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            relative += [node.module] if node.module else [alias.name for alias in node.names]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            outer = [*node.decorator_list, *node.args.defaults, *(d for d in node.args.kw_defaults if d)]
            stack += [(child, when, False) for child in outer]
            inner = "in a constructor" if in_class and node.name in constructors and when != "when called" else None
            stack += [(child, inner or "when called", False) for child in node.body]
            continue
        if isinstance(node, ast.Lambda):
            stack += [(child, when, False) for child in (*node.args.defaults, *(d for d in node.args.kw_defaults if d))]
            stack.append((node.body, "when called", False))
            continue
        if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load) and id(node) not in called:
            # a reference is a call in disguise at load: `@eval`, `run = os.system`, `__reduce__` returning it
            what = _judge(ast.Call(func=node, args=[], keywords=[]), aliases) if when != "when called" else None
            if what in _SEVERE:
                code = truncate(ast.get_source_segment(text, node) or ast.unparse(node), 120)
                problems.append(CodeProblem(Severity.CRITICAL, file, node.lineno, f"{code} used {when} ({what})"))
        if isinstance(node, ast.Call):
            called.add(id(node.func))
            what = _judge(node, aliases)
            if what is not None and (when != "when called" or what in _SEVERE):
                severity = Severity.CRITICAL if what in _SEVERE and when != "when called" else Severity.HIGH
                code = truncate(ast.get_source_segment(text, node) or ast.unparse(node), 120)
                problems.append(CodeProblem(severity, file, node.lineno, f"{code} {when} ({what})"))
        is_class = isinstance(node, ast.ClassDef)
        stack += [(child, when, is_class) for child in ast.iter_child_nodes(node)]
    problems.sort(key=lambda p: (-p.severity, p.line))
    return problems, relative


# --------------------------------------------------------------------------- generated code
class Judged(Protocol):
    """What the callable catalogue says about a name (`modelshield.core.callables.Verdict`)."""

    @property
    def trusted(self) -> bool: ...

    @property
    def severity(self) -> Severity: ...

    @property
    def reason(self) -> str: ...


NameJudge = Callable[[str, str], Judged]


class GeneratedCode(NamedTuple):
    """Problems in generated code, and the operations it calls that the catalogue trusts."""

    problems: list[CodeProblem]
    operations: list[str]

    @property
    def severity(self) -> Severity:
        """Medium when the code only computes (it still runs at load), else its worst problem."""
        return max([Severity.MEDIUM, *(p.severity for p in self.problems)])


#: Builtins that generated code calls on values: conversions and shape helpers.
_VALUE_BUILTINS = frozenset(
    "len isinstance int float bool str tuple list dict set slice range abs min max sum round divmod "
    "hash iter next enumerate zip reversed sorted any all type print".split()
)
#: Builtins that torch.fx imports by name; their calls are judged where they are made.
_IMPORTED_BUILTINS = _VALUE_BUILTINS | {"getattr"}
#: Methods of values (numpy arrays, paths, files) that write files, run code or load other files.
_ACTIVE_METHODS = _WRITE_METHODS | {"tofile", "save", "dump", "write", "system", "popen", "load", "unlink"}
_MAX_GENERATED_PROBLEMS = 20


def analyse_generated(text: str, file: str, judge: NameJudge) -> GeneratedCode:
    """Every import and call in code a framework generated, judged by `judge(module, qualname)`.

    Imports run module code and bind the names the code calls, so both are judged; method calls on
    values (tensors, `self.<submodule>`) are fine unless they walk through dunder attributes; a
    `getattr` with a computed or dunder name reaches anything.
    """
    try:
        tree = ast.parse(text, filename=file)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        problem = CodeProblem(Severity.MEDIUM, file, 0, f"could not be parsed ({type(exc).__name__}); not analysed")
        return GeneratedCode([problem], [])
    names: dict[str, str] = {}
    problems: list[CodeProblem] = []
    operations: dict[str, None] = {}

    def check(node: ast.AST, module: str, qualname: str, shown: str) -> None:
        verdict = judge(module, qualname)
        if verdict.trusted:
            if isinstance(node, ast.Call):
                operations[shown] = None
            return
        severity = Severity.CRITICAL if verdict.severity >= Severity.HIGH else Severity.HIGH
        problems.append(CodeProblem(severity, file, getattr(node, "lineno", 0), f"{shown}: {verdict.reason}"))

    def flag(node: ast.AST, severity: Severity, text_: str) -> None:
        problems.append(CodeProblem(severity, file, getattr(node, "lineno", 0), text_))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                module, _, last = alias.name.rpartition(".")
                check(node, module or alias.name, last if module else "", f"import {alias.name}")
                # `import a.b` binds `a`; `import a.b as c` binds `c` to `a.b`.
                names[alias.asname or alias.name.partition(".")[0]] = (
                    alias.name if alias.asname else alias.name.partition(".")[0]
                )
        elif isinstance(node, ast.ImportFrom):
            if node.level or not node.module:
                flag(node, Severity.HIGH, "relative import in generated code")
                continue
            for alias in node.names:
                if node.module != "builtins" or alias.name not in _IMPORTED_BUILTINS:
                    check(node, node.module, alias.name, f"from {node.module} import {alias.name}")
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr.endswith("__"):
            flag(node, Severity.CRITICAL, f"walks through the dunder attribute {node.attr!r}")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        dotted = _dotted(func, names)
        head = func
        while isinstance(head, ast.Attribute):
            head = head.value
        if isinstance(head, ast.Name) and head.id in names and dotted is not None:
            module, _, qualname = dotted.rpartition(".")
            check(node, module, qualname, dotted)
        elif isinstance(func, ast.Attribute) and func.attr in _ACTIVE_METHODS:
            flag(node, Severity.CRITICAL, f"calls the method {func.attr!r}, which writes, runs or loads")
        elif isinstance(func, ast.Name) and func.id == "getattr":
            attr = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str) and not attr.value.startswith("__")):
                flag(node, Severity.CRITICAL, "getattr with a computed or dunder attribute name")
        elif isinstance(func, ast.Name) and func.id not in _VALUE_BUILTINS:
            check(node, "builtins", func.id, func.id)
    problems.sort(key=lambda p: (-p.severity, p.line))
    return GeneratedCode(problems[:_MAX_GENERATED_PROBLEMS], list(operations))


# --------------------------------------------------------------------------- TorchScript
#: What a TorchScript call does beyond computing, by severity: process and dynamic code, file and
#: network access, native code outside the builtin operator namespaces.
TS_RUNS = "runs a command or dynamic code"
TS_ACCESS = "reads or writes files or the network"
TS_NATIVE = "calls a custom operator or class that needs a native library"
TS_UNPARSED = "could not be parsed; not analysed"
#: Operator namespaces torch registers itself (`ops.aten.add`, `ops.prim.unchecked_cast`).
TS_BUILTIN_NAMESPACES = frozenset({"aten", "prim", "prims", "quantized", "_quantized", "profiler"})
#: Builtin operators (`torch.<op>` is `aten::<op>`) that touch files: `aten::from_file` maps or reads any
#: path, `aten::save` writes one; the others load or save models and modules.
TS_FILE_OPS = frozenset({"from_file", "save", "load", "_load_for_mobile", "_save_jit_module", "_save_parameters"})
#: Namespaces under `torch.` that are not operators and reach files, the network or native libraries.
TS_FILE_NAMESPACES = frozenset({"hub", "jit", "package", "serialization", "_C", "_dynamo", "utils", "cuda"})


_TS_ROOTS = ("torch.", "ops.")


def _ts_name(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """A dotted name, reading `getattr(x, "name")` as `x.name`; None when a part is computed."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
        attr = node.args[1] if len(node.args) > 1 else None
        base = _ts_name(node.args[0], aliases) if node.args else None
        if base is None or not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
            return None
        return f"{base}.{attr.value}"
    if isinstance(node, ast.Attribute):
        base = _ts_name(node.value, aliases)
        return None if base is None else f"{base}.{node.attr}"
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    return None


def _ts_judge(call: ast.Call, aliases: dict[str, str]) -> str | None:
    """What one TorchScript call does that a tensor program does not, or None."""
    func = call.func
    if isinstance(func, ast.Name) and func.id == "getattr":
        attr = call.args[1] if len(call.args) > 1 else None
        if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
            return TS_RUNS  # TorchScript itself refuses a computed name: only a hand-made archive has one
    name = _ts_name(func, aliases)
    if name is None:
        return None
    parts = name.removeprefix("torch.").split(".") if name.startswith("torch.ops.") else name.split(".")
    if parts[0] == "ops" and len(parts) > 1:
        if any(part.startswith("__") for part in parts[1:3]):
            return TS_RUNS  # `ops.aten.__getattr__(name)`: an operator looked up by a computed name
        if parts[1] not in TS_BUILTIN_NAMESPACES:
            return TS_NATIVE
        return TS_ACCESS if parts[2:3] and parts[2] in TS_FILE_OPS else None
    if parts[0] == "torch" and len(parts) > 1:
        if parts[1] == "classes":
            return TS_NATIVE
        if parts[1] in TS_FILE_OPS or parts[1] in TS_FILE_NAMESPACES:
            return TS_ACCESS
        return None
    if name in ("open", "builtins.open", "io.open", "__builtins__.open"):
        return TS_ACCESS
    what = _judge(call, aliases)
    if what in _SEVERE or what == _IMPORT:
        return TS_RUNS
    return TS_ACCESS if what is not None else None


def analyse_torchscript(text: str, file: str) -> list[tuple[str, CodeProblem]]:
    """Every call and import in one TorchScript code member that does more than compute, with what it does.

    TorchScript code is what `torch.jit.save` prints: calls of `torch.<op>` (aten operators),
    `ops.<namespace>.<op>`, methods of `self` and of `__torch__` classes. Its only imports are of
    `__torch__` modules; anything else comes from a hand-edited archive and is judged like remote code.
    """
    try:
        tree = ast.parse(text, filename=file)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return [(TS_UNPARSED, CodeProblem(Severity.MEDIUM, file, 0, f"could not be parsed ({type(exc).__name__})"))]
    aliases = _aliases(tree)
    found: list[tuple[str, CodeProblem]] = []
    called: set[int] = set()
    severity = {TS_RUNS: Severity.CRITICAL, TS_ACCESS: Severity.HIGH, TS_NATIVE: Severity.MEDIUM}
    # (node, enclosing function); parents come before children, so a call marks its callee chain first
    queue: collections.deque[tuple[ast.AST, str | None]] = collections.deque([(tree, None)])
    while queue:
        node, method = queue.popleft()
        inner = node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else method
        queue.extend((child, inner) for child in ast.iter_child_nodes(node))
        what: str | None = None
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
            what = None if all(m == "__torch__" or m.startswith("__torch__.") for m in modules) else TS_RUNS
        elif isinstance(node, ast.ImportFrom):
            what = None if (node.module or "").partition(".")[0] == "__torch__" and not node.level else TS_RUNS
        elif isinstance(node, ast.Call):
            what = _ts_judge(node, aliases)
            chain: ast.expr = node.func
            while isinstance(chain, ast.Attribute):
                called.add(id(chain))
                chain = chain.value
        elif isinstance(node, ast.Attribute) and id(node) not in called:
            # a bound operator called later (`f = torch.save`, `o = torch.ops.evil`) is judged where it is named
            name = _ts_name(node, aliases) or ""
            what = _ts_judge(ast.Call(func=node, args=[], keywords=[]), aliases) if name.startswith(_TS_ROOTS) else None
        if what is None:
            continue
        when = "at load (__setstate__)" if method == "__setstate__" else f"in {method}()" if method else "at compile"
        code = truncate(ast.get_source_segment(text, node) or ast.unparse(node), 120)
        found.append((what, CodeProblem(severity[what], file, getattr(node, "lineno", 0), f"{code} {when}: {what}")))
    found.sort(key=lambda item: (-item[1].severity, item[1].line))
    return found


# --------------------------------------------------------------------------- patsy formulas
#: Functions a patsy formula may call that only transform columns (patsy's own and numpy's maths).
_FORMULA_CALLS = frozenset(
    "C I Q center standardize scale bs cr cc te Treatment Sum Diff Poly Helmert np.log np.log1p np.log2 "
    "np.log10 np.exp np.sqrt np.abs np.power np.square np.sin np.cos np.tanh np.clip".split()
)


def formula_problems(formula: str) -> list[str] | None:
    """What a patsy formula evaluates beyond column names, numbers and known transforms
    (patsy evaluates each term as Python); None when it cannot be read as a formula at all."""
    # `~` separates the sides and `:` is an interaction: both become operators Python can parse.
    text = formula.strip().removeprefix("~").replace("~", ",").replace(":", "*")
    try:
        tree = ast.parse(f"({text},)", mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func, {})
            if name not in _FORMULA_CALLS:
                found.append(truncate(ast.unparse(node), 80))
        elif (isinstance(node, ast.Attribute) and _dotted(node, {}) not in _FORMULA_CALLS) or isinstance(
            node, (ast.Lambda, ast.NamedExpr, ast.Subscript, ast.comprehension)
        ):
            found.append(truncate(ast.unparse(node), 80))
    return found
