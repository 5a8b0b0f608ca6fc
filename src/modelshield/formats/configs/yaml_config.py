"""YAML configs that make their loader run code: PyYAML python tags, Hydra/OmegaConf/NeMo
instantiation and resolvers, HyperPyYAML/SpeechBrain tags, and the models they name.

Recognised by content: text that contains what one of those loaders acts on (an explicit tag, a
`_target_`, an interpolation, a NeMo `target`/`cls`, anchors) and composes as YAML through the bounded
reader (`yaml_tree`). Plain YAML (CI workflows, model cards' metadata, data files) is not claimed, and
JSON is left to the JSON analysers. A `.nemo` archive is a tar that the container walker opens, so its
`model_config.yaml` is judged here with its member location and its checkpoints by their own analysers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from modelshield.core.callables import judge, judge_target
from modelshield.core.dependencies import Dependency
from modelshield.core.dependency_rules import DEPENDENCY
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Severity
from modelshield.core.scan_rules import NOT_ANALYSED
from modelshield.core.source import Source
from modelshield.formats.configs import hydra, hyperpyyaml
from modelshield.formats.configs.yaml_rules import (
    HYDRA_TARGET,
    HYPERPYYAML_TAG,
    PYYAML_TAG,
    YAML_BOUNDS,
    YAML_RULES,
    Problem,
)
from modelshield.formats.configs.yaml_tree import (
    Mapping,
    Node,
    Scalar,
    YamlLimit,
    YamlLimits,
    YamlStream,
    YamlSyntax,
    core_tag,
    parse,
    text_of,
    walk,
)

LIMITS = YamlLimits()
#: What a code-running YAML loader acts on: explicit tags (`!!python/...`, `!new:`, verbatim `!<...>`,
#: `%TAG` handles, `%`-escaped tags), Hydra's `_target_`, OmegaConf interpolations and NeMo's
#: `target`/`cls` keys. Each is a literal or starts with one, so the search runs at memory speed (a
#: pattern that starts with a character class costs seconds on 16 MiB of `[`).
#: Escapes in double-quoted scalars spell any of them (`"\x5ftarget_"`), so escaped text is parsed too.
_NEEDLES = (b"_target_", b"${", b"%TAG", b"target:", b"cls:", b"\\x", b"\\u", b"\\U")
#: PyYAML and libyaml read UTF-16 when it starts with a byte order mark (UTF-32 they reject).
_UTF16 = (b"\xff\xfe", b"\xfe\xff")
_TAG = re.compile(rb"![!<A-Za-z%]")
#: Anchors and aliases (an alias bomb needs both).
_ANCHOR = re.compile(rb"&[^\s,\[\]{}]")
_ALIAS = re.compile(rb"\*[^\s,\[\]{}]")
#: The head of a file too large to parse looks like YAML when its first significant line is a
#: mapping key, a sequence item, a document marker or a directive (or the head is all comments).
_YAML_LINE = re.compile(rb"(?:%YAML|%TAG|---|- |[\w\"'.-]+\s*:(?:\s|$))")
CHUNK = 8 * 1024 * 1024
_JSON_START = (b"{", b"[")
_LEADING = b"\xef\xbb\xbf \t\r\n"
#: PyYAML python tags that import (and, but for `name`/`module`, call) the name after the colon.
_PYTHON_CALLS = {
    "python/object/apply:": "calls",
    "python/object/new:": "calls (as cls.__new__ with the node's arguments, then sets state)",
    "python/object:": "creates an instance of (without __init__) and sets its state on",
    "python/name:": "imports and returns",
    "python/module:": "imports the module",
}
#: Python tags of PyYAML's FullLoader that only build values (`python/tuple`, `python/bytes`...).
_PYTHON_VALUES = frozenset(
    "python/none python/bool python/str python/unicode python/bytes python/int python/long python/float "
    "python/complex python/list python/tuple python/dict".split()
)


#: Names after the tags and keys that import and call them, read from raw bytes when composing stopped.
_RAW_NAMES = re.compile(
    rb"(?:!!python/(?:object/apply|object/new|object|name|module):|!(?:new|apply|applyref|name|module):"
    rb"|_target_:[ \t]*['\"]?)([A-Za-z_][\w.]{0,200})"
)


@dataclass
class Reading:
    """One YAML file, composed (or how composing stopped), and whether a loader would act on it;
    `raw` keeps the bytes when composing stopped at a bound, for the names they show."""

    stream: YamlStream | None
    problem: YamlLimit | YamlSyntax | None
    acts: bool
    raw: bytes = b""


def read(source: Source) -> Reading | None:
    """The file as a YAML config a loader acts on, or None if it is not one (cheap checks first).

    Read as a stream, never by size or random access: a decoded member would otherwise be decoded
    (and buffered) whole before the first check."""
    head = source.head(4096)
    utf16 = head.startswith(_UTF16)
    if not head or (not utf16 and (b"\x00" in head or _binary(head))):
        return None
    stream = source.stream()
    data = stream.read(LIMITS.max_bytes + 1)
    if utf16:  # what the parser reads, as UTF-8 for the marker search (never larger than the UTF-16)
        try:
            data = data.decode("utf-16").encode("utf-8")
            head = data[:4096]
        except UnicodeDecodeError:
            return None
    if len(data) > LIMITS.max_bytes:
        # Too large to be a config: claimed (and reported) when it starts like YAML and holds a tag, a
        # target or anchors and aliases anywhere (a payload after megabytes of comments must not pass).
        if not _looks_like_yaml(head):
            return None
        found = _oversized_marker(data, stream)
        if found is None:
            return None
        over = YamlLimit("max_bytes", f"YAML of more than max_bytes={LIMITS.max_bytes} bytes")
        return Reading(None, over, True, found)
    if not _candidate(data):
        return None
    json_text = data.lstrip(_LEADING).startswith(_JSON_START) and _is_json(data)
    if json_text and b'"_target_"' not in data and b"${" not in data:
        return None  # JSON that no OmegaConf loader acts on is left to the JSON analysers
    try:
        composed = parse(data, LIMITS)
    except YamlLimit as exc:
        # Large JSON (tokenizer vocabularies hold `${`) is data unless it names a target.
        return Reading(None, exc, True, data) if not json_text or b'"_target_"' in data else None
    except YamlSyntax:
        return None  # no YAML loader reads it either
    return Reading(composed, None, any(_acts(doc) for doc in composed.documents))


def _candidate(data: bytes) -> bool:
    if any(needle in data for needle in _NEEDLES) or _TAG.search(data) is not None:
        return True
    return _ANCHOR.search(data) is not None and _ALIAS.search(data) is not None


def _looks_like_yaml(head: bytes) -> bool:
    for line in head.splitlines()[:64]:
        text = line.strip()
        if text and not text.startswith(b"#"):
            return _YAML_LINE.match(text) is not None
    return True  # only comments (or blank lines) so far


def _oversized_marker(first: bytes, rest: BinaryIO) -> bytes | None:
    """The chunk of an oversized file that holds a tag, a `_target_` or both an anchor and an alias
    (chunks overlap, so a marker cut by a boundary is still seen)."""
    chunk, anchors, aliases = first, False, False
    while chunk:
        if b"_target_" in chunk or _TAG.search(chunk) is not None:
            return chunk
        anchors = anchors or _ANCHOR.search(chunk) is not None
        aliases = aliases or _ALIAS.search(chunk) is not None
        if anchors and aliases:
            return chunk
        more = rest.read(CHUNK)
        chunk = chunk[-256:] + more if more else b""
    return None


def _binary(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 4  # a character cut by the head's end is still text
    return False


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return False
    return True


def _acts(root: Node) -> bool:
    """Whether a code-running loader would act on the document: an explicit tag other than the core
    schema's value tags, or, in a mapping config, a `_target_`, a NeMo class path or an interpolation."""
    for _, node in walk(root, keys=True):
        if node.tag is not None and node.tag != "!" and (core_tag(node) or "python/").startswith("python/"):
            return True  # a local tag (`!new:`), or a core tag in the python namespace
        if hyperpyyaml.tuple_text(node) is not None:
            return True
    if not isinstance(root, Mapping):
        return False  # a shell script or prose that happens to compose as one scalar
    if any(text_of(root.get(key)) for key in ("target", "cls")):
        return True
    for _, node in walk(root):
        if isinstance(node, Mapping) and (
            node.get("_target_") is not None or (node.get("params") is not None and text_of(node.get("cls")))
        ):
            return True
        if isinstance(node, Scalar) and hydra.interpolates(node.value):
            return True
    return False


def pyyaml_problems(root: Node, context: str = "") -> Iterator[Problem]:
    """PyYAML python tags that import or call a name, judged with the callable catalogue."""
    for path, node in walk(root, keys=True):
        tag = core_tag(node)
        if tag is None or not tag.startswith("python/") or tag in _PYTHON_VALUES:
            continue
        where = ".".join(path) or "(top level)"
        prefix = next((p for p in _PYTHON_CALLS if tag.startswith(p)), None)
        if prefix is None:
            yield Problem(PYYAML_TAG, Severity.MEDIUM, f"{where}: unknown python tag !!{tag}{context}", node.line)
            continue
        name = tag[len(prefix) :]
        verdict = judge(name, "") if prefix == "python/module:" else judge_target(name)
        severity = max(verdict.severity, Severity.MEDIUM)  # any unsafe-loader tag needs an unsafe loader
        evidence = f"{where}: !!{tag} {_PYTHON_CALLS[prefix]} {name}{context}; {verdict.reason}"
        yield Problem(PYYAML_TAG, severity, evidence, node.line, {"target": name})


def _tuple_problems(text: str, line: int, where: str) -> Iterator[Problem]:
    """A HyperPyYAML tuple string is parsed with PyYAML's unsafe `yaml.Loader`: its tags run too."""
    try:
        stream = parse(text.encode("utf-8"), LIMITS)
    except (YamlLimit, YamlSyntax):
        return
    for doc in stream.documents:
        for problem in pyyaml_problems(doc, " inside a HyperPyYAML tuple string (parsed by yaml.Loader)"):
            yield problem._replace(line=line, evidence=f"{where}{problem.evidence}")


class YamlConfigHandler(Handler):
    name = "yaml-config"
    label = "YAML config (PyYAML, Hydra/OmegaConf/NeMo, HyperPyYAML/SpeechBrain)"
    rules = YAML_RULES
    _last: tuple[Source, Reading] | None = None

    def detect(self, source: Source) -> bool:
        reading = read(source)
        if reading is None or not reading.acts:
            return False
        self._last = (source, reading)  # the scan that follows reuses the composed tree
        return True

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        last, self._last = self._last, None
        reading = last[1] if last is not None and last[0] is source else read(source)
        assert reading is not None
        if reading.problem is not None:
            yield self._bound(ctx, reading.problem, reading.raw)
            return
        assert reading.stream is not None
        stream = reading.stream
        framework: dict[str, int] = {}
        dependencies: list[tuple[Dependency, int]] = []
        for doc in stream.documents:
            problems = list(pyyaml_problems(doc))
            found = hydra.analyse(doc)
            hyper = hyperpyyaml.analyse(doc)
            problems += found.problems + hyper.problems
            for text, line, where in hyper.tuples:
                problems += _tuple_problems(text, line, where)
            for problem in sorted(problems, key=lambda p: p.line):
                evidence = f"line {problem.line}: {problem.evidence}" if problem.line else problem.evidence
                yield ctx.finding(
                    problem.rule, evidence, severity=problem.severity, line=problem.line, **problem.details
                )
            for table in (found.framework, hyper.framework):
                for name, count in table.items():
                    framework[name] = framework.get(name, 0) + count
            dependencies += found.dependencies + hyper.dependencies
        if stream.recursive:
            yield ctx.finding(
                YAML_BOUNDS,
                "an alias refers to a collection that contains it (a recursive structure)",
                severity=Severity.LOW,
            )
        if framework:
            names = sorted(framework)
            shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
            yield ctx.finding(
                HYPERPYYAML_TAG if any(n.startswith("speechbrain") for n in names) else HYDRA_TARGET,
                f"framework and data targets (the loaders' own namespaces): {shown}",
                severity=Severity.INFO,
                targets=names[:64],
            )
        seen: list[Dependency] = []
        for dependency, line in dependencies:
            if dependency in seen or len(seen) >= hydra.MAX_PROBLEMS:
                continue
            seen.append(dependency)
            yield ctx.finding(
                DEPENDENCY, f"line {line}: {dependency.label} ({dependency.kind})", **dependency.details()
            )

    def _bound(self, ctx: Context, problem: YamlLimit | YamlSyntax, raw: bytes) -> Finding:
        """The fail-closed finding; the callables the unanalysed bytes name raise its severity, since a
        loader that survives the bound (or a later part of the file) would call them."""
        if not isinstance(problem, YamlLimit):
            return ctx.finding(NOT_ANALYSED, str(problem))
        where = f"line {problem.line}: " if problem.line else ""
        names = list(
            dict.fromkeys(m[1].decode("ascii", "replace") for m in _RAW_NAMES.finditer(raw[: LIMITS.max_bytes]))
        )
        verdicts = [(name, judge_target(name)) for name in names[:64]]
        worst = max((v.severity for _, v in verdicts), default=Severity.INFO)
        named = [f"{name} ({v.severity.label})" for name, v in verdicts if v.severity > Severity.INFO][:5]
        shown = f"; the text names {', '.join(named)}" if named else ""
        evidence = f"{where}{problem.detail}; not analysed past this point{shown}"
        return ctx.finding(YAML_BOUNDS, evidence, severity=max(worst, YAML_BOUNDS.severity), limit=problem.limit)
