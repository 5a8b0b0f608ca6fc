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


def _filter_facts(node: nodes.Filter, line: int) -> Iterator[Fact]:
    """Attribute names passed to `attr`, `map(attribute=...)` and similar filters."""
    if node.name not in ATTRIBUTE_FILTERS:
        return
    arguments = [kw.value for kw in node.kwargs if kw.key == "attribute"]
    if node.name in POSITIONAL_ATTRIBUTE_FILTERS:
        arguments += node.args[:1]
    for argument in arguments:
        name = _const_string(argument)
        if name is None:
            yield Fact("computed-attribute", node.name, line)
        else:
            yield Fact("attribute", name.split(".")[-1], line)


def _node_facts(node: nodes.Node) -> Iterator[Fact]:
    line = node.lineno
    if isinstance(node, nodes.Name):
        yield Fact("name" if node.ctx == "load" else "assign", node.name, line)
    elif isinstance(node, nodes.Getattr):
        yield Fact("attribute", node.attr, line)
    elif isinstance(node, nodes.Const) and isinstance(node.value, str):
        yield Fact("string", node.value, line)
    elif isinstance(node, nodes.Filter):
        yield from _filter_facts(node, line)
    elif isinstance(node, (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        target = _const_string(node.template)
        shown = repr(target) if target is not None else "a computed name"
        yield Fact("load", type(node).__name__.lower(), line, shown)


def facts(text: str, max_nodes: int) -> Iterator[Fact]:
    """The template's facts, walking at most `max_nodes` syntax nodes (then a `truncated` fact).

    Raises InvalidTemplate for text Jinja rejects; RecursionError for nesting its parser cannot take.
    """
    try:
        tree = _ENV.parse(text)
    except TemplateError as exc:
        raise InvalidTemplate(str(exc)) from None
    stack: list[nodes.Node] = [tree]
    visited = 0
    while stack:
        node = stack.pop()
        visited += 1
        if visited > max_nodes:
            yield Fact("truncated", "", 0)
            return
        yield from _node_facts(node)
        stack.extend(node.iter_child_nodes())
