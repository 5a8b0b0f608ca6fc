"""skops archives (`skops.io.dump`): a zip whose `schema.json` is a tree of nodes naming what to import.

`skops.io.load(file, trusted=[...])` builds one loader object per node (`__loader__`), audits the tree
against skops' default trusted types plus the user's `trusted` list, then constructs it: each node type
does its own thing with the node's `__module__`.`__class__` (read in skops 0.16's `io/_general.py`,
`_sklearn.py`, `_numpy.py`, `_scipy.py`, `old/`). An `ObjectNode` creates the class with `__new__` and
calls its `__setstate__`; `ConstructorFromReduceNode` and `LossNode` call it with stored arguments;
`ListNode`/`SetNode` call it with the items and `DictNode` with nothing, while the dict's `key_types`
(usually `TypeNode builtins.str`) are called with each key string; `FunctionNode` and `TypeNode`
import the object and hand it to the estimator; `MethodNode` does `getattr(obj, func)`;
`OperatorFuncNode` calls `getattr(operator, name)(*attrs)`; `NdArrayNode` calls a non-ndarray class
with the array; `RandomGeneratorNode` calls `numpy.random.<name>` named inside its state. Users get past
the audit by passing `trusted=get_untrusted_types(file=...)`, which is exactly what an attacker needs,
so every name is judged by what it does (`core/callables.judge`), not by whether skops would ask.
Array members are `.npy` files loaded with `allow_pickle=False`; the zip walker scans them as members.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelshield.core import callables
from modelshield.core.findings import Finding, truncate
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.source import Source
from modelshield.formats._archive import read_member, zip_names

CALLS_CODE = Rule(
    id="SKP001",
    title="skops schema makes the loader import and call a dangerous callable",
    severity=Severity.CRITICAL,
    category=Category.LOAD_TIME_CODE,
    overview="A node of a skops archive's `schema.json` names a callable that runs code or commands, reaches "
    "arbitrary attributes or imports, touches files or the network, or loads another model. `skops.io.load` "
    "imports every `__module__`.`__class__` its nodes name and, depending on the node type, calls it "
    "(`ConstructorFromReduceNode`, `LossNode`, `ListNode`, a dict's `key_types` called with each key, "
    "`OperatorFuncNode`), creates it and calls its `__setstate__` (`ObjectNode`), or hands it to the "
    "estimator, which calls it at fit or predict time (`FunctionNode`, `TypeNode`, `MethodNode`).",
    attack="skops refuses types outside its defaults unless they are passed in `trusted=`; its documentation "
    "tells users to review `get_untrusted_types()` and pass it, and many pass it unread. The attacker names "
    "`builtins.eval` as the key type of a dict whose key is Python source, or `os.system` as a "
    "`FunctionTransformer`'s function: once trusted, loading (or the first predict) runs the payload.",
    impact="Arbitrary code execution in the process that loads or uses the model.",
    remediation="Do not pass this file's untrusted types to `trusted=`. Load only archives whose "
    "`get_untrusted_types()` is empty or lists classes you know, or re-create the model from source.",
    example='`{"__loader__": "TypeNode", "__module__": "builtins", "__class__": "eval"}` as a DictNode\'s '
    "key type, with the key `__import__('os').system('id')`.",
)
NEEDS_TRUST = Rule(
    id="SKP002",
    title="skops schema names a type skops does not trust by default",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="A node names a class or function outside skops' default trusted types (scikit-learn "
    "estimators, numpy and scipy ufuncs and dtypes, builtin containers) that the scanner's catalogue does "
    "not know to be data: `skops.io.load` refuses it unless the user lists it in `trusted=`, and then "
    "imports it (running its module's code) and calls or restores it.",
    attack="An archive that needs `trusted=` trains users to pass `get_untrusted_types()` blindly; a class "
    "of an attacker-controlled or obscure package whose constructor or `__setstate__` acts is enough.",
    impact="Whatever the named class does when imported, created or restored; unknown to the scanner.",
    remediation="Check each named type before trusting it, and trust it by name in the call, never the "
    "whole output of `get_untrusted_types()`; low when the type belongs to a known library.",
    example='`{"__loader__": "ObjectNode", "__module__": "mypkg.model", "__class__": "Wrapper"}`',
)
NOT_ANALYSED = Rule(
    id="SKP003",
    title="skops schema not fully analysed",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="The archive's `schema.json` could not be read or parsed, is larger or deeper than the bounds, "
    "has more nodes than the bound, or uses a node type (`__loader__`) that the scanner does not model, so "
    "some of what skops would import was not judged.",
    attack="An attacker pads or nests the schema past the analysis bounds, or uses a node type a newer "
    "skops adds, so that the node that names the payload is never looked at.",
    impact="Unknown: part of the schema was not judged.",
    remediation="Inspect the schema with `skops.io.get_untrusted_types` and by hand before loading it.",
)
RULES = (CALLS_CODE, NEEDS_TRUST, NOT_ANALYSED)

#: Bytes of `schema.json` parsed (real schemas are kilobytes; arrays are separate members) and nodes judged.
MAX_SCHEMA = 64 * 1024 * 1024
MAX_NODES = 200_000
#: Nesting of JSON values walked below the root (json.loads itself stops far deeper nesting).
MAX_DEPTH = 400

#: What skops does with a node's `__module__`.`__class__`, by node type (loaders that ignore the name, or
#: call a fixed one, are in `_FIXED`).
USES = {
    "ObjectNode": "creates it with cls.__new__ and restores it with __setstate__",
    "ConstructorFromReduceNode": "calls it with the stored arguments",
    "LossNode": "calls it with the stored arguments, then its __setstate__",
    "DictNode": "calls it with no arguments to build the mapping",
    "ListNode": "calls it with the list of items",
    "SetNode": "calls it with the list of items",
    "TupleNode": "imports it and calls it with the items when it is a namedtuple",
    "FunctionNode": "imports it and hands it to the estimator, which calls it",
    "TypeNode": "imports it; as a dict key type it is called with each key, elsewhere the estimator may call it",
    "NdArrayNode": "calls it with the array",
    "RandomStateNode": "calls it with no arguments, then its set_state",
    "RandomGeneratorNode": "calls it with the bit generator",
}
#: Node types that call a fixed callable or none (Tree, QuantileForest, functools.partial, json.loads...).
_FIXED = frozenset(
    """TreeNode QuantileForestNode PartialNode DefaultDictNode SliceNode JsonNode BytesNode BytearrayNode
    DTypeNode SparseMatrixNode MaskedArrayNode CachedNode MethodNode OperatorFuncNode
    _DictWithDeprecatedKeysNode""".split()
)
#: numpy.random bit generators that `RandomGeneratorNode` may call (skops' own default).
BIT_GENERATORS = frozenset({"MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"})


#: A node's place in the schema: (parent, key), rendered as `$.content.0` only for reported nodes.
Path = tuple[Any, str] | None


def render(path: Path) -> str:
    parts: list[str] = []
    while path is not None:
        path, key = path
        parts.append(key)
    return ".".join(["$", *reversed(parts)])


@dataclass
class Named:
    """One callable a schema names, with how skops uses it and where it first appears."""

    module: str
    qualname: str
    use: str
    path: str
    count: int = 1


@dataclass
class Schema:
    """What walking a schema found: the callables it names, and what could not be judged."""

    names: dict[tuple[str, str, str], Named] = field(default_factory=dict)
    states: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    nodes: int = 0

    def add(self, module: Any, qualname: Any, use: str, path: Path) -> None:
        if not isinstance(module, str) or not isinstance(qualname, str):
            self.problems.append(f"{render(path)}: module or class is not a string")
            return
        key = (module, qualname, use)
        if key in self.names:
            self.names[key].count += 1
        else:
            self.names[key] = Named(module, qualname, use, render(path))


def _json_value(node: Any) -> tuple[bool, Any]:
    """The constant a JsonNode holds, if `node` is one."""
    if isinstance(node, dict) and node.get("__loader__") == "JsonNode" and isinstance(node.get("content"), str):
        try:
            return True, json.loads(node["content"])
        except (ValueError, RecursionError):
            return False, None
    return False, None


def _state(content: Any) -> dict[str, Any]:
    """The constant values of an ObjectNode's DictNode state (what `__setstate__` receives)."""
    if not (isinstance(content, dict) and content.get("__loader__") == "DictNode"):
        return {}
    items = content.get("content")
    found: dict[str, Any] = {}
    if isinstance(items, dict):
        for key, value in list(items.items())[:1000]:
            ok, constant = _json_value(value)
            if ok:
                found[str(key)] = constant
    return found


def _judge_node(node: dict[str, Any], path: Path, protocol: Any, schema: Schema) -> None:
    loader = node["__loader__"]
    module, qualname = node.get("__module__"), node.get("__class__")
    if loader in USES:
        if loader == "FunctionNode" and protocol == 0 and isinstance(node.get("content"), dict):
            # protocol 0 imports content.module_path.function, not __module__.__class__ (skops old/_general_v0)
            content = node["content"]
            module, qualname = content.get("module_path"), content.get("function")
        if loader == "NdArrayNode" and (node.get("type") != "numpy" or f"{module}.{qualname}" == "numpy.ndarray"):
            return  # a json-typed array is built as an object ndarray; a plain ndarray is np.load's result
        schema.add(module, qualname, USES[loader], path)
        stateful = f"{module}.{qualname}" in callables.SIDE_EFFECTS or f"{module}.{qualname}" == callables.PLURAL_RULE
        if loader == "ObjectNode" and isinstance(module, str) and isinstance(qualname, str) and stateful:
            state = _state(node.get("content"))
            if state:
                schema.states.setdefault((module, qualname), state)
        if loader == "RandomGeneratorNode":
            name = _bit_generator(node)
            if name not in BIT_GENERATORS:
                schema.add("numpy.random", name, "calls it with a SeedSequence (bit generator name in the state)", path)
    elif loader == "MethodNode":
        content = node.get("content")
        owner = content.get("obj") if isinstance(content, dict) else None
        func = content.get("func") if isinstance(content, dict) else None
        if isinstance(owner, dict) and isinstance(func, str):
            use = f"getattr(obj, {func!r}) on the restored object: a bound method the estimator calls"
            schema.add(owner.get("__module__"), f"{owner.get('__class__')}.{func}", use, path)
        else:
            schema.problems.append(f"{render(path)}: MethodNode without an object and a method name")
    elif loader == "OperatorFuncNode":
        schema.add("operator", qualname, "calls getattr(operator, name)(*attrs)", path)
    elif loader not in _FIXED:
        schema.problems.append(f"{render(path)}: unknown node type {truncate(str(loader), 60)!r} (skops refuses it)")


def _bit_generator(node: dict[str, Any]) -> Any:
    """The bit generator class name that `RandomGeneratorNode` reads from its state and calls."""
    try:
        return _json_value(node["content"]["bit_generator"]["content"]["bit_generator"])[1]
    except (KeyError, TypeError):
        return None


def walk(doc: Any) -> Schema:
    """Every node of the schema, depth-first with an explicit stack (bounded in nodes and depth)."""
    schema = Schema()
    protocol = doc.get("protocol") if isinstance(doc, dict) else None
    stack: list[tuple[Any, Path, int]] = [(doc, None, 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            schema.problems.append(f"{render(path)}: nested deeper than {MAX_DEPTH}")
            continue
        if isinstance(value, dict):
            if isinstance(value.get("__loader__"), str):
                schema.nodes += 1
                if schema.nodes > MAX_NODES:
                    schema.problems.append(f"more than {MAX_NODES} nodes; the rest were not judged")
                    break
                _judge_node(value, path, protocol, schema)
            stack.extend((v, (path, k), depth + 1) for k, v in value.items() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend((v, (path, str(i)), depth + 1) for i, v in enumerate(value) if isinstance(v, (dict, list)))
    return schema


def _verdict(named: Named, schema: Schema) -> callables.Verdict:
    verdict = callables.judge(named.module, named.qualname)
    state = schema.states.get((named.module, named.qualname))
    if state:
        verdict = callables.judge_state(named.module, named.qualname, state) or verdict
    return verdict


class SkopsHandler(Handler):
    name = "skops"
    label = "skops archive"
    extensions = frozenset({".skops"})
    rules = RULES
    companion = True

    def detect(self, source: Source) -> bool:
        names = zip_names(source)
        return names is not None and "schema.json" in names

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        with zipfile.ZipFile(source.stream()) as archive:
            data, why = read_member(archive, archive.getinfo("schema.json"), MAX_SCHEMA)
        if data is None:
            yield ctx.finding(NOT_ANALYSED, f"schema.json {why}", member="schema.json")
            return
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            yield ctx.finding(NOT_ANALYSED, f"schema.json is not JSON ({type(exc).__name__})", member="schema.json")
            return
        schema = walk(doc)
        for named in schema.names.values():
            yield from self._judge(named, schema, ctx)
        for problem in schema.problems[:10]:
            yield ctx.finding(NOT_ANALYSED, problem, member="schema.json")

    @staticmethod
    def _judge(named: Named, schema: Schema, ctx: Context) -> Iterator[Finding]:
        verdict = _verdict(named, schema)
        if verdict.trusted or callables.is_ufunc(named.module, named.qualname):
            return
        times = f" ({named.count} nodes)" if named.count > 1 else ""
        evidence = (
            f"{named.module}.{named.qualname} at {named.path}{times}: skops {named.use}; "
            f"it {verdict.kind.value} ({verdict.reason})"
        )
        rule = CALLS_CODE if verdict.severity >= Severity.HIGH else NEEDS_TRUST
        yield ctx.finding(
            rule,
            evidence,
            severity=verdict.severity,
            member="schema.json",
            callable=f"{named.module}.{named.qualname}",
            kind=verdict.kind.name.lower(),
        )
