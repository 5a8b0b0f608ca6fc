"""Static analysis of remote code (the `.py` files a config's `auto_map` names) with Python's `ast`.

The code is parsed, never imported. What runs at import time (module level, class bodies, decorators,
default values) and in constructors runs as soon as the model loads; process execution, dynamic code,
network access, file writes and dynamic imports there are what a payload needs.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from modelshield.core.findings import Finding, Location, truncate
from modelshield.core.rules import Severity
from modelshield.deps.rules import REMOTE_CODE

#: A module name as `auto_map` gives it (`modeling_x`, or dotted for a file in a subfolder).
MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
#: Bounds: real modelling files are tens of kilobytes, with a handful of relative imports.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_FILES = 32
MAX_PROBLEMS = 20
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
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _writes(call: ast.Call) -> bool:
    """`open(path, 'w')` and the like: a constant mode that writes, appends or creates."""
    modes = [kw.value for kw in call.keywords if kw.arg == "mode"] + call.args[1:2]
    return any(isinstance(m, ast.Constant) and isinstance(m.value, str) and set(m.value) & set("wax+") for m in modes)


def _judge(call: ast.Call, aliases: dict[str, str]) -> str | None:
    """What a call does that remote code must not do, or None."""
    name = _dotted(call.func, aliases)
    if name is None:
        return None
    if name in _IMPORTERS:
        first = call.args[0] if call.args else None
        return None if isinstance(first, ast.Constant) else _IMPORT
    if name in ("open", "builtins.open", "io.open"):
        return _WRITE if _writes(call) else None
    if isinstance(call.func, ast.Attribute) and call.func.attr in _WRITE_METHODS:
        return _WRITE
    for what, patterns in _CALLS:
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return what
    return None


def analyse_source(text: str, file: str) -> tuple[list[CodeProblem], list[str]]:
    """Problems in one file's code, and the modules it imports relatively (`from .x import y` -> 'x')."""
    try:
        tree = ast.parse(text, filename=file)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return [CodeProblem(Severity.MEDIUM, file, 0, f"could not be parsed ({type(exc).__name__}); not analysed")], []
    aliases = _aliases(tree)
    problems: list[CodeProblem] = []
    relative: list[str] = []
    # (node, when it runs, whether it is directly in a class body); an explicit stack bounds recursion.
    stack: list[tuple[ast.AST, str, bool]] = [(tree, "at import time", False)]
    while stack:
        node, when, in_class = stack.pop()
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            relative += [node.module] if node.module else [alias.name for alias in node.names]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            outer = [*node.decorator_list, *node.args.defaults, *(d for d in node.args.kw_defaults if d)]
            stack += [(child, when, False) for child in outer]
            inner = "in a constructor" if in_class and node.name in CONSTRUCTORS and when != "when called" else None
            stack += [(child, inner or "when called", False) for child in node.body]
            continue
        if isinstance(node, ast.Lambda):
            stack.append((node.body, "when called", False))
            continue
        if isinstance(node, ast.Call):
            what = _judge(node, aliases)
            if what is not None and (when != "when called" or what in _SEVERE):
                severity = Severity.CRITICAL if what in _SEVERE and when != "when called" else Severity.HIGH
                code = truncate(ast.get_source_segment(text, node) or ast.unparse(node), 120)
                problems.append(CodeProblem(severity, file, node.lineno, f"{code} {when} ({what})"))
        is_class = isinstance(node, ast.ClassDef)
        stack += [(child, when, is_class) for child in ast.iter_child_nodes(node)]
    problems.sort(key=lambda p: (-p.severity, p.line))
    return problems, relative


def _module_file(folder: str, module: str) -> str | None:
    """The file of a module relative to `folder`, if the name is a plain module name and it exists."""
    if not MODULE_NAME.match(module):
        return None
    path = os.path.join(folder, *module.split(".")) + ".py"
    return path if os.path.isfile(path) else None


def analyse_modules(folder: str, modules: Iterable[str]) -> tuple[list[CodeProblem], list[str]]:
    """Problems in the named modules of `folder` and the modules they import relatively (as
    transformers fetches them too), and the files analysed (relative to `folder`); bounded."""
    queue = list(dict.fromkeys(modules))
    seen: set[str] = set()
    problems: list[CodeProblem] = []
    analysed: list[str] = []
    while queue and len(analysed) < MAX_FILES:
        module = queue.pop(0)
        path = _module_file(folder, module)
        if module in seen or path is None:
            continue
        seen.add(module)
        name = os.path.relpath(path, folder)
        analysed.append(name)
        if os.path.getsize(path) > MAX_FILE_BYTES:
            problems.append(CodeProblem(Severity.MEDIUM, name, 0, f"larger than {MAX_FILE_BYTES} bytes; not analysed"))
            continue
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8", "replace")
        found, relative = analyse_source(text, name)
        problems += found
        package = module.rpartition(".")[0]
        queue += [f"{package}.{r}" if package else r for r in relative]
    problems.sort(key=lambda p: (-p.severity, p.file, p.line))
    return problems[:MAX_PROBLEMS], analysed


def code_finding(location: Location, what: str, problems: list[CodeProblem], **details: object) -> Finding:
    """The DEP001 finding: medium for needing remote code, raised to the worst problem in the code."""
    severity = max([Severity.MEDIUM, *(p.severity for p in problems)])
    shown = "; ".join(str(p) for p in problems[:3])
    evidence = what + (f"; {shown}" if shown else "")
    return Finding(REMOTE_CODE, location, evidence, severity, {**details, "problems": [str(p) for p in problems]})


def module_names(references: Iterable[str]) -> Iterator[str]:
    """Module names of `module.Class` references (the class is the last component)."""
    for reference in references:
        module = reference.rpartition(".")[0]
        if module:
            yield module
