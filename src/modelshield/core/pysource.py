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
import re
from collections.abc import Callable, Iterator
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
_LOAD = "loads a pickle or another model"
_READ = "reads a file"
_READ_OUTSIDE = "reads a file outside the model (home folder, absolute path, environment)"

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
    (_LOAD, ("pickle.load", "pickle.Unpickler", "dill.load", "cloudpickle.load", "joblib.load", "torch.load")),
    (_LOAD, ("numpy.load", "torch.jit.load", "torch.hub.*", "shelve.open")),
    # the PackageImporter a torch.package module can import by this name: it loads the archive's other pickles
    (_LOAD, ("torch_package_importer.load_pickle", "torch_package_importer.import_module")),
)
#: Dynamic imports are judged by their argument: a constant module name is an ordinary import.
_IMPORTERS = frozenset({"__import__", "builtins.__import__", "importlib.import_module", "importlib.__import__"})
_GETATTRS = frozenset({"getattr", "builtins.getattr"})
#: `operator.attrgetter('system')(os)`, `operator.methodcaller('system', 'id')(os)`: getattr by another name.
_ATTRIBUTE_CALLERS = frozenset({"operator.attrgetter", "operator.methodcaller", "_operator.attrgetter"})
_OPENERS = frozenset({"open", "builtins.open", "io.open", "codecs.open", "os.open"})
#: Calls that name the world outside the model folder when used to build a path.
_OUTSIDE = frozenset({"os.path.expanduser", "os.environ", "os.getenv", "os.environ.get", "pathlib.Path.home"})
_NAMESPACES = frozenset({"globals", "locals", "vars"})
#: Modules (and namespaces) whose attributes, fetched by a computed name, include commands and dynamic code.
_REACHING = frozenset(
    "os posix nt subprocess builtins sys importlib shutil socket ctypes pickle marshal runpy code pty "
    "operator functools types io pathlib globals locals vars".split()
)
#: Names a file assigns that stand for a module object even without an import statement.
_BYTES_LOADERS = frozenset({"pickle.loads", "_pickle.loads", "dill.loads", "cloudpickle.loads"})
_IMPORTED_MODULES = frozenset({"builtins", "sys.modules"})
_WRITE_METHODS = frozenset({"write_text", "write_bytes"})
_READ_METHODS = frozenset({"read_text", "read_bytes", "open"})
_SEVERE = frozenset({_RUNS, _CODE})
#: What a call at load does, by severity (a plain read of a file, such as a tokenizer's vocabulary, is low).
_AT_LOAD = {_READ: Severity.LOW}


class CodeProblem(NamedTuple):
    severity: Severity
    file: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local names bound by imports anywhere in the file, to the dotted names they stand for; names a
    star import (`from os import *`) binds, for the names the file uses; and names assigned a callable
    or a module (`run = os.system`, `m = importlib.import_module('os')`), flow-insensitively."""
    names: dict[str, str] = {"__builtins__": "builtins"}
    stars: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name == "*":
                    stars.append(node.module)
                else:
                    names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    modules = {name.partition(".")[0] for name in names.values()}
    modules |= {a.name.partition(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    if stars:
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in names}
        for name in sorted(used):
            star = next((f"{m}.{name}" for m in stars if _judge_name(f"{m}.{name}") is not None), None)
            if star is not None:
                names[name] = star
    assigned = [
        (n.targets[0].id, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
    ]
    for _ in range(2):  # twice, so that `o = os` then `f = o.system` resolves in either order
        for target, value in assigned:
            dotted = _dotted(value, names)
            if dotted is None or dotted == target:
                continue
            imported = isinstance(value, ast.Call) and _dotted(value.func, names) in _IMPORTERS
            module = imported or dotted.partition(".")[0] in modules or dotted in _IMPORTED_MODULES
            if module or _judge_name(dotted) is not None or dotted in _IMPORTERS | _GETATTRS | _OPENERS:
                names[target] = dotted
    return names


def fold(node: ast.expr) -> str | None:
    """The value of a string built from constants: `'o' + 's'`, `f'{"o"}s'`, `''.join(['o', 's'])`,
    `chr(111)`, `'so'[::-1]`, `b'os'.decode()`; None when any part is computed at run time."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bytes):
            return node.value.decode("latin-1")
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = fold(node.left), fold(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.JoinedStr):
        parts = [fold(v.value) if isinstance(v, ast.FormattedValue) else fold(v) for v in node.values]
        return None if any(p is None for p in parts) else "".join(p or "" for p in parts)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
        base, step = fold(node.value), node.slice.step
        plain = node.slice.lower is None and node.slice.upper is None
        negative = isinstance(step, ast.UnaryOp) and isinstance(step.op, ast.USub)
        one = negative and isinstance(step.operand, ast.Constant) and step.operand.value == 1  # type: ignore[union-attr]
        return base[::-1] if base is not None and plain and one else None
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id == "chr" and len(node.args) == 1:
            code = node.args[0]
            if isinstance(code, ast.Constant) and isinstance(code.value, int) and 0 <= code.value < 0x110000:
                return chr(code.value)
        if isinstance(func, ast.Attribute) and func.attr in ("decode", "lower", "strip") and not node.args:
            return fold(func.value)
        if isinstance(func, ast.Attribute) and func.attr == "join" and len(node.args) == 1:
            sep, items = fold(func.value), node.args[0]
            if sep is not None and isinstance(items, (ast.List, ast.Tuple)):
                parts = [fold(item) for item in items.elts]
                return None if any(p is None for p in parts) else sep.join(p or "" for p in parts)
    return None


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """`a.b.c` with import aliases resolved; `__import__('os').system`, `getattr(os, 'system')`,
    `sys.modules['os']`, `vars(builtins)['eval']` and names built from constants too."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            if node.attr != "__dict__":
                parts.append(node.attr)
            node = node.value
            continue
        if isinstance(node, ast.Subscript):
            key = fold(node.slice)
            if key is None:
                return None
            base = _dotted(node.value, aliases)
            if base == "sys.modules":
                parts.append(key)
                break
            if base in ("vars", "globals", "locals"):  # `globals()['os']` is the module-level name
                parts.append(aliases.get(key, key))
                break
            parts.append(key)
            node = node.value
            continue
        if isinstance(node, ast.Call) and not node.args and _dotted(node.func, aliases) in _NAMESPACES:
            return _dotted(node.func, aliases)  # `globals()`: resolved by the subscript around it
        if isinstance(node, ast.Call) and len(node.args) >= 1:
            func = _dotted(node.func, aliases)
            first, last = node.args[0], node.args[-1]
            module = fold(first)
            if func in _IMPORTERS and module is not None:
                parts.append(module)
                break
            attr = fold(last)
            if func in _GETATTRS and len(node.args) == 2 and attr is not None:
                parts.append(attr)
                node = first
                continue
            if func == "vars" and len(node.args) == 1:
                node = first
                continue
        if not isinstance(node, ast.Name):
            return None
        parts.append(aliases.get(node.id, node.id))
        break
    return ".".join(reversed(parts))


def _writes(call: ast.Call) -> bool:
    """`open(path, 'w')` and the like: a mode that writes, appends or creates (a computed mode may)."""
    modes = [kw.value for kw in call.keywords if kw.arg == "mode"] + call.args[1:2]
    return any((text := fold(m)) is None or bool(set(text) & set("wax+")) for m in modes)


def _outside(path: ast.expr, aliases: dict[str, str]) -> bool:
    """A path that names a file outside the model: absolute or home-relative constants, the home
    folder, the environment."""
    for node in ast.walk(path):
        text = fold(node) if isinstance(node, (ast.Constant, ast.BinOp, ast.JoinedStr)) else None
        if text is not None and (text.startswith(("/", "~", "\\\\")) or re.match(r"[A-Za-z]:[\\\\/]", text)):
            return True
        target = node.func if isinstance(node, ast.Call) else node
        if isinstance(target, (ast.Name, ast.Attribute)) and _dotted(target, aliases) in _OUTSIDE:
            return True
    return False


def _judge_name(name: str) -> str | None:
    """What calling a dotted name does, by the table of calls; None when it is not there."""
    for what, patterns in _CALLS:
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return what
    return None


def _judge(call: ast.Call, aliases: dict[str, str]) -> str | None:
    """What a call does that remote code must not do, or None."""
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in _WRITE_METHODS:
        return _WRITE
    if isinstance(func, ast.Attribute) and func.attr in _READ_METHODS and _outside(func.value, aliases):
        return _READ_OUTSIDE
    name = _dotted(func, aliases)
    if name is None:
        return None
    if name in _GETATTRS:
        attr = call.args[1] if len(call.args) > 1 else None
        text = fold(attr) if attr is not None else None
        if text is not None:
            return _CODE if _risky_attribute(text) else None
        # a computed name reaches code only on an object that holds such callables: `getattr(self, k)`,
        # `getattr(torch, dtype)` are ordinary model code
        owner = _dotted(call.args[0], aliases) if call.args else None
        return _CODE if owner is not None and owner.partition(".")[0] in _REACHING else None
    if name in _IMPORTERS:
        first = call.args[0] if call.args else None
        # a module name built from pieces (`'o' + 's'`) is obfuscation even when it folds to a constant
        return None if isinstance(first, ast.Constant) and isinstance(first.value, str) else _IMPORT
    if name in _ATTRIBUTE_CALLERS:
        first = call.args[0] if call.args else None
        text = fold(first) if first is not None else None
        # a computed name applies to an object not known here: only names known to reach code count
        return _CODE if text is not None and any(_risky_attribute(t) for t in text.split(".")) else None
    if name in _OPENERS:
        if _writes(call):
            return _WRITE
        path = call.args[0] if call.args else None
        if path is not None and _outside(path, aliases):
            return _READ_OUTSIDE
        return _READ
    if name in _BYTES_LOADERS:
        data = call.args[0] if call.args else None
        # `pickle.loads(pickle.dumps(state))` round-trips the code's own objects (tokenizers do it)
        return None if isinstance(data, (ast.Name, ast.Attribute, ast.Subscript)) else _LOAD
    return _judge_name(name)


def _risky_attribute(name: str) -> bool:
    """An attribute name that reaches code: the dunders of sandbox escapes, and the names of callables
    that run commands or dynamic code (`system`, `popen`, `eval`)."""
    return name in _ESCAPES or _judge_name(f"os.{name}") == _RUNS or _judge_name(name) in _SEVERE


#: Dunder attributes that only sandbox escapes walk through, wherever they are written.
_WALKS = frozenset({"__subclasses__", "__globals__", "__builtins__"})
#: Dunder attributes that lead from any object to modules, builtins or code objects.
_ESCAPES = frozenset(
    "__globals__ __builtins__ __import__ __subclasses__ __code__ __closure__ __func__ __self__ __class__ "
    "__base__ __bases__ __mro__ __dict__ __getattribute__ __reduce__ __reduce_ex__ __loader__ __spec__".split()
)


_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_SELF = frozenset({"self", "cls"})
_REFERENCES = (ast.Name, ast.Attribute)


def _calls(body: list[ast.AST]) -> Iterator[ast.expr]:
    """The callees and decorators of a body, not descending into the functions and lambdas it defines
    (their decorators and default values do run with it)."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, _FUNCTIONS):
            yield from node.decorator_list
            stack += [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Call):
            yield node.func
            # a function handed to a call at load is run by it more often than not: `atexit.register(f)`,
            # `Thread(target=f).start()`, `self.apply(self._init_weights)`
            yield from (a for a in (*node.args, *(k.value for k in node.keywords)) if isinstance(a, _REFERENCES))
        if isinstance(node, ast.ClassDef):
            yield from node.decorator_list
        stack += ast.iter_child_nodes(node)


def _run_at_load(tree: ast.Module, constructors: frozenset[str]) -> dict[int, str]:
    """The functions and methods of the file that its load-time code calls, directly or through other
    helpers (`__init__` calling `self._setup()`, module code calling `_bootstrap()`, a decorator defined
    in the file): their bodies run at load too. Keyed by node id, to the name shown in evidence."""
    functions: dict[str, list[ast.AST]] = collections.defaultdict(list)
    methods: dict[str, list[ast.AST]] = collections.defaultdict(list)
    roots: list[ast.AST] = []
    pending: list[ast.AST] = [tree]
    while pending:  # module and class bodies, where definitions are found
        scope = pending.pop()
        for node in getattr(scope, "body", []):
            if isinstance(node, _FUNCTIONS):
                (methods if isinstance(scope, ast.ClassDef) else functions)[node.name].append(node)
                if isinstance(scope, ast.ClassDef) and node.name in constructors:
                    roots += node.body
            elif isinstance(node, ast.ClassDef):
                pending.append(node)
                roots += [ast.Call(func=d, args=[], keywords=[]) for d in node.decorator_list]
            if not isinstance(node, ast.ClassDef):
                roots.append(node)
    found: dict[int, str] = {}
    queue: list[list[ast.AST]] = [roots]
    while queue:
        for callee in _calls(queue.pop()):
            targets: list[ast.AST] = []
            if isinstance(callee, ast.Name):
                targets = functions.get(callee.id, [])
            elif isinstance(callee, ast.Attribute) and isinstance(callee.value, ast.Name):
                targets = methods.get(callee.attr, []) if callee.value.id in _SELF else []
            for target in targets:
                if id(target) not in found and isinstance(target, _FUNCTIONS):
                    found[id(target)] = f"in {target.name}(), which runs at load"
                    queue.append(list(target.body))
    return found


def analyse_source(
    text: str, file: str, constructors: frozenset[str] = CONSTRUCTORS
) -> tuple[list[CodeProblem], list[str]]:
    """Problems in one file's code, and the modules it imports relatively (`from .x import y` -> 'x');
    methods named in `constructors`, and the file's own helpers they call, are judged as running at load."""
    try:
        tree = ast.parse(text, filename=file)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return [CodeProblem(Severity.MEDIUM, file, 0, f"could not be parsed ({type(exc).__name__}); not analysed")], []
    aliases = _aliases(tree)
    at_load = _run_at_load(tree, constructors)
    problems: list[CodeProblem] = []
    relative: list[str] = []
    # (node, when it runs, whether it is directly in a class body); an explicit stack bounds recursion.
    stack: list[tuple[ast.AST, str, bool]] = [(tree, "at import time", False)]
    called: set[int] = set()
    while stack:
        node, when, in_class = stack.pop()
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            relative += [node.module] if node.module else [alias.name for alias in node.names]
        if isinstance(node, _FUNCTIONS):
            outer = [*node.decorator_list, *node.args.defaults, *(d for d in node.args.kw_defaults if d)]
            stack += [(child, when, False) for child in outer]
            inner = "in a constructor" if in_class and node.name in constructors and when != "when called" else None
            inner = inner or at_load.get(id(node))
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
        if isinstance(node, ast.Attribute) and node.attr in _WALKS:
            # `().__class__.__base__.__subclasses__()`: from any object to every class, module and builtin
            severity = Severity.HIGH if when == "when called" else Severity.CRITICAL
            code = truncate(ast.get_source_segment(text, node) or ast.unparse(node), 120)
            problems.append(CodeProblem(severity, file, node.lineno, f"{code} {when} (walks to {node.attr})"))
        if isinstance(node, ast.Call):
            called.add(id(node.func))
            what = _judge(node, aliases)
            if what is not None and (when != "when called" or what in _SEVERE):
                if when == "when called":
                    severity = Severity.HIGH
                else:
                    severity = Severity.CRITICAL if what in _SEVERE else _AT_LOAD.get(what, Severity.HIGH)
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
