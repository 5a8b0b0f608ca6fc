"""Jinja's parser, kept apart so that it is imported only when there is a template to analyse.

Jinja costs more start-up time than any analyser, and most scans meet no template. This module
reduces a template's syntax tree to the facts the template rules judge (`templates.py` judges them);
the template is parsed, never rendered.

Values are followed the way rendering would produce them, without rendering: every expression gets an
abstract value (the constants it can be, and whether it can also be something else: request data or
an object reachable from the globals, an integer, a key of a known container, a string built at render
time). Names are bound flow-insensitively (every `{% set %}`, `for` target, macro parameter from every
call site, `namespace()` attribute, `{% set %}` block and `caller()` body adds its values) and solved to
a bounded fixpoint, so a name built in pieces over a loop or passed through a macro is the same name as
one written out. A subscript or `|attr` whose key is such a name is then judged by the names it can be.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import product
from string import Formatter
from typing import NamedTuple

from jinja2 import TemplateError, nodes
from jinja2.ext import Extension, do, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment

#: Filters whose argument (or `attribute=` keyword) names an attribute to fetch.
ATTRIBUTE_FILTERS = frozenset(
    {"attr", "map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique", "min", "max"}
)
#: Those of them whose first positional argument is the attribute name.
POSITIONAL_ATTRIBUTE_FILTERS = frozenset({"attr", "selectattr", "rejectattr", "groupby"})
#: Constants one value may be before it counts as "anything" (an unbounded set of names).
MAX_CHOICES = 64
#: Longest string the folder builds: names are short, and `'a' * 10**9` must not be built.
MAX_FOLDED = 1_000
#: Rounds of the name fixpoint; a name still growing after them can be anything.
MAX_ROUNDS = 8
#: Constant operations the folder performs per template, so that cartesian products of choices stay bounded
#: (the 70 real templates of tests/fixtures/real/chat_templates need at most 46,000).
MAX_FOLD_WORK = 400_000
#: Jinja's sandbox refuses `range()` longer than this (`jinja2.sandbox.MAX_RANGE`); other renderers do not.
SANDBOX_MAX_RANGE = 100_000
#: Attributes of a `for` loop's `loop` object that are integers.
_LOOP_INTEGERS = frozenset({"index", "index0", "revindex", "revindex0", "length", "depth", "depth0"})
#: Names every renderer passes (transformers' `apply_chat_template`, llama.cpp): request data even where
#: the template also sets them (`{% set messages = messages[1:] %}` still reads the caller's first).
_CONTEXT_NAMES = frozenset(
    {"messages", "tools", "documents", "add_generation_prompt", "bos_token", "eos_token", "pad_token", "unk_token"}
)


class InvalidTemplate(ValueError):
    """The text is not valid Jinja."""


class Fact(NamedTuple):
    """One thing the template does, in the order the syntax tree is walked.

    kind: `attribute` (fetched, by `.`, a subscript or a filter), `computed-attribute` (value: the
    construct fetching a name built at render time), `computed-key` (value: the construct, detail: the
    container: a plain variable key on an object reachable from the globals), `string` (a constant or
    folded string), `load` (value: include/import/fromimport/extends, detail: the target), `name` (a free
    name read), `assign` (a name set), `global` (a name read before the template shadows it), `cost`
    (value: what makes rendering expensive), `truncated` (the walk or the folding stopped).
    """

    kind: str
    value: str
    line: int
    detail: str = ""


class _GenerationTag(Extension):
    """`{% generation %}...{% endgeneration %}`: Hugging Face's marker of assistant text in templates
    trained with assistant masks; parsed for its body so real templates that use it are analysed."""

    tags = {"generation"}  # noqa: RUF012 - Jinja's Extension API declares this as a class attribute

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


#: Parses only; the environment's rendering is never used. Extensions mirror what transformers enables.
_ENV = SandboxedEnvironment(extensions=[loopcontrols, do, _GenerationTag])


def _const_string(node: nodes.Node | None) -> str | None:
    return node.value if isinstance(node, nodes.Const) and isinstance(node.value, str) else None


# -- abstract values ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CDict:
    """A constant dict (a literal, `dict(...)`), hashable so it can be one of a value's choices."""

    pairs: tuple[tuple[object, object], ...]

    def get(self, key: object) -> tuple[bool, object]:
        for k, v in self.pairs:
            if k == key:
                return True, v
        return False, None


@dataclass(frozen=True)
class Val:
    """What an expression can evaluate to.

    consts: the constants it can be. open: it can also be something not among them, described by the
    flags: built (a string built at render time from unknown parts), exposed (request data, or an object
    reachable from the globals or from a computed access), integer (the open part is only integers),
    keyof (the open part is only keys of the containers with these identities; None: unconstrained),
    namespace (it can be a `namespace()` object).
    """

    consts: frozenset[object] = frozenset()
    open: bool = False
    built: bool = False
    exposed: bool = False
    integer: bool = False
    keyof: frozenset[str] | None = None
    namespace: bool = False

    def __or__(self, other: Val) -> Val:
        consts = self.consts | other.consts
        opened = self.open or other.open
        keyof: frozenset[str] | None = None
        if opened and all(v.keyof is not None for v in (self, other) if v.open):
            keyof = frozenset().union(*(v.keyof or frozenset() for v in (self, other) if v.open))
        built = self.built or other.built
        integer = opened and all(v.integer for v in (self, other) if v.open)
        if integer:  # an unknown integer subsumes the integer constants (counters converge)
            consts = frozenset(c for c in consts if isinstance(c, bool) or not isinstance(c, (int, float)))
        if len(consts) > MAX_CHOICES:
            consts, opened, built, keyof = frozenset(), True, True, None
        return Val(
            consts,
            opened,
            built,
            self.exposed or other.exposed,
            integer,
            keyof,
            self.namespace or other.namespace,
        )

    @property
    def strings(self) -> list[str]:
        return [c for c in self.consts if isinstance(c, str)]


BOTTOM = Val()
EXPOSED = Val(open=True, exposed=True)
INTEGER = Val(open=True, integer=True)
BUILT = Val(open=True, built=True)
BOOLEAN = Val(frozenset({True, False}))
UNKNOWN = Val(open=True, built=True, exposed=True)


def _const(value: object) -> Val:
    return Val(frozenset({value}))


def _union(values: Iterable[Val]) -> Val:
    result = BOTTOM
    for value in values:
        result = result | value
    return result


def _size(value: object) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, tuple):
        return sum(_size(v) for v in value) + len(value)
    if isinstance(value, CDict):
        return sum(_size(k) + _size(v) for k, v in value.pairs)
    return 1


def _text(value: object) -> str | None:
    """`str(value)` as Jinja's `~` and `string` give it, for the constants the folder keeps."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return "None"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _identity(node: nodes.Node) -> str | None:
    """A container expression's identity, for `for k in C` ... `C[k]` (a name or a dotted path)."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        inner = _identity(node.node)
        return None if inner is None else f"{inner}.{node.attr}"
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        inner = _identity(node.node)
        return None if inner is None else f"{inner}[{node.arg.value!r}]"
    return None


def _container(node: nodes.Node) -> nodes.Node:
    """The container whose keys an iterable yields: `C`, `C|dictsort`, `C|items`, `C.items()`, `C.keys()`."""
    if isinstance(node, nodes.Filter) and node.name in ("dictsort", "items", "list", "sort") and node.node is not None:
        return _container(node.node)
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and node.node.attr in ("items", "keys"):
        return _container(node.node.node)
    return node


def _mapping_keys(node: nodes.Node) -> str | None:
    """The identity of the mapping whose keys the iterable yields, when only a mapping can be iterated
    so (`C|dictsort`, `C|items`, `C.items()`, `C.keys()`). `for k in C` alone proves nothing: a list's
    elements are no keys of it, and `C[k]` then falls back to `getattr(C, k)`."""
    inner = _container(node)
    return None if inner is node else _identity(inner)


def _conjuncts(test: nodes.Node) -> Iterator[nodes.Node]:
    """The parts of a test that all hold where it is true (`a and b`); `or`, `not` prove nothing."""
    if isinstance(test, nodes.And):
        yield from _conjuncts(test.left)
        yield from _conjuncts(test.right)
    else:
        yield test


class _Budget(Exception):
    """The folder used its work budget: the template is reported as not fully analysed."""


#: Python `str` methods the folder applies to constants (all return strings, lists or booleans).
_STR_METHODS = frozenset(
    """upper lower title capitalize swapcase casefold strip lstrip rstrip replace split rsplit join startswith
    endswith removeprefix removesuffix format""".split()
)


class Folder:
    """Abstract values of every expression of one template (see the module docstring)."""

    def __init__(self, tree: nodes.Template) -> None:
        self.tree = tree
        self.work = 0
        self.env: dict[str, Val] = {}
        self.memo: dict[int, Val] = {}
        self.env_outputs: dict[str, Val] = {}
        self._index(tree)
        self.macros = {m.name: m for m in self.by_type.get(nodes.Macro, []) if isinstance(m, nodes.Macro)}
        self.caller_bodies = [c.body for c in self.by_type.get(nodes.CallBlock, []) if isinstance(c, nodes.CallBlock)]
        self.bound = {
            n.name
            for n in self.by_type.get(nodes.Name, [])
            if isinstance(n, nodes.Name) and n.ctx in ("store", "param")
        } | set(self.macros)
        # Names that may come from the caller even though the template sets them: tested with `is
        # defined`, set from themselves, or passed by every renderer.
        self.defined = {
            t.node.name
            for t in self.by_type.get(nodes.Test, [])
            if isinstance(t, nodes.Test) and t.name in ("defined", "undefined") and isinstance(t.node, nodes.Name)
        }
        for assign in self.by_type.get(nodes.Assign, []):
            target = assign.target if isinstance(assign, nodes.Assign) else None
            if isinstance(target, nodes.Name) and isinstance(assign, nodes.Assign) and _reads(assign.node, target.name):
                self.defined.add(target.name)
        self.defined |= _CONTEXT_NAMES
        self.truncated = False
        try:
            self._solve()
        except _Budget:
            self.truncated = True

    def _index(self, tree: nodes.Template) -> None:
        """One walk of the tree: nodes by type, calls by callee name, `loop()` calls by recursive loop."""
        self.by_type: dict[type, list[nodes.Node]] = {}
        self.calls: dict[str, list[nodes.Call]] = {}
        self.loop_calls: dict[int, list[nodes.Call]] = {}
        stack: list[tuple[nodes.Node, nodes.For | None]] = [(tree, None)]
        while stack:
            node, loop = stack.pop()
            self.by_type.setdefault(type(node), []).append(node)
            if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name):
                self.calls.setdefault(node.node.name, []).append(node)
                if node.node.name == "loop" and loop is not None:
                    self.loop_calls.setdefault(id(loop), []).append(node)
            inner = node if isinstance(node, nodes.For) and node.recursive else loop
            stack.extend((child, inner) for child in reversed(list(node.iter_child_nodes())))
        self.sites = [
            n
            for kind in (nodes.Assign, nodes.AssignBlock, nodes.For, nodes.With, nodes.Macro)
            for n in self.by_type.get(kind, [])
        ]

    # -- binding sites

    def _bindings(self) -> Iterator[tuple[str, Val]]:
        """(name, value) for every binding site, with values under the current environment."""
        for node in self.sites:
            if isinstance(node, nodes.Assign):
                yield from self._bind(node.target, self.value(node.node))
            elif isinstance(node, nodes.AssignBlock):
                value = self.output(node.body)
                if node.filter is not None:
                    value = self._filter(node.filter, value)
                yield from self._bind(node.target, value)
            elif isinstance(node, nodes.For):
                yield from self._bind(node.target, self.elements(node.iter))
                for call in self.loop_calls.get(id(node), []):
                    if call.args:
                        yield from self._bind(node.target, self.elements(call.args[0]))
            elif isinstance(node, nodes.With):
                for target, expression in zip(node.targets, node.values, strict=False):
                    yield from self._bind(target, self.value(expression))
            elif isinstance(node, nodes.Macro):
                yield from self._macro_params(node)
        for call in self.calls.get("namespace", []):
            for keyword in call.kwargs:
                yield f"ns:{keyword.key}", self.value(keyword.value)
            for argument in call.args:
                for mapping in self.value(argument).consts:
                    if isinstance(mapping, CDict):
                        yield from ((f"ns:{k}", _const(v)) for k, v in mapping.pairs if isinstance(k, str))
                if self.value(argument).open:
                    yield "ns:*", EXPOSED

    def _bind(self, target: nodes.Node, value: Val) -> Iterator[tuple[str, Val]]:
        if isinstance(target, nodes.Name):
            yield target.name, value
        elif isinstance(target, nodes.NSRef):
            yield f"ns:{target.attr}", value
        elif isinstance(target, (nodes.Tuple, nodes.List)):
            for index, item in enumerate(target.items):
                parts = [c[index] for c in value.consts if isinstance(c, tuple) and len(c) > index]
                element = Val(frozenset(parts))
                if value.open or len(parts) < len(value.consts):
                    opened = replace(value, consts=frozenset(), open=True)
                    # `for k, v in C|dictsort`: k is a key of C, v is not.
                    element = element | (opened if index == 0 else replace(opened, keyof=None, integer=False))
                yield from self._bind(item, element)

    def _macro_params(self, macro: nodes.Macro) -> Iterator[tuple[str, Val]]:
        params = [arg.name for arg in macro.args]
        offset = len(params) - len(macro.defaults)
        for index, default in enumerate(macro.defaults):
            yield params[offset + index], self.value(default)
        for call in self.calls.get(macro.name, []):
            for index, argument in enumerate(call.args[: len(params)]):
                yield params[index], self.value(argument)
            for keyword in call.kwargs:
                if keyword.key in params:
                    yield keyword.key, self.value(keyword.value)
            if call.dyn_args is not None or call.dyn_kwargs is not None:
                yield from ((name, EXPOSED) for name in params)

    def _solve(self) -> None:
        for round_ in range(MAX_ROUNDS + 1):
            self.memo, self.env_outputs = {}, {}
            new: dict[str, Val] = dict(self.env)
            for name, value in self._bindings():
                new[name] = new.get(name, BOTTOM) | value
            if new == self.env:
                return
            for name, value in new.items():
                if value == self.env.get(name, BOTTOM):
                    continue
                # A counter (`set ns.i = ns.i + 1`) is an integer; after the last round, anything still
                # growing can be any string built at render time.
                if (
                    round_ >= 2
                    and all(isinstance(c, (int, float)) for c in value.consts)
                    and (value.integer or not value.open)
                ):
                    new[name] = Val(exposed=value.exposed, namespace=value.namespace) | INTEGER
                elif round_ == MAX_ROUNDS:
                    new[name] = value | BUILT
            self.env = new
        self.memo, self.env_outputs = {}, {}

    # -- expressions

    def _spend(self, amount: int = 1) -> None:
        self.work += amount
        if self.work > MAX_FOLD_WORK:
            raise _Budget

    def value(self, node: nodes.Node) -> Val:
        if self.truncated:
            return UNKNOWN  # past the budget nothing is folded: every value can be anything
        key = id(node)
        found = self.memo.get(key)
        if found is None:
            self._spend()
            found = self.memo[key] = self._value(node)
        return found

    def _value(self, node: nodes.Node) -> Val:
        if isinstance(node, nodes.Const):
            return _const(node.value) if isinstance(node.value, (str, int, float, bool, type(None))) else EXPOSED
        if isinstance(node, nodes.TemplateData):
            return _const(node.data)
        if isinstance(node, nodes.Name):
            return self._name(node.name)
        if isinstance(node, (nodes.List, nodes.Tuple)):
            return self._sequence([self.value(item) for item in node.items])
        if isinstance(node, nodes.Dict):
            return self._dict(node)
        if isinstance(node, nodes.Concat):
            return self._combine([self.value(item) for item in node.nodes], lambda *parts: _join_text(parts))
        if isinstance(node, nodes.BinExpr):
            return self._binary(node)
        if isinstance(node, (nodes.Neg, nodes.Pos)):
            return INTEGER
        if isinstance(node, (nodes.Not, nodes.Compare, nodes.Test)):
            return BOOLEAN
        if isinstance(node, (nodes.And, nodes.Or)):
            return self.value(node.left) | self.value(node.right)
        if isinstance(node, nodes.CondExpr):
            other = self.value(node.expr2) if node.expr2 is not None else _const(None)
            return self.value(node.expr1) | other
        if isinstance(node, nodes.Getattr):
            return self._getattr(node)
        if isinstance(node, nodes.Getitem):
            return self._getitem(node)
        if isinstance(node, nodes.Filter):
            return self._filter(node, self.value(node.node) if node.node is not None else BOTTOM)
        if isinstance(node, nodes.Call):
            return self._call(node)
        if isinstance(node, (nodes.MarkSafe, nodes.MarkSafeIfAutoescape)):
            return self.value(node.expr)
        return EXPOSED

    def _name(self, name: str) -> Val:
        if name == "loop":
            return Val(frozenset({_LOOP}))
        if name in self.macros:
            return Val(frozenset({_Macro(name)}))
        if name in self.bound:
            value = self.env.get(name, BOTTOM)
            return value | EXPOSED if name in self.defined else value
        # Free names, Jinja's own globals included: `(dict|string)[1:6]` is "class" and
        # `(raise_exception|string)` has underscores, so every global is an object to build names from.
        return EXPOSED

    def _sequence(self, items: list[Val]) -> Val:
        if items and all(not v.open for v in items):
            return self._combine(items, lambda *parts: tuple(parts))
        if not items:
            return _const(())
        return Val(open=True, exposed=any(v.exposed for v in items), built=any(v.built for v in items))

    def _dict(self, node: nodes.Dict) -> Val:
        keys = [self.value(p.key) for p in node.items]
        values = [self.value(p.value) for p in node.items]
        if all(not v.open and len(v.consts) == 1 for v in keys + values):
            pairs = tuple((next(iter(k.consts)), next(iter(v.consts))) for k, v in zip(keys, values, strict=True))
            return _const(CDict(pairs))
        return Val(open=True, exposed=any(v.exposed for v in values))

    def _combine(self, parts: list[Val], function: object) -> Val:
        """Apply `function` to every combination of the parts' constants (bounded); an open part makes an
        open, built result."""
        assert callable(function)
        if any(not part.consts and not part.open for part in parts):
            return BOTTOM  # a name not bound yet in this round (or an empty choice)
        result = BOTTOM
        choices = 1
        for part in parts:
            choices *= max(1, len(part.consts))
        if choices <= MAX_CHOICES * 4 and all(part.consts for part in parts):
            values = set()
            for combination in product(*(part.consts for part in parts)):
                self._spend(1 + sum(_size(c) for c in combination) // 64)
                made = function(*combination)
                if made is not None and _size(made) <= MAX_FOLDED:
                    values.add(made)
                else:
                    result = result | BUILT
            result = result | Val(frozenset(values))
        elif parts:
            result = BUILT
        if any(part.open for part in parts):
            result = result | BUILT
        return result | Val(exposed=any(part.exposed for part in parts))

    def _binary(self, node: nodes.BinExpr) -> Val:
        left, right = self.value(node.left), self.value(node.right)
        operator = node.operator

        def apply(a: object, b: object) -> object:
            return _binop(operator, a, b)

        consts = [c for v in (left, right) for c in v.consts]
        numeric = all(not v.open or v.integer for v in (left, right)) and all(
            isinstance(c, (int, float)) for c in consts
        )
        if numeric and (left.open or right.open):
            return INTEGER  # an unknown integer plus a constant is an unknown integer
        if (left.open or right.open) and any(isinstance(c, tuple) for c in consts):
            return Val(open=True, exposed=left.exposed or right.exposed)  # a list grown at render time
        return self._combine([left, right], apply)

    def _getattr(self, node: nodes.Getattr) -> Val:
        container = self.value(node.node)
        result = BOTTOM
        if _LOOP in container.consts:
            if node.attr in _LOOP_INTEGERS:
                result = result | INTEGER
            elif node.attr in ("first", "last"):
                result = result | BOOLEAN
            elif node.attr in ("previtem", "nextitem"):
                result = result | self._loop_items()
        if container.namespace or (container.open and f"ns:{node.attr}" in self.env):
            result = result | self.env.get(f"ns:{node.attr}", BOTTOM) | self.env.get("ns:*", BOTTOM)
        for const in container.consts:
            if isinstance(const, CDict):
                found, item = const.get(node.attr)
                result = result | (_const(item) if found else EXPOSED)
        if container.open or any(isinstance(c, (str, tuple, int, float)) for c in container.consts):
            result = result | EXPOSED
        return result

    def _loop_items(self) -> Val:
        key = "loop:items"
        found = self.env_outputs.get(key)
        if found is None:
            self.env_outputs[key] = BOTTOM
            loops = [f for f in self.by_type.get(nodes.For, []) if isinstance(f, nodes.For)]
            found = self.env_outputs[key] = _union(self.elements(f.iter) for f in loops)
        return found

    def _getitem(self, node: nodes.Getitem) -> Val:
        container = self.value(node.node)
        if isinstance(node.arg, nodes.Slice):
            return self._slice(container, node.arg)
        key = self.value(node.arg)
        result = BOTTOM
        for box, index in product(container.consts, key.consts):
            self._spend()
            if isinstance(box, CDict):
                found, item = box.get(index)
                result = result | (_const(item) if found else EXPOSED)
            elif isinstance(box, (str, tuple)) and isinstance(index, int) and not isinstance(index, bool):
                result = result | (_const(box[index]) if -len(box) <= index < len(box) else BOTTOM)
            else:
                result = result | EXPOSED
        if key.open:
            if key.integer and all(isinstance(b, (str, tuple)) for b in container.consts):
                result = result | self.elements_of(Val(container.consts))
            else:
                result = result | EXPOSED
        if container.open:
            result = result | EXPOSED
        return result

    def _slice(self, container: Val, piece: nodes.Slice) -> Val:
        bounds = [self.value(b) if b is not None else _const(None) for b in (piece.start, piece.stop, piece.step)]
        if any(b.open or len(b.consts) != 1 for b in bounds) or container.open:
            return replace(container, consts=frozenset(), open=True) if container.consts else container
        numbers = [next(iter(b.consts)) for b in bounds]
        if not all(b is None or (isinstance(b, int) and not isinstance(b, bool)) for b in numbers):
            return EXPOSED
        start, stop, step = (b if isinstance(b, int) else None for b in numbers)
        if step == 0:
            return BOTTOM
        cut = slice(start, stop, step)
        return Val(frozenset(box[cut] for box in container.consts if isinstance(box, (str, tuple))))

    def elements(self, node: nodes.Node) -> Val:
        """What iterating over the expression yields (for `for` targets)."""
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "range":
            return INTEGER
        if isinstance(node, (nodes.List, nodes.Tuple)):
            return _union(self.value(item) for item in node.items)
        if isinstance(node, nodes.Filter) and node.name in ("reverse", "list", "sort", "unique") and node.node:
            return self.elements(node.node)
        value = self.value(node)
        result = self.elements_of(Val(value.consts))
        if value.open:
            identity = _mapping_keys(node)
            keys = frozenset({identity}) if identity is not None else None
            result = result | Val(open=True, exposed=value.exposed, built=value.built, keyof=keys)
        return result

    def elements_of(self, value: Val) -> Val:
        result = BOTTOM
        for const in value.consts:
            if isinstance(const, tuple):
                result = result | _union(_const(item) for item in const)
            elif isinstance(const, str):
                result = result | _union(_const(ch) for ch in const[:MAX_CHOICES])
            elif isinstance(const, CDict):
                result = result | _union(_const(k) for k, _ in const.pairs)
        return result

    def output(self, body: list[nodes.Node]) -> Val:
        """The text a block of statements renders (a macro body, a `{% set %}` block, a `caller()` body)."""
        result = _const("")
        for statement in body:
            if isinstance(statement, nodes.Output):
                for item in statement.nodes:
                    result = self._combine([result, self.value(item)], lambda a, b: _join_text((a, b)))
            elif isinstance(statement, nodes.If):
                branches = [self.output(statement.body), self.output(statement.else_ or [])]
                branches += [self.output(e.body) for e in statement.elif_]
                result = self._combine([result, _union(branches)], lambda a, b: _join_text((a, b)))
            elif isinstance(statement, (nodes.For, nodes.CallBlock, nodes.FilterBlock, nodes.With, nodes.Scope)):
                result = result | BUILT
        return result

    def _filter(self, node: nodes.Filter, subject: Val) -> Val:
        args = [self.value(a) for a in node.args]
        name = node.name
        if name in ("length", "count", "wordcount", "int", "abs", "round"):
            return INTEGER
        if name in ("default", "d"):
            return subject | (args[0] if args else _const(""))
        if name in ("first", "last", "random", "min", "max") and not subject.open:
            return self.elements_of(subject) | (EXPOSED if name in ("min", "max") and node.kwargs else BOTTOM)
        if name in ("safe", "e", "escape", "forceescape", "string", "list", "sort", "unique", "reverse") or (
            name in _FILTERS
        ):
            kwargs = [self.value(k.value) for k in node.kwargs]
            if kwargs and any(k.open for k in kwargs):
                return BUILT | Val(exposed=subject.exposed)
            named = {str(k.key): next(iter(v.consts), None) for k, v in zip(node.kwargs, kwargs, strict=True)}

            def apply(value: object, *rest: object) -> object:
                return _apply_filter(name, value, list(rest), named)

            return self._combine([subject, *args], apply)
        if name == "attr" and args:
            return self._attr_filter(subject, args[0])
        if name in ("dictsort", "items"):
            pairs = [tuple(sorted(c.pairs, key=repr)) for c in subject.consts if isinstance(c, CDict)]
            return Val(frozenset(pairs), open=subject.open, exposed=subject.exposed)
        return Val(open=True, exposed=subject.exposed or any(a.exposed for a in args), built=True)

    def _attr_filter(self, subject: Val, name: Val) -> Val:
        result = BOTTOM
        for const, key in product(subject.consts, name.consts):
            if isinstance(const, CDict):
                found, item = const.get(key)
                result = result | (_const(item) if found else EXPOSED)
            else:
                result = result | EXPOSED
        return result | (EXPOSED if subject.open or name.open else BOTTOM)

    def _call(self, node: nodes.Call) -> Val:
        callee = node.node
        if isinstance(callee, nodes.Name):
            if callee.name == "range":
                return Val(open=True, integer=True)
            if callee.name == "namespace":
                return Val(namespace=True)
            if callee.name == "dict" and not node.args and node.dyn_kwargs is None:
                return self._dict(nodes.Dict([nodes.Pair(nodes.Const(k.key), k.value) for k in node.kwargs]))
            if callee.name == "caller":
                return _union(self.output(body) for body in self.caller_bodies) if self.caller_bodies else BUILT
            if callee.name in self.macros and callee.name in self.bound:
                return self._macro_output(callee.name)
        if isinstance(callee, nodes.Getattr):
            receiver = self.value(callee.node)
            if _LOOP in receiver.consts and callee.attr == "cycle":
                return _union(self.value(a) for a in node.args)
            if callee.attr in ("get", "pop", "setdefault") and node.args:
                return self._method_get(receiver, node)
            if callee.attr in ("items", "keys", "values"):
                return self._view(receiver, callee.attr)
            if callee.attr in _STR_METHODS and not receiver.exposed and node.dyn_args is None:
                args = [self.value(a) for a in node.args]
                method = callee.attr

                def apply(subject: object, *rest: object) -> object:
                    return _str_method(method, subject, list(rest))

                return self._combine([receiver, *args], apply)
        return EXPOSED

    def _macro_output(self, name: str) -> Val:
        """What a macro call renders (once per round; a macro that calls itself renders unknown text)."""
        key = f"macro:{name}"
        found = self.env_outputs.get(key)
        if found is None:
            self.env_outputs[key] = BUILT
            found = self.env_outputs[key] = self.output(self.macros[name].body)
        return found

    def _method_get(self, receiver: Val, node: nodes.Call) -> Val:
        keys = self.value(node.args[0])
        fallback = self.value(node.args[1]) if len(node.args) > 1 else _const(None)
        result = fallback
        for const, key in product(receiver.consts, keys.consts):
            if isinstance(const, CDict):
                found, item = const.get(key)
                result = result | (_const(item) if found else BOTTOM)
        return result | (EXPOSED if receiver.open or keys.open else BOTTOM)

    def _view(self, receiver: Val, which: str) -> Val:
        views = set()
        for const in receiver.consts:
            if isinstance(const, CDict):
                pairs = const.pairs
                views.add(tuple(k for k, _ in pairs) if which == "keys" else tuple(v for _, v in pairs))
                if which == "items":
                    views.add(pairs)
        return Val(frozenset(views), open=receiver.open, exposed=receiver.exposed)


@dataclass(frozen=True)
class _Marker:
    """A value that is not data: the `loop` object, or a macro."""

    kind: str
    name: str = ""


_LOOP = _Marker("loop")


def _Macro(name: str) -> _Marker:
    return _Marker("macro", name)


def _join_text(parts: Iterable[object]) -> str | None:
    texts = [_text(p) for p in parts]
    return None if any(t is None for t in texts) else "".join(t for t in texts if t is not None)


def _binop(operator: str, a: object, b: object) -> object:
    """A binary operator on constants, refusing results larger than the folder keeps."""
    if isinstance(a, bool) or isinstance(b, bool):
        return None
    if operator == "+" and isinstance(a, type(b)) and isinstance(a, (str, tuple, int, float)):
        return a + b  # type: ignore[operator]
    if operator == "*":
        if isinstance(a, int) and isinstance(b, (str, tuple)):
            a, b = b, a
        if isinstance(a, (str, tuple)) and isinstance(b, int):
            return a * b if len(a) * max(b, 0) <= MAX_FOLDED else None
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a) < 2**64 and abs(b) < 2**64:
            return a * b
    if operator == "%" and isinstance(a, str):
        return _percent(a, b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        try:
            if operator == "-":
                return a - b
            if operator == "//" and b:
                return a // b
            if operator == "/" and b:
                return a / b
            if operator == "%" and b:
                return a % b
            if operator == "**" and isinstance(b, int) and 0 <= b <= 64 and abs(a) < 2**16:
                return a**b
        except (OverflowError, ValueError, ZeroDivisionError):
            return None
    return None


def _percent(text: str, args: object) -> str | None:
    """`'%s' % x` (the `format` filter uses it too) on constants, refusing wide fields."""
    values = args if isinstance(args, tuple) else (args,)
    if any(not isinstance(v, (str, int, float)) for v in values) or any(ch.isdigit() for ch in text):
        return None if any(ch.isdigit() for ch in text.split("%", 1)[-1]) else _safe_percent(text, values)
    return _safe_percent(text, values)


def _safe_percent(text: str, values: tuple[object, ...]) -> str | None:
    try:
        return text % values
    except (TypeError, ValueError, KeyError):
        return None


#: String-building filters the folder applies to constants.
_FILTERS = frozenset(
    {"join", "format", "replace", "lower", "upper", "trim", "title", "capitalize", "tojson", "center", "batch"}
)


def _apply_filter(name: str, value: object, args: list[object], kwargs: dict[str, object]) -> object:
    """The filter's result on constant arguments, for the filters that build strings and lists."""
    if name == "join" and isinstance(value, (tuple, str)):
        separator = args[0] if args and isinstance(args[0], str) else kwargs.get("d", "")
        attribute = kwargs.get("attribute")
        if attribute is not None or not isinstance(separator, str):
            return None
        texts = [_text(v) for v in value]
        return None if None in texts else separator.join(t for t in texts if t is not None)
    if name in ("list", "sort", "unique", "reverse") and isinstance(value, (tuple, str)):
        items = tuple(value)
        if name == "sort":
            return tuple(sorted(items, key=repr))
        if name == "unique":
            return tuple(dict.fromkeys(items))
        return items[::-1] if name == "reverse" else items
    if name in ("safe", "e", "escape", "forceescape") and isinstance(value, str):
        return value
    if name == "string":
        return _text(value)
    if name == "tojson":
        try:
            return json.dumps(value) if isinstance(value, (str, int, float, bool, type(None), tuple)) else None
        except (TypeError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    strings = [a for a in args if isinstance(a, str)]
    simple = {"lower": value.lower, "upper": value.upper, "trim": value.strip, "title": value.title}
    if name in simple:
        return simple[name]()
    if name == "capitalize":
        return value.capitalize()
    if name == "replace" and len(strings) >= 2:
        return value.replace(strings[0], strings[1])
    if name == "format":
        return _percent(value, tuple(args)) if not kwargs else None
    return None


def _str_method(method: str, subject: object, args: list[object]) -> object:
    """A Python `str` method on constants (the sandbox lets templates call them)."""
    if not isinstance(subject, str) or not all(isinstance(a, (str, int, tuple)) for a in args):
        return None
    if method == "join":
        if len(args) != 1 or not isinstance(args[0], (tuple, str)):
            return None
        texts = [v for v in args[0] if isinstance(v, str)]
        return subject.join(texts) if len(texts) == len(args[0]) else None
    if method == "format":
        return _format(subject, args)
    if any(isinstance(a, int) and a > MAX_FOLDED for a in args) or any(isinstance(a, tuple) for a in args):
        return None
    try:
        result = getattr(subject, method)(*args)
    except (TypeError, ValueError):
        return None
    if isinstance(result, list):
        return tuple(result)
    return result if isinstance(result, (str, bool)) else None


def _format(text: str, args: list[object]) -> str | None:
    """`str.format` on constants, only with plain fields: `{0.__class__}` reads attributes (the constant
    itself is judged as a string), and wide specs would build large strings."""
    try:
        fields = list(Formatter().parse(text))
    except ValueError:
        return None
    for _, field_name, spec, _ in fields:
        if field_name is not None and ((not field_name.isdigit() and field_name != "") or spec):
            return None
    try:
        return text.format(*args)
    except (IndexError, KeyError, ValueError):
        return None


# -- facts ----------------------------------------------------------------------------------------------


def _reads(expression: nodes.Node, name: str) -> bool:
    return (isinstance(expression, nodes.Name) and expression.name == name) or any(
        n.name == name for n in expression.find_all(nodes.Name)
    )


def _guarded(getitem: nodes.Getitem, guards: list[nodes.Node]) -> bool:
    """Whether an enclosing test that holds here checks `key in container` (so no attribute fallback)."""
    key, box = _identity(getitem.arg), _identity(getitem.node)
    if key is None or box is None:
        return False
    for test in guards:
        for part in _conjuncts(test):
            if (
                isinstance(part, nodes.Compare)
                and _identity(part.expr) == key
                and len(part.ops) == 1
                and part.ops[0].op == "in"
                and _identity(part.ops[0].expr) == box
            ):
                return True
    return False


def _is_mapping(identity: str | None, guards: list[nodes.Node]) -> bool:
    """Whether an enclosing test that holds here checks `container is mapping`."""
    return identity is not None and any(
        isinstance(part, nodes.Test) and part.name == "mapping" and _identity(part.node) == identity
        for test in guards
        for part in _conjuncts(test)
    )


class _Scope(NamedTuple):
    """What encloses a node: the tests that guard it, and the container each loop variable iterates."""

    guards: list[nodes.Node]
    loops: dict[str, str | None]


class _Walker:
    """Yields the facts of one template, in syntax-tree order, with the folder's values."""

    def __init__(self, folder: Folder, max_nodes: int) -> None:
        self.folder = folder
        self.max_nodes = max_nodes
        self.visited = 0

    def run(self, tree: nodes.Template) -> Iterator[Fact]:
        stack: list[tuple[nodes.Node, _Scope]] = [(tree, _Scope([], {}))]
        while stack:
            node, scope = stack.pop()
            self.visited += 1
            if self.visited > self.max_nodes:
                yield Fact("truncated", "", 0)
                return
            yield from self.node_facts(node, scope)
            stack.extend(reversed(self.children(node, scope)))

    @staticmethod
    def children(node: nodes.Node, scope: _Scope) -> list[tuple[nodes.Node, _Scope]]:
        """The node's children with what holds inside each: an `if` guards its body (not its `else`),
        `a if t else b` guards `a`, `a and b` guards `b`, a loop's filter guards its body, and a loop
        variable over a mapping names a key of it."""
        if isinstance(node, nodes.If):
            inner = _Scope([*scope.guards, node.test], scope.loops)
            return [
                (node.test, scope),
                *((child, inner) for child in node.body),
                *((child, scope) for child in node.elif_),
                *((child, scope) for child in node.else_),
            ]
        if isinstance(node, nodes.CondExpr):
            inner = _Scope([*scope.guards, node.test], scope.loops)
            rest = [(node.expr2, scope)] if node.expr2 is not None else []
            return [(node.test, scope), (node.expr1, inner), *rest]
        if isinstance(node, nodes.And):
            return [(node.left, scope), (node.right, _Scope([*scope.guards, node.left], scope.loops))]
        if isinstance(node, nodes.For):
            target = node.target.items[0] if isinstance(node.target, nodes.Tuple) else node.target
            loops = dict(scope.loops)
            if isinstance(target, nodes.Name):
                iterated = _container(node.iter)
                mapping = _mapping_keys(node.iter) is not None or _is_mapping(_identity(iterated), scope.guards)
                loops[target.name] = _identity(iterated) if mapping else None
            guards = [*scope.guards, node.test] if node.test is not None else scope.guards
            inner = _Scope(guards, loops)
            return [
                (node.target, scope),
                (node.iter, scope),
                *([(node.test, inner)] if node.test is not None else []),
                *((child, inner) for child in node.body),
                *((child, scope) for child in node.else_),
            ]
        return [(child, scope) for child in node.iter_child_nodes()]

    def node_facts(self, node: nodes.Node, scope: _Scope) -> Iterator[Fact]:
        line = node.lineno
        folder = self.folder
        if isinstance(node, nodes.Name):
            yield Fact("name" if node.ctx == "load" else "assign", node.name, line)
        elif isinstance(node, nodes.Getattr):
            yield Fact("attribute", node.attr, line)
        elif isinstance(node, nodes.Const) and isinstance(node.value, str):
            yield Fact("string", node.value, line)
        elif isinstance(node, (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            target = _const_string(node.template)
            shown = repr(target) if target is not None else "a computed name"
            yield Fact("load", type(node).__name__.lower(), line, shown)
        if (
            isinstance(node, nodes.Assign)
            and isinstance(node.target, nodes.Name)
            and _reads(node.node, node.target.name)
        ):
            yield Fact("global", node.target.name, line)  # `{% set cycler = cycler %}` reads the global it shadows
        if isinstance(node, nodes.Filter):
            yield from self.filter_facts(node, line)
        elif isinstance(node, nodes.Getitem) and not isinstance(node.arg, nodes.Slice):
            yield from self.subscript_facts(node, scope, line)
        if isinstance(node, nodes.Expr) and not isinstance(node, (nodes.Const, nodes.Name, nodes.TemplateData)):
            for text in folder.value(node).strings:
                yield Fact("string", text, line)

    def filter_facts(self, node: nodes.Filter, line: int) -> Iterator[Fact]:
        """Attribute names passed to `attr`, `map(attribute=...)` and similar filters."""
        if node.name not in ATTRIBUTE_FILTERS:
            return
        arguments = [kw.value for kw in node.kwargs if kw.key == "attribute"]
        if node.name in POSITIONAL_ATTRIBUTE_FILTERS:
            arguments += node.args[:1]
        if node.name == "map" and node.args:
            # `map('attr', name)` applies the attr filter; a filter chosen at render time may be it.
            chosen = self.folder.value(node.args[0])
            if chosen.open:
                yield Fact("computed-attribute", "|map filter chosen at render time", line)
            elif "attr" in chosen.consts:
                arguments += node.args[1:2]
        for argument in arguments:
            value = self.folder.value(argument)
            for name in value.strings:
                for part in name.split("."):
                    yield Fact("attribute", part, line)
            if value.open and not value.integer:
                yield Fact("computed-attribute", f"|{node.name} filter", line)

    def subscript_facts(self, node: nodes.Getitem, scope: _Scope, line: int) -> Iterator[Fact]:
        key = self.folder.value(node.arg)
        for name in key.strings:
            yield Fact("attribute", name, line)  # the sandbox's getitem falls back to getattr
        if not key.open or key.integer:
            return
        if key.built:
            yield Fact("computed-attribute", "subscript", line)
            return
        box = self.folder.value(node.node)
        identity = _identity(node.node)
        if identity is not None and (
            key.keyof == frozenset({identity})
            or (isinstance(node.arg, nodes.Name) and scope.loops.get(node.arg.name) == identity)
        ):
            return
        if (box.exposed or box.open) and not _guarded(node, scope.guards):
            yield Fact("computed-key", "subscript", line, identity or "an expression")


def facts(text: str, max_nodes: int) -> Iterator[Fact]:
    """The template's facts, walking at most `max_nodes` syntax nodes (then a `truncated` fact).

    Raises InvalidTemplate for text Jinja rejects; RecursionError for nesting its parser cannot take.
    """
    try:
        tree = _ENV.parse(text)
    except TemplateError as exc:
        raise InvalidTemplate(str(exc)) from None
    folder = Folder(tree)
    if folder.truncated:
        # Padding a template to exhaust the budget must not hide what it spells out: the walk goes
        # on with every value unknown (dotted dunders stay TPL001, every computed key is TPL004).
        yield Fact("truncated", "folding", 0)
    try:
        yield from _Walker(folder, max_nodes).run(tree)
        yield from cost_facts(tree, folder)
    except _Budget:
        folder.truncated = True
        yield Fact("truncated", "folding", 0)
        yield from _Walker(folder, max_nodes).run(tree)


# -- render cost ------------------------------------------------------------------------------------------

#: Loop iterations and output characters one render may take before the template is reported: real
#: templates loop over the request's messages and tools (a few thousand steps), never a constant range.
MAX_RENDER_STEPS = 10_000_000
MAX_RENDER_CHARS = 100_000_000
_HUGE = 10**30


@dataclass
class _Cost:
    steps: int = 0
    chars: int = 0
    why: list[tuple[int, str]] = field(default_factory=list)


def cost_facts(tree: nodes.Template, folder: Folder) -> Iterator[Fact]:
    """Facts for what makes one render expensive: loops over large constant ranges (nested ones
    multiply), large string or list repetition, and macros or recursive loops that call themselves more
    than once per call on arguments that do not shrink (exponential)."""
    estimator = _Estimator(folder)
    cost = estimator.block(tree.body, 1)
    if cost.steps > MAX_RENDER_STEPS or cost.chars > MAX_RENDER_CHARS:
        line, why = max(cost.why, default=(0, "loops"))
        shown = "more than 10**30" if max(cost.steps, cost.chars) >= _HUGE else f"{max(cost.steps, cost.chars):.2e}"
        yield Fact("cost", f"{why}: about {shown} steps or characters per render", line)
    for line, why in estimator.recursion:
        yield Fact("cost", why, line)


class _Estimator:
    def __init__(self, folder: Folder) -> None:
        self.folder = folder
        self.macro_costs: dict[str, _Cost] = {}
        self.active: set[str] = set()
        self.recursion: list[tuple[int, str]] = []
        self.loops = 0
        self.reach = self._reach()

    def _reach(self) -> dict[str, set[str]]:
        """The macros each macro can end up calling (its call graph's closure, bounded by the macros)."""
        direct = {
            name: {c.node.name for c in macro.find_all(nodes.Call) if isinstance(c.node, nodes.Name)}
            & set(self.folder.macros)
            for name, macro in self.folder.macros.items()
        }
        reach = {name: set(callees) for name, callees in direct.items()}
        for _ in range(len(reach)):
            changed = False
            for callees in reach.values():
                more = set().union(*(reach[c] for c in callees)) - callees
                if more:
                    callees.update(more)
                    changed = True
            if not changed:
                break
        return reach

    def block(self, body: Iterable[nodes.Node], times: int) -> _Cost:
        total = _Cost()
        for node in body:
            self._add(total, self.node(node, times))
        return total

    @staticmethod
    def _add(total: _Cost, more: _Cost) -> None:
        total.steps = min(_HUGE, total.steps + more.steps)
        total.chars = min(_HUGE, total.chars + more.chars)
        total.why.extend(more.why)

    def node(self, node: nodes.Node, times: int) -> _Cost:
        if isinstance(node, nodes.For):
            self.loops += 1
            try:
                return self._loop(node, times)
            finally:
                self.loops -= 1
        return self._other(node, times)

    def _loop(self, node: nodes.For, times: int) -> _Cost:
        cost = _Cost()
        count = self.iterations(node.iter)
        inner = min(_HUGE, times * count)
        cost.steps = inner
        if count > 1:
            cost.why.append((inner, f"line {node.lineno}: a loop of {count} constant iterations"))
        if node.recursive:
            self._recursive_loop(node)
        self._add(cost, self.block(node.body, inner))
        self._add(cost, self.block(node.else_, times))
        return cost

    def _other(self, node: nodes.Node, times: int) -> _Cost:
        cost = _Cost()
        if isinstance(node, nodes.Macro):
            return cost  # counted where it is called
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name in self.folder.macros:
            # Each call is a step: macros that call the next one twice, 300 deep, make 2**300 calls.
            called = self.macro(node.node.name, times)
            called.steps = min(_HUGE, called.steps + times)
            if called.steps > MAX_RENDER_STEPS:
                called.why.append((called.steps, f"line {node.lineno}: macro calls that multiply"))
            self._add(cost, called)
        if isinstance(node, nodes.Mul):
            self._repeat(node, times, cost)
        if isinstance(node, nodes.Filter) and node.name in _WIDTH_FILTERS and node.args:
            width = self._int(node.args[0])
            if width > MAX_FOLDED:
                cost.chars = min(_HUGE, times * width)
                cost.why.append((cost.chars, f"line {node.lineno}: |{node.name} to size {width}"))
        if _formats(node):
            text = self.folder.value(_format_string(node))
            stars = [self._int(a) for a in _format_args(node)] if _star_width(text) else []
            width = max([_widest_field(text), *stars])
            if width > MAX_RENDER_CHARS // 100:
                cost.chars = min(_HUGE, times * width)
                cost.why.append((cost.chars, f"line {node.lineno}: a format field of width {width}"))
        if isinstance(node, (nodes.Assign, nodes.AssignBlock)) and times > 1 and _joins(node) == 1:
            # `{% set s = s ~ piece %}` copies the whole string on every step: quadratic in the steps.
            copied = min(_HUGE, times * times // 2)
            if copied > MAX_RENDER_CHARS:
                cost.chars = copied
                cost.why.append((copied, f"line {node.lineno}: a string grown by copying on each of {times} steps"))
        if isinstance(node, (nodes.Assign, nodes.AssignBlock)) and self.loops and _joins(node) >= 2:
            cost.chars = _HUGE
            cost.why.append(
                (_HUGE, f"line {node.lineno}: a value joined to itself on every loop step doubles each time")
            )
        for child in node.iter_child_nodes():
            self._add(cost, self.node(child, times))
        return cost

    def _repeat(self, node: nodes.Mul, times: int, cost: _Cost) -> None:
        for count_side, other in ((node.left, node.right), (node.right, node.left)):
            count = self._int(count_side)
            other_value = self.folder.value(other)
            text = any(isinstance(c, (str, tuple)) for c in other_value.consts) or (
                other_value.open and not other_value.integer
            )
            if count > 1 and text:
                size = max([_size(c) for c in other_value.consts] + [1])
                cost.chars = min(_HUGE, times * count * size)
                cost.why.append((cost.chars, f"line {node.lineno}: a string or list repeated {count} times"))

    def _int(self, node: nodes.Node) -> int:
        """The largest integer the expression can be, counting what the request decides as 1
        (`messages|length * 100000` is 100000 per message)."""
        value = self.folder.value(node)
        numbers = [c for c in value.consts if isinstance(c, int) and not isinstance(c, bool)]
        if not value.open:
            return max(numbers, default=0)
        return max([*numbers, _upper(node, 0)])

    def iterations(self, node: nodes.Node) -> int:
        """Iterations of a loop when the template fixes them (a constant range or list); 1 when the
        request decides (messages, tools), since those scale with the request, not with the template."""
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "range":
            if not node.args:
                return 1
            numbers = [self._int(a) for a in node.args]
            start, stop = (0, numbers[0]) if len(numbers) == 1 else (0, max(numbers[:2]))
            step = numbers[2] if len(numbers) > 2 and numbers[2] else 1
            return max(1, min(_HUGE, (stop - start) // abs(step)))
        if isinstance(node, nodes.Mul):
            return max(1, min(_HUGE, self._int(node.left) * self._int(node.right)))
        value = self.folder.value(node)
        sizes = [len(c) for c in value.consts if isinstance(c, (tuple, str))]
        return max(1, max(sizes, default=1))

    def macro(self, name: str, times: int) -> _Cost:
        if name in self.active:
            return _Cost()  # the recursion itself is judged by _recursive_macro
        known = self.macro_costs.get(name)
        if known is None:
            self.active.add(name)
            macro = self.folder.macros[name]
            known = self.block(macro.body, 1)
            self._recursive_macro(macro)
            self.active.discard(name)
            self.macro_costs[name] = known
        return _Cost(min(_HUGE, known.steps * times), min(_HUGE, known.chars * times), list(known.why))

    def _recursive_macro(self, macro: nodes.Macro) -> None:
        """Calls back into the macro's own cycle (itself, or a macro that calls it again)."""
        params = {arg.name for arg in macro.args}
        cycle = {macro.name} | {m for m in self.reach.get(macro.name, set()) if macro.name in self.reach.get(m, set())}
        if macro.name not in self.reach.get(macro.name, set()):
            return
        calls = [c for c in macro.find_all(nodes.Call) if isinstance(c.node, nodes.Name) and c.node.name in cycle]
        # A cycle that passes a part of its argument somewhere (f(n.children) -> g(n) -> f...) follows the data.
        for member in cycle - {macro.name}:
            other = self.folder.macros[member]
            names = {arg.name for arg in other.args}
            for call in other.find_all(nodes.Call):
                arguments = [*call.args, *(k.value for k in call.kwargs)]
                if (
                    isinstance(call.node, nodes.Name)
                    and call.node.name in cycle
                    and any(_shrinks(a, names) for a in arguments)
                ):
                    return
        self._judge_recursion(macro.lineno, f"macro {macro.name!r}", calls, params, macro.body)

    def _recursive_loop(self, loop: nodes.For) -> None:
        params = {n.name for n in loop.target.find_all(nodes.Name)} | {"loop"}
        calls = [c for c in loop.find_all(nodes.Call) if isinstance(c.node, nodes.Name) and c.node.name == "loop"]
        self._judge_recursion(loop.lineno, "recursive loop", calls, params, loop.body)

    def _judge_recursion(
        self, line: int, what: str, calls: list[nodes.Call], params: set[str], body: list[nodes.Node]
    ) -> None:
        """A self-call on an argument that does not shrink (not reached from a parameter by attribute,
        subscript or a loop over it) recurses until Python's limit; two or more such calls per call
        (or one inside a constant loop) make that exponential."""
        growing = [c for c in calls if not any(_shrinks(a, params) for a in [*c.args, *(k.value for k in c.kwargs)])]
        if not growing:
            return
        fanout = 0
        for call in growing:
            # `loop(items)` runs the body once per item: its fan-out is the items'.
            items = self.iterations(call.args[0]) if what == "recursive loop" and call.args else 1
            fanout += max(1, self._loop_factor(call, body)) * items
        if fanout >= 2:
            self.recursion.append(
                (
                    line,
                    f"line {line}: {what} calls itself {fanout} times per call on arguments that do not follow "
                    f"the request's nesting (up to {fanout}**depth calls, bounded only by constants or the "
                    "recursion limit)",
                )
            )

    def _loop_factor(self, call: nodes.Call, body: list[nodes.Node]) -> int:
        factor = 1
        for loop in (f for node in body for f in ([node] if isinstance(node, nodes.For) else node.find_all(nodes.For))):
            if any(c is call for c in loop.find_all(nodes.Call)):
                factor = min(_HUGE, factor * self.iterations(loop.iter))
        return factor


#: Filters whose first argument sets the size of what they build.
_WIDTH_FILTERS = frozenset({"center", "indent", "wordwrap", "batch", "slice", "truncate"})
#: Field widths of %-style and {}-style format strings.
_WIDTHS = re.compile(r"%[-+ #0]*(\d+)|\{[^{}:]*:[^{}\d]*(\d+)[^{}]*\}")


def _formats(node: nodes.Node) -> bool:
    """`x|format(...)`, `'%..' % x` and `'...'.format(...)`: a field width builds a string that wide."""
    if isinstance(node, nodes.Filter) and node.name == "format" and node.node is not None:
        return True
    if isinstance(node, nodes.Mod):
        return True
    return isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and node.node.attr == "format"


def _format_string(node: nodes.Node) -> nodes.Node:
    if isinstance(node, nodes.Filter) and node.node is not None:
        return node.node
    if isinstance(node, nodes.Mod):
        return node.left
    assert isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr)
    return node.node.node


def _format_args(node: nodes.Node) -> list[nodes.Node]:
    """Arguments that can be a `*` width (`'%*d' % (10**9, 1)`)."""
    if isinstance(node, nodes.Mod):
        return list(node.right.items) if isinstance(node.right, nodes.Tuple) else [node.right]
    return list(node.args) if isinstance(node, (nodes.Filter, nodes.Call)) else []


def _star_width(value: Val) -> bool:
    return any("*" in s for s in value.strings)


def _widest_field(value: Val) -> int:
    """The widest field a constant format string asks for (`%09999999d`, `{:>9999999}`)."""
    widths = [int((m.group(1) or m.group(2))[:30]) for s in value.strings for m in _WIDTHS.finditer(s)]
    return max(widths, default=0)


def _joins(node: nodes.Assign | nodes.AssignBlock) -> int:
    """How often one concatenation in the value joins the target itself: 1 in `{% set s = s ~ x %}`
    (the string grows), 2 in `{% set s = s ~ s %}` (it doubles)."""
    target = node.target
    key = None
    if isinstance(target, nodes.Name):
        key = target.name
    elif isinstance(target, nodes.NSRef):
        key = f"{target.name}.{target.attr}"
    if key is None:
        return 0
    body = [node.node] if isinstance(node, nodes.Assign) else node.body
    joins = [j for part in body for j in part.find_all((nodes.Concat, nodes.Add))]
    joins += [part for part in body if isinstance(part, (nodes.Concat, nodes.Add))]
    return max((sum(1 for operand in _operands(join) if _identity(operand) == key) for join in joins), default=0)


def _operands(node: nodes.Node) -> Iterator[nodes.Node]:
    """The operands of a chain of `~` and `+`."""
    if isinstance(node, nodes.Concat):
        for part in node.nodes:
            yield from _operands(part)
    elif isinstance(node, nodes.Add):
        yield from _operands(node.left)
        yield from _operands(node.right)
    else:
        yield node


def _upper(node: nodes.Node, depth: int) -> int:
    """A bound of an integer expression's constant part, with every request-decided value as 1."""
    if depth > 50:
        return 1
    if isinstance(node, nodes.Const) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return min(_HUGE, abs(node.value))
    if isinstance(node, (nodes.Add, nodes.Sub)):
        return min(_HUGE, _upper(node.left, depth + 1) + _upper(node.right, depth + 1))
    if isinstance(node, nodes.Mul):
        return min(_HUGE, _upper(node.left, depth + 1) * _upper(node.right, depth + 1))
    if isinstance(node, nodes.Pow):
        base, exponent = _upper(node.left, depth + 1), _upper(node.right, depth + 1)
        return _HUGE if base > 1 and exponent * max(1, base.bit_length()) > 100 else min(_HUGE, base**exponent)
    if isinstance(node, nodes.CondExpr):
        other = _upper(node.expr2, depth + 1) if node.expr2 is not None else 0
        return max(_upper(node.expr1, depth + 1), other)
    if isinstance(node, (nodes.Filter, nodes.Pos)) and node.node is not None:
        return _upper(node.node, depth + 1) if isinstance(node, nodes.Pos) or node.name == "int" else 1
    return 1


def _shrinks(argument: nodes.Node, params: set[str]) -> bool:
    """Whether an argument is a part of a parameter (`p.items`, `p[k]`, `p|first`, a loop variable over
    it): recursion on parts of the request stops where the request's nesting does."""
    if isinstance(argument, (nodes.Getattr, nodes.Getitem)):
        root = argument.node
        while isinstance(root, (nodes.Getattr, nodes.Getitem, nodes.Filter)) and root.node is not None:
            root = root.node
        return isinstance(root, nodes.Name)
    if isinstance(argument, nodes.Filter) and argument.node is not None:
        return isinstance(argument.node, nodes.Name) or _shrinks(argument.node, params)  # `p|items`, `p|first`
    if isinstance(argument, nodes.Name):
        return argument.name not in params  # a loop variable or local part; the parameter itself does not shrink
    return isinstance(argument, nodes.Const) and argument.value is None
