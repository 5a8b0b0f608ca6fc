"""Hydra, OmegaConf and NeMo: the callables `hydra.utils.instantiate` and NeMo's `from_config_dict` would
import and call, the resolvers OmegaConf interpolations would call, and the models NeMo configs name.

Read from `hydra/_internal/instantiate/_instantiate2.py` (1.3): a mapping with `_target_` is called with
its other keys (`_args_` positional; `_partial_`, `_recursive_`, `_convert_` are flags), the target is
located by `_locate`, which imports the first component and walks (importing) the rest. NeMo
(`nemo/core/classes/common.py`) also instantiates `cls`/`target` + `params` (Hydra 0.x) and imports the
top-level `target` class; `init_from_nemo_model`, `init_from_pretrained_model` and `init_from_ptl_ckpt`
(`ModelPT.maybe_init_from_pretrained_checkpoint`) load further models.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from modelshield.core.callables import judge_target
from modelshield.core.dependencies import Dependency, named
from modelshield.core.rules import Severity
from modelshield.formats.configs.yaml_rules import HYDRA_TARGET, RESOLVER, YAML_BOUNDS, Problem
from modelshield.formats.configs.yaml_tree import Mapping, Node, Scalar, YamlLimit, YamlSyntax, parse, text_of, walk

#: Hydra's instantiate keys (`_Keys` in hydra 1.3) besides `_target_`.
HYDRA_FLAGS = ("_partial_", "_args_", "_recursive_", "_convert_")
#: Resolvers that only select, decode, create or format config values, by who registers them.
PURE_RESOLVERS = {
    "oc.create": "OmegaConf",
    "oc.decode": "OmegaConf",
    "oc.deprecated": "OmegaConf",
    "oc.select": "OmegaConf",
    "oc.dict.keys": "OmegaConf",
    "oc.dict.values": "OmegaConf",
    "hydra": "Hydra",
    "now": "Hydra",
    "python_version": "Hydra",
    "multiply": "NeMo",
    "sum": "NeMo",
    "gpu_name": "NeMo",
}
#: Resolvers that parse their string argument into config nodes (which may hold `_target_`s).
CREATING_RESOLVERS = frozenset({"oc.create", "oc.decode"})
#: Strings inside strings analysed (`${oc.create:"${oc.create:...}"}`).
MAX_CREATED = 4
#: Reads the process environment (`oc.env`; `env` is OmegaConf 2.0's deprecated spelling).
ENV_RESOLVERS = frozenset({"oc.env", "env"})
#: Names programs register for resolvers that evaluate their argument as Python.
EVAL_RESOLVERS = frozenset({"eval", "exec", "python", "py", "pyeval", "calc", "expr", "lambda"})
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASS|CRED|AUTH|COOKIE|SESSION|PRIVATE", re.IGNORECASE)
#: `${name:` opens a resolver call (names are dotted identifiers in OmegaConf's grammar).
_RESOLVER_CALL = re.compile(r"\$\{\s*([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)\s*:")
#: `${path}`: a reference to another node (absolute dotted path; relative ones start with dots).
_REFERENCE = re.compile(r"\$\{\s*(\.*[A-Za-z_][\w.\[\]-]*)\s*\}")
#: NeMo keys naming models to initialise from (`init_from_*`) and restore paths.
MODEL_KEYS = {
    "init_from_nemo_model": ("NeMo init_from_nemo_model", False),
    "init_from_pretrained_model": ("NeMo init_from_pretrained_model", True),
    "init_from_ptl_ckpt": ("NeMo init_from_ptl_ckpt", False),
    "restore_from": ("restore_from", False),
    "restore_path": ("restore_path", False),
    "pretrained_path": ("pretrained_path", True),
    "pretrained_model_name": ("pretrained model", True),
}
#: Length a string interpolation may expand to before it counts as a bomb.
MAX_INTERPOLATED = 16 * 1024 * 1024
#: References followed from one value (a bomb doubles per level: two dozen levels suffice).
MAX_CHAIN = 100
#: Findings above info kept per file; framework targets are counted in one info finding.
MAX_PROBLEMS = 200
_ARITHMETIC: tuple[type[ast.AST], ...] = (
    *(ast.Expression, ast.Constant, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop, ast.Compare),
    *(ast.cmpop, ast.BoolOp, ast.boolop, ast.Tuple, ast.List, ast.Load),
)


@dataclass
class HydraAnalysis:
    """What one document instantiates, calls and needs."""

    problems: list[Problem] = field(default_factory=list)
    dependencies: list[tuple[Dependency, int]] = field(default_factory=list)
    #: framework targets (info), counted rather than reported one by one
    framework: dict[str, int] = field(default_factory=dict)
    targets: int = 0


def analyse(root: Node, depth: int = 0) -> HydraAnalysis:
    """Every `_target_`, NeMo `target`/`cls`, resolver call and model key in one document; `depth`
    counts the `oc.create`/`oc.decode` strings this document was read from."""
    result = HydraAnalysis()
    paths = _scalar_paths(root)
    for path, node in walk(root):
        if isinstance(node, Mapping):
            _mapping(result, node, path, top=not path, paths=paths)
        elif isinstance(node, Scalar) and "${" in node.value:
            _interpolations(result, node, path, depth)
    _expansion(result, root, paths)
    return result


def _mapping(result: HydraAnalysis, node: Mapping, path: tuple[str, ...], *, top: bool, paths: dict[str, str]) -> None:
    keys = set(node.keys())
    where = ".".join(path) or "(top level)"
    if "_target_" in keys:
        _target(result, node, "_target_", where, paths=paths, loader="hydra.utils.instantiate")
    for legacy in ("cls", "target"):
        if legacy in keys and "params" in keys:  # Hydra 0.x, which NeMo's from_config_dict still runs
            _target(result, node, legacy, where, paths=paths, loader="NeMo from_config_dict (Hydra 0.x cls/params)")
    if top and "target" in keys and "params" not in keys and "_target_" not in keys:
        _target(
            result, node, "target", where, paths=paths, loader="NeMo restore (import_class_by_path of the model class)"
        )
    for key, (role, hub) in MODEL_KEYS.items():
        value = node.get(key)
        if value is not None:
            _model_reference(result, value, role, hub)


def _target(result: HydraAnalysis, node: Mapping, key: str, where: str, *, paths: dict[str, str], loader: str) -> None:
    value = node.get(key)
    text = text_of(value)
    assert value is not None
    result.targets += 1
    if text is None or not text.strip():
        return  # Hydra and NeMo reject a target that is not a string
    resolved = _resolve(text, paths)
    flags = [f"{flag}={text_of(node.get(flag))}" for flag in HYDRA_FLAGS if isinstance(node.get(flag), Scalar)]
    shown = f"{where}.{key}: {text}" + (f" (= {resolved})" if resolved != text else "")
    if resolved is None:
        _add(result, Problem(HYDRA_TARGET, Severity.MEDIUM, f"{shown}: target computed at load time", value.line))
        return
    verdict = judge_target(resolved, bare_is_builtin=False)
    if verdict.severity is Severity.INFO:
        result.framework[resolved] = result.framework.get(resolved, 0) + 1
        return
    extra = f" [{', '.join(flags)}]" if flags else ""
    evidence = f"{shown}{extra}: {loader} imports and calls it; {verdict.reason}"
    _add(result, Problem(HYDRA_TARGET, verdict.severity, evidence, value.line, {"target": resolved}))


def interpolates(text: str) -> bool:
    """Whether a string holds an OmegaConf interpolation (`${a.b}` or `${resolver:...}`), not shell or
    CI syntax such as `${{ github.sha }}`."""
    return "${" in text and (_RESOLVER_CALL.search(text) is not None or _REFERENCE.search(text) is not None)


def _resolve(text: str, paths: dict[str, str]) -> str | None:
    """The target after replacing `${a.b}` references with the scalars they name; None when it calls
    a resolver or names no scalar (known only at load time)."""
    if "${" not in text:
        return text.strip()
    if _RESOLVER_CALL.search(text):
        return None
    out = text
    for _ in range(8):  # references to references, a few levels
        found = _REFERENCE.search(out)
        if found is None:
            break
        value = paths.get(found[1].lstrip("."))
        if value is None:
            return None
        out = out[: found.start()] + value + out[found.end() :]
    return None if "${" in out else out.strip()


def _interpolations(result: HydraAnalysis, node: Scalar, path: tuple[str, ...], depth: int) -> None:
    where = ".".join(path) or "(top level)"
    for match in _RESOLVER_CALL.finditer(node.value):
        name = match[1]
        argument = _argument(node.value, match.end())
        if name in CREATING_RESOLVERS:
            _created(result, argument, f"{where} ${{{name}:...}}", node.line, depth)
            continue
        if name in PURE_RESOLVERS:
            continue
        if name in ENV_RESOLVERS:
            variable = argument.split(",", 1)[0].strip().strip("'\"")
            if _SECRET.search(variable):
                evidence = (
                    f"{where}: ${{{name}:{variable}}} reads a secret-looking environment variable into the config"
                )
                _add(result, Problem(RESOLVER, Severity.MEDIUM, evidence, node.line, {"resolver": name}))
            continue
        if name in EVAL_RESOLVERS:
            severity, what = _eval_argument(argument)
            evidence = f"{where}: ${{{name}:{argument[:120]}}}: an eval-like resolver {what}"
            _add(result, Problem(RESOLVER, severity, evidence, node.line, {"resolver": name}))
            continue
        evidence = f"{where}: ${{{name}:...}} calls a resolver the loading program registered (unknown here)"
        _add(result, Problem(RESOLVER, Severity.MEDIUM, evidence, node.line, {"resolver": name}))


def _created(result: HydraAnalysis, argument: str, where: str, line: int, depth: int) -> None:
    """`oc.create` and `oc.decode` parse their string argument into config (YAML for `oc.create`),
    whose `_target_`s Hydra then instantiates: the string is analysed as a document of its own."""
    text = argument.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].replace("\\" + text[0], text[0])
    if depth >= MAX_CREATED or ("_target_" not in text and "${" not in text and "target" not in text):
        return
    try:
        stream = parse(text.encode("utf-8"))
    except (YamlLimit, YamlSyntax):
        return
    for doc in stream.documents:
        inner = analyse(doc, depth + 1)
        for problem in inner.problems:
            _add(result, problem._replace(evidence=f"{where} creates {problem.evidence}", line=line))
        for name, count in inner.framework.items():
            result.framework[name] = result.framework.get(name, 0) + count
        result.dependencies += [(dependency, line) for dependency, _ in inner.dependencies]


def _argument(text: str, start: int) -> str:
    """The text of a resolver's arguments, up to its closing brace: braces inside quoted strings and
    nested interpolations are skipped, as OmegaConf's grammar reads them."""
    depth, quote, i = 1, "", start
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return text[start:]


def _eval_argument(argument: str) -> tuple[Severity, str]:
    """Critical unless the argument is plain arithmetic on constants and interpolations."""
    expression = re.sub(r"\$\{[^}]*\}", "1", argument).strip().strip("'\"")
    try:
        tree = ast.parse(expression, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return Severity.CRITICAL, "runs its argument as Python (not readable as arithmetic)"
    if all(isinstance(n, _ARITHMETIC) for n in ast.walk(tree)):
        return Severity.HIGH, "runs its argument as Python (here arithmetic; any other text runs too)"
    return Severity.CRITICAL, "runs its argument as Python code"


def _model_reference(result: HydraAnalysis, value: Node, role: str, hub: bool) -> None:
    """A model named by a NeMo key: a string, or a mapping of sub-models with `path`/`name` entries."""
    text = text_of(value)
    if text is not None:
        if text.strip() and text not in ("???", "null", "None", "~") and "${" not in text:
            dependency = named(text, role, hub=hub)
            if dependency is not None:
                result.dependencies.append((dependency, value.line))
        return
    if isinstance(value, Mapping):
        for _, sub in value.pairs[:64]:
            if isinstance(sub, Mapping):
                for key in ("path", "name"):
                    entry = sub.get(key)
                    if entry is not None:
                        _model_reference(result, entry, role, hub or key == "name")


def _scalar_paths(root: Node) -> dict[str, str]:
    """`a.b.c` -> text for every scalar reachable by mapping keys (what `${a.b.c}` resolves to)."""
    out: dict[str, str] = {}
    for path, node in walk(root):
        if isinstance(node, Scalar) and path and all(not p.startswith("[") for p in path):
            out.setdefault(".".join(path), node.value)
    return out


def _expansion(result: HydraAnalysis, root: Node, paths: dict[str, str]) -> None:
    """String interpolations that reference each other expand like an alias bomb (`b: ${a}${a}`,
    `c: ${b}${b}`...): OmegaConf does not cache them, so the expanded length is computed here, with a
    memo, and a value longer than the bound is a fail-closed finding."""
    lengths: dict[str, int] = {}
    active: set[str] = set()

    def length(key: str, depth: int) -> int:
        if key in lengths:
            return lengths[key]
        if key in active or depth > MAX_CHAIN:  # a cycle (OmegaConf raises on it), or a long plain chain
            return 0
        text = paths.get(key)
        if text is None:
            return 0
        active.add(key)
        total = len(_REFERENCE.sub("", text))
        for ref in _REFERENCE.findall(text):
            total = min(total + length(ref.lstrip("."), depth + 1), MAX_INTERPOLATED + 1)
        active.discard(key)
        lengths[key] = total
        return total

    for key, text in paths.items():
        if "${" in text and length(key, 0) > MAX_INTERPOLATED:
            evidence = (
                f"{key}: interpolations expand to more than {MAX_INTERPOLATED} characters (an interpolation bomb)"
            )
            _add(result, Problem(YAML_BOUNDS, Severity.HIGH, evidence, 0, {"limit": "max_interpolated"}))
            return


def _add(result: HydraAnalysis, problem: Problem) -> None:
    if len(result.problems) < MAX_PROBLEMS:
        result.problems.append(problem)
