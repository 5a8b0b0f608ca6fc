"""A bounded YAML reader that keeps tags as data and never constructs an object.

Every YAML loader that runs code (PyYAML's `!!python/...` constructors, HyperPyYAML's `!new:`, Hydra's
`_target_` after OmegaConf builds its tree) first turns the text into the same node graph. This module
builds that graph from libyaml's events (PyYAML's pure-Python parser where libyaml is missing) with a
composer of its own, so that:

- tags stay strings (`!new:torch.nn.Linear`, `tag:yaml.org,2002:python/object/apply:os.system`, with
  `%TAG` handles already expanded by the parser), and nothing is imported, resolved or called;
- an alias is the *same* `Node` object as its anchor: walking by identity (`walk`) visits it once, so
  a "billion laughs" document costs its size, not its expansion;
- hostile input is bounded before it costs: input bytes, nodes (aliases included), nesting depth and
  the size a constructing loader would expand the graph to (`Node.expanded`, counting every alias and
  `<<` merge as the copy OmegaConf or a naive walker makes) each raise `YamlLimit`, a `LimitExceeded`
  that the engine reports fail-closed, and the composer is iterative (no recursion on depth).

API (stable; other analysers build on it):

    parse(data: bytes, limits: YamlLimits = YamlLimits()) -> YamlStream   # raises YamlLimit/YamlSyntax
    walk(node) -> Iterator[(path, node)]                                    # each node once, by identity
    Scalar / Sequence / Mapping                                             # the node tree
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelshield.core.errors import LimitExceeded, ScanError

MiB = 1024 * 1024

#: The core schema's explicit tags, as the parser spells them after expanding `!!`.
CORE_PREFIX = "tag:yaml.org,2002:"
MERGE_KEY = "<<"


@dataclass(frozen=True)
class YamlLimits:
    """Bounds on one YAML stream; each is far above what real model configs need (NeMo's largest
    model configs are a few thousand nodes, SpeechBrain recipes a few hundred)."""

    #: input larger than this is not parsed at all (real configs are kilobytes)
    max_bytes: int = 16 * MiB
    #: nodes built, aliases included (about 150 bytes each: the bound on memory)
    max_nodes: int = 100_000
    #: collections open at once
    max_depth: int = 200
    #: nodes a loader that copies aliases (OmegaConf, json.dumps, a recursive walk) would build
    max_expanded: int = 5_000_000


class YamlLimit(LimitExceeded):
    """A bound of `YamlLimits` was hit: `limit` names it ('max_bytes', 'max_nodes', 'max_depth',
    'max_expanded'); `line` is where (1-based, 0 if before parsing)."""

    def __init__(self, limit: str, detail: str, line: int = 0) -> None:
        super().__init__(limit, detail)
        self.line = line


class YamlSyntax(ScanError):
    """The bytes are not well-formed YAML (no YAML loader reads them either)."""

    def __init__(self, detail: str, line: int = 0) -> None:
        super().__init__(detail)
        self.line = line


class Node:
    """One node: `tag` is the explicit tag as written after `%TAG` expansion (None when the
    document gave none: a loader then resolves plain scalars implicitly), `anchor` its `&name`, `line`
    and `column` are 1-based, `expanded` counts the nodes a copying loader builds for it."""

    __slots__ = ("anchor", "column", "expanded", "line", "tag")

    def __init__(self, tag: str | None, anchor: str | None, line: int, column: int) -> None:
        self.tag = tag
        self.anchor = anchor
        self.line = line
        self.column = column
        self.expanded = 1


class Scalar(Node):
    """A scalar: `value` is its text; `plain` means unquoted (so `true`, `1e3`, `~` resolve implicitly)."""

    __slots__ = ("plain", "value")

    def __init__(self, tag: str | None, anchor: str | None, line: int, column: int, *, value: str, plain: bool) -> None:
        super().__init__(tag, anchor, line, column)
        self.value = value
        self.plain = plain

    def __repr__(self) -> str:
        return f"Scalar({self.tag!r}, {self.value[:40]!r})"


class Sequence(Node):
    """A sequence of nodes (an alias item is the anchored node itself)."""

    __slots__ = ("items",)

    def __init__(self, tag: str | None, anchor: str | None, line: int, column: int) -> None:
        super().__init__(tag, anchor, line, column)
        self.items: list[Node] = []

    def __repr__(self) -> str:
        return f"Sequence({self.tag!r}, {len(self.items)} items)"


class Mapping(Node):
    """A mapping as its pairs in document order (keys may repeat and may be any node)."""

    __slots__ = ("pairs",)

    def __init__(self, tag: str | None, anchor: str | None, line: int, column: int) -> None:
        super().__init__(tag, anchor, line, column)
        self.pairs: list[tuple[Node, Node]] = []

    def __repr__(self) -> str:
        return f"Mapping({self.tag!r}, {len(self.pairs)} pairs)"

    def get(self, key: str) -> Node | None:
        """The value of the last pair whose key is the scalar `key` (what a dict-building loader keeps)."""
        found: Node | None = None
        for k, v in self.pairs:
            if isinstance(k, Scalar) and k.value == key:
                found = v
        return found

    def keys(self) -> list[str]:
        """The scalar keys, in order."""
        return [k.value for k, _ in self.pairs if isinstance(k, Scalar)]


@dataclass
class YamlStream:
    """The documents of one stream; `aliases` counts alias references, `recursive` is True when an
    alias refers to a collection that contains it (loaders then build a cyclic object)."""

    documents: list[Node] = field(default_factory=list)
    nodes: int = 0
    aliases: int = 0
    anchors: int = 0
    recursive: bool = False
    #: the largest `Node.expanded` of a document: what a copying loader would build
    expanded: int = 0
    #: tag handles declared with `%TAG` (handle -> prefix), across documents
    tag_directives: dict[str, str] = field(default_factory=dict)


def _yaml() -> Any:
    """PyYAML, imported on first use: scans that meet no YAML pay nothing for it."""
    import yaml  # noqa: PLC0415 - imported once YAML is met: it costs start-up time

    return yaml


def parse(data: bytes, limits: YamlLimits | None = None) -> YamlStream:
    """The node graph of a YAML stream, within `limits` (raises `YamlLimit`; `YamlSyntax` if malformed)."""
    limits = limits or YamlLimits()
    if len(data) > limits.max_bytes:
        raise YamlLimit("max_bytes", f"YAML of {len(data)} bytes, more than max_bytes={limits.max_bytes}")
    yaml = _yaml()
    loader = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
    return _Composer(limits).compose(yaml.parse(data, Loader=loader), yaml)


class _Composer:
    """Builds nodes from parser events with an explicit stack, counting as it goes."""

    def __init__(self, limits: YamlLimits) -> None:
        self.limits = limits
        self.stream = YamlStream()
        self.anchors: dict[str, Node] = {}
        self.open: list[Node] = []  # collections being built, innermost last
        self.keys: list[Node | None] = []  # per open mapping: the key waiting for its value
        self.open_ids: set[int] = set()

    def compose(self, events: Iterator[Any], yaml: Any) -> YamlStream:
        line = 0
        try:
            for event in events:
                mark = event.start_mark
                line = mark.line + 1 if mark is not None else line
                self._event(event, yaml, line, (mark.column + 1) if mark is not None else 0)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            mark = getattr(exc, "problem_mark", None)
            at = mark.line + 1 if mark is not None else line
            if "nesting depth" in problem:  # libyaml's own bound (1000 levels), met while scanning ahead
                raise YamlLimit("max_depth", f"YAML nested deeper than libyaml's bound: {problem}", at) from None
            raise YamlSyntax(f"not well-formed YAML at line {at}: {problem}", at) from None
        return self.stream

    def _event(self, event: Any, yaml: Any, line: int, column: int) -> None:
        if isinstance(event, yaml.AliasEvent):
            node = self.anchors.get(event.anchor)
            if node is None:
                raise YamlSyntax(f"alias *{event.anchor} at line {line} names no anchor", line)
            self.stream.aliases += 1
            if id(node) in self.open_ids:
                self.stream.recursive = True
            self._count(line)
            self._attach(node, line)
        elif isinstance(event, yaml.ScalarEvent):
            plain = event.style is None or event.style == ""
            node = Scalar(_tag(event.tag), event.anchor, line, column, value=event.value, plain=plain)
            self._new(node, line)
            self._attach(node, line)
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            kind = Sequence if isinstance(event, yaml.SequenceStartEvent) else Mapping
            coll: Node = kind(_tag(event.tag), event.anchor, line, column)
            self._new(coll, line)
            if len(self.open) >= self.limits.max_depth:
                raise YamlLimit("max_depth", f"YAML nested deeper than max_depth={self.limits.max_depth}", line)
            self.open.append(coll)
            self.open_ids.add(id(coll))
            self.keys.append(None)
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            coll = self.open.pop()
            self.open_ids.discard(id(coll))
            self.keys.pop()
            self._attach(coll, line)
        elif isinstance(event, yaml.DocumentStartEvent):
            self.anchors = {}  # anchors do not cross documents
            for handle, prefix in (event.tags or {}).items():
                self.stream.tag_directives[handle] = prefix

    def _new(self, node: Node, line: int) -> None:
        self._count(line)
        if node.anchor is not None:
            self.stream.anchors += 1
            self.anchors[node.anchor] = node

    def _count(self, line: int) -> None:
        self.stream.nodes += 1
        if self.stream.nodes > self.limits.max_nodes:
            raise YamlLimit("max_nodes", f"more than max_nodes={self.limits.max_nodes} YAML nodes", line)

    def _attach(self, node: Node, line: int) -> None:
        """Add a finished node (or an alias to one) to the collection being built, or end a document."""
        if not self.open:
            self.stream.documents.append(node)
            self.stream.expanded = max(self.stream.expanded, node.expanded)
            return
        parent = self.open[-1]
        # An alias to a collection still open (a cycle) adds one reference, not its unknown size.
        weight = 1 if id(node) in self.open_ids else node.expanded
        parent.expanded += weight
        if parent.expanded > self.limits.max_expanded:
            raise YamlLimit(
                "max_expanded",
                f"aliases expand the YAML to more than max_expanded={self.limits.max_expanded} nodes "
                f"({self.stream.nodes} written, {self.stream.aliases} aliases): an alias bomb",
                line,
            )
        if isinstance(parent, Sequence):
            parent.items.append(node)
            return
        assert isinstance(parent, Mapping)
        key = self.keys[-1]
        if key is None:
            self.keys[-1] = node
        else:
            parent.pairs.append((key, node))
            self.keys[-1] = None


def _tag(tag: str | None) -> str | None:
    """The explicit tag; `!` alone (the non-specific tag: a plain string) is kept as written."""
    return tag if tag else None


def walk(root: Node, *, keys: bool = False) -> Iterator[tuple[tuple[str, ...], Node]]:
    """Every node reachable from `root` once (by identity), depth-first in document order, with the
    path of the first place it was met: mapping keys' text, `[i]` for sequence items, `{key}` for a
    mapping's non-scalar key. `keys=True` also yields scalar keys (path ending in `{key}`): loaders
    construct keys too, so a tag on a key acts like one on a value. Iterative: depth costs no recursion."""
    seen: set[int] = set()
    stack: list[tuple[tuple[str, ...], Node]] = [((), root)]
    while stack:
        path, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield path, node
        children: list[tuple[tuple[str, ...], Node]] = []
        if isinstance(node, Sequence):
            children = [((*path, f"[{i}]"), item) for i, item in enumerate(node.items)]
        elif isinstance(node, Mapping):
            for key, value in node.pairs:
                label = key.value if isinstance(key, Scalar) else "{key}"
                if keys or not isinstance(key, Scalar):
                    children.append(((*path, "{key}"), key))
                children.append(((*path, label), value))
        stack.extend(reversed(children))


def core_tag(node: Node) -> str | None:
    """The part after `tag:yaml.org,2002:` when the node's tag is in the core namespace (`str`,
    `python/object/apply:os.system`), else None."""
    if node.tag is not None and node.tag.startswith(CORE_PREFIX):
        return node.tag[len(CORE_PREFIX) :]
    return None


def text_of(node: Node | None) -> str | None:
    """A scalar's text, None for anything else."""
    return node.value if isinstance(node, Scalar) else None
