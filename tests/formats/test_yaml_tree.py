"""The bounded YAML reader: tags kept as data, aliases shared by identity, bounds raised fail-closed."""

from __future__ import annotations

import pytest

from modelshield.core.errors import LimitExceeded
from modelshield.formats.configs.yaml_tree import (
    Mapping,
    Scalar,
    Sequence,
    YamlLimit,
    YamlLimits,
    YamlSyntax,
    core_tag,
    parse,
    text_of,
    walk,
)


def billion_laughs(levels: int = 9, width: int = 9) -> bytes:
    lines = [b"l0: &l0 [" + b", ".join([b"lol"] * width) + b"]"]
    for i in range(1, levels + 1):
        refs = b", ".join([b"*l%d" % (i - 1)] * width)
        lines.append(b"l%d: &l%d [%s]" % (i, i, refs))
    return b"\n".join(lines) + b"\n"


def test_tags_are_kept_as_written_after_tag_directives() -> None:
    stream = parse(
        b"%TAG !py! tag:yaml.org,2002:python/\n---\n"
        b"a: !py!object/apply:os.system ['id']\n"
        b"b: !new:torch.nn.Linear {in_features: 2}\n"
        b"c: !<tag:yaml.org,2002:python/name:os.system> ''\n"
        b"d: 'quoted'\n"
        b"e: plain\n"
    )
    root = stream.documents[0]
    assert isinstance(root, Mapping)
    assert root.keys() == ["a", "b", "c", "d", "e"]
    a, b, c = root.get("a"), root.get("b"), root.get("c")
    assert isinstance(a, Sequence) and core_tag(a) == "python/object/apply:os.system"
    assert text_of(a.items[0]) == "id"
    assert isinstance(b, Mapping) and b.tag == "!new:torch.nn.Linear" and core_tag(b) is None
    assert c is not None and core_tag(c) == "python/name:os.system"
    d, e = root.get("d"), root.get("e")
    assert isinstance(d, Scalar) and not d.plain and d.tag is None
    assert isinstance(e, Scalar) and e.plain
    assert (a.line, a.column) == (3, 4)
    assert stream.tag_directives == {"!py!": "tag:yaml.org,2002:python/"}


def test_an_alias_is_its_anchor_and_walk_visits_it_once() -> None:
    stream = parse(b"base: &b {lr: 0.1}\nfirst: *b\nsecond: *b\n")
    root = stream.documents[0]
    assert isinstance(root, Mapping)
    assert root.get("base") is root.get("first") is root.get("second")
    assert stream.aliases == 2 and stream.anchors == 1
    visited = [node for _, node in walk(root)]
    assert len(visited) == len({id(n) for n in visited}) == 3  # root, the shared mapping, its value
    with_keys = [path for path, _ in walk(root, keys=True)]
    assert len(with_keys) == 7  # and the keys base, first, second, lr: each once


def test_billion_laughs_is_a_bounded_finding_not_an_expansion() -> None:
    with pytest.raises(YamlLimit) as raised:
        parse(billion_laughs())
    assert raised.value.limit == "max_expanded"
    assert isinstance(raised.value, LimitExceeded)
    # The same document under a looser bound composes to its written size.
    stream = parse(billion_laughs(), YamlLimits(max_expanded=10**12))
    assert stream.nodes < 200 and stream.expanded > 10**8


def test_a_recursive_alias_is_reported_not_followed() -> None:
    stream = parse(b"&a [*a, 1]\n")
    root = stream.documents[0]
    assert stream.recursive and isinstance(root, Sequence) and root.items[0] is root
    assert [n for _, n in walk(root)] == [root, root.items[1]]


@pytest.mark.parametrize("opening", [b"[", b"{a: "])
def test_deep_nesting_is_a_depth_limit(opening: bytes) -> None:
    with pytest.raises(YamlLimit) as raised:
        parse(opening * 5000)
    assert raised.value.limit == "max_depth"


def test_deep_block_nesting_is_a_depth_limit() -> None:
    data = b"".join(b"  " * i + b"k:\n" for i in range(300))
    with pytest.raises(YamlLimit) as raised:
        parse(data)
    assert raised.value.limit == "max_depth"


def test_node_and_byte_bounds() -> None:
    with pytest.raises(YamlLimit) as raised:
        parse(b"- a\n" * 2000, YamlLimits(max_nodes=1000))
    assert raised.value.limit == "max_nodes"
    with pytest.raises(YamlLimit) as raised:
        parse(b"a: b\n" * 100, YamlLimits(max_bytes=100))
    assert raised.value.limit == "max_bytes"


@pytest.mark.parametrize("data", [b"a: [1, 2\nb: c\n", b"*nowhere\n", b"a: \xff\xfe\x00\n"])
def test_malformed_yaml_is_a_syntax_problem(data: bytes) -> None:
    with pytest.raises(YamlSyntax):
        parse(data)


def test_several_documents_and_complex_keys() -> None:
    stream = parse(b"---\na: 1\n---\n? [x, y]\n: z\n")
    assert len(stream.documents) == 2
    second = stream.documents[1]
    assert isinstance(second, Mapping)
    paths = [path for path, _ in walk(second)]
    assert ("{key}",) in paths and ("{key}", "[0]") in paths
