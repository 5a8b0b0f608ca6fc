"""Jinja's parser, kept apart so that it is imported only when there is a template to analyse.

Jinja costs more start-up time than any analyser, and most scans meet no template. This module
reduces a template's syntax tree to the facts the template rules judge (`templates.py` judges them);
the template is parsed, never rendered.
"""

from __future__ import annotations

from collections.abc import Iterator
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


class InvalidTemplate(ValueError):
    """The text is not valid Jinja."""


class Fact(NamedTuple):
    """One thing the template does, in the order the syntax tree is walked.

    kind: `attribute` (fetched, by `.` or by a filter), `computed-attribute` (value: the filter that
    fetches it), `string` (a constant), `load` (value: include/import/fromimport/extends, detail: the
    target), `name` (a free name read), `assign` (a name set), `truncated` (the walk stopped).
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


#: Pure string filters Jinja's sandbox applies to constants; an escape builds names through them.
_STRING_FILTERS = frozenset(
    {"reverse", "join", "format", "replace", "lower", "upper", "string", "trim", "title", "capitalize"}
)
#: Longest string the folder builds: names are short, and `'a' * 10**9` must not be built.
_MAX_FOLDED = 1_000


def _apply_filter(name: str, value: object, args: list[object]) -> str | None:
    """The filter's result on constant arguments, for the filters that build strings."""
    if isinstance(value, (list, tuple)) and name == "join" and all(isinstance(v, str) for v in value):
        separator = args[0] if args and isinstance(args[0], str) else ""
        return separator.join(str(v) for v in value)
    if not isinstance(value, str):
        return None
    strings = [a for a in args if isinstance(a, str)]
    simple = {"reverse": value[::-1], "join": value, "lower": value.lower(), "upper": value.upper()}
    simple |= {"string": value, "trim": value.strip(), "title": value.title(), "capitalize": value.capitalize()}
    if name in simple:
        return simple[name]
    if name == "replace" and len(strings) >= 2:
        return value.replace(strings[0], strings[1])
    if name == "format":
        try:
            return value % tuple(args)
        except (TypeError, ValueError):
            return None
    return None


class _Folder:
    """Folds constant expressions the way rendering would: Const, `~`, `+` on strings, string filters,
    subscripts of constant lists, and names `{% set %}` to a constant."""

    def __init__(self, tree: nodes.Node) -> None:
        self.bound: dict[str, object] = {}
        unstable: set[str] = set()
        for assign in tree.find_all(nodes.Assign):
            if isinstance(assign.target, nodes.Name):
                value = self.fold(assign.node)
                name = assign.target.name
                if value is None or self.bound.get(name, value) != value:
                    unstable.add(name)
                self.bound[name] = value
        for name in unstable:
            self.bound.pop(name, None)

    def fold(self, node: nodes.Node, depth: int = 0) -> object:
        """The node's constant value (a str, int or list of them), or None."""
        if depth > 50:
            return None
        if isinstance(node, nodes.Const) and isinstance(node.value, (str, int)):
            return node.value
        if isinstance(node, nodes.Name):
            return self.bound.get(node.name)
        if isinstance(node, (nodes.List, nodes.Tuple)):
            items = [self.fold(item, depth + 1) for item in node.items]
            return None if any(i is None for i in items) else items
        if isinstance(node, nodes.Concat):
            parts = [self.fold(item, depth + 1) for item in node.nodes]
            return None if any(p is None for p in parts) else "".join(map(str, parts))
        if isinstance(node, (nodes.Add, nodes.Mul)):
            left, right = self.fold(node.left, depth + 1), self.fold(node.right, depth + 1)
            sizes = [len(v) if isinstance(v, str) else v if isinstance(v, int) else 0 for v in (left, right)]
            if isinstance(node, nodes.Mul) and sizes[0] * sizes[1] > _MAX_FOLDED:
                return None
            try:
                result = left + right if isinstance(node, nodes.Add) else left * right  # type: ignore[operator]
            except TypeError:
                return None
            return result if isinstance(result, (str, int)) and len(str(result)) <= _MAX_FOLDED else None
        if isinstance(node, nodes.Filter) and node.name in _STRING_FILTERS and node.node is not None:
            args = [self.fold(a, depth + 1) for a in node.args]
            value = self.fold(node.node, depth + 1)
            return None if value is None or None in args else _apply_filter(node.name, value, args)
        if isinstance(node, nodes.Getitem):
            container = self.fold(node.node, depth + 1)
            key = self.fold(node.arg, depth + 1)
            if isinstance(container, (list, str)) and isinstance(key, int) and -len(container) <= key < len(container):
                return container[key]
        return None

    def built(self, node: nodes.Node) -> bool:
        """Whether the node builds a string by an operation (`~`, a string filter, `+` or `*` with a
        string), as a key built at render time does; `messages[loop.index0 + 1]` builds none."""
        if isinstance(node, nodes.Concat) or (isinstance(node, nodes.Filter) and node.name in _STRING_FILTERS):
            return True
        if isinstance(node, (nodes.Add, nodes.Mul)):
            return any(isinstance(self.fold(side), str) or self.built(side) for side in (node.left, node.right))
        return False


def _filter_facts(node: nodes.Filter, line: int, folder: _Folder) -> Iterator[Fact]:
    """Attribute names passed to `attr`, `map(attribute=...)` and similar filters."""
    if node.name not in ATTRIBUTE_FILTERS:
        return
    arguments = [kw.value for kw in node.kwargs if kw.key == "attribute"]
    if node.name in POSITIONAL_ATTRIBUTE_FILTERS:
        arguments += node.args[:1]
    for argument in arguments:
        name = folder.fold(argument)
        if not isinstance(name, str):
            yield Fact("computed-attribute", f"|{node.name} filter", line)
        else:
            yield Fact("attribute", name.split(".")[-1], line)


def _node_facts(node: nodes.Node, folder: _Folder) -> Iterator[Fact]:
    line = node.lineno
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
    if isinstance(node, nodes.Filter):
        yield from _filter_facts(node, line, folder)
    elif isinstance(node, nodes.Getitem):
        key = folder.fold(node.arg)
        if isinstance(key, str):
            yield Fact("attribute", key, line)  # the sandbox's getitem falls back to getattr
        elif key is None and folder.built(node.arg):
            yield Fact("computed-attribute", "subscript", line)
    if folder.built(node) or isinstance(node, nodes.Getitem):
        value = folder.fold(node)
        if isinstance(value, str):
            yield Fact("string", value, line)


def facts(text: str, max_nodes: int) -> Iterator[Fact]:
    """The template's facts, walking at most `max_nodes` syntax nodes (then a `truncated` fact).

    Raises InvalidTemplate for text Jinja rejects; RecursionError for nesting its parser cannot take.
    """
    try:
        tree = _ENV.parse(text)
    except TemplateError as exc:
        raise InvalidTemplate(str(exc)) from None
    folder = _Folder(tree)
    stack: list[nodes.Node] = [tree]
    visited = 0
    while stack:
        node = stack.pop()
        visited += 1
        if visited > max_nodes:
            yield Fact("truncated", "", 0)
            return
        yield from _node_facts(node, folder)
        stack.extend(node.iter_child_nodes())
