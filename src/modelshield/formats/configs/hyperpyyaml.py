"""HyperPyYAML and SpeechBrain: the names `load_hyperpyyaml` imports and calls, the files it includes,
and the models a SpeechBrain `hyperparams.yaml` fetches.

Read from `hyperpyyaml/core.py` (1.2): `!new:`, `!name:`, `!module:`, `!apply:` are multi-constructors
resolving their suffix with `pydoc.locate`; `!applyref:` is called while references are resolved (before
loading); `!ref`/`!copy` `<key[sub].attr>` become `!apply:getattr [node, attr]` when they name an
attribute; `!include:file` loads another YAML relative to this one; tuple strings `(...)` are parsed
with PyYAML's unsafe `yaml.Loader`. SpeechBrain's `Pretrainer` (speechbrain/utils/parameter_transfer.py)
fetches each `paths:` entry with `split_path`: `org/repo/file` is a file of a Hub repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from modelshield.core.callables import judge, judge_target
from modelshield.core.dependencies import Dependency, named
from modelshield.core.rules import Severity
from modelshield.formats.configs.yaml_rules import HYPERPYYAML_TAG, Problem
from modelshield.formats.configs.yaml_tree import Mapping, Node, Scalar, text_of, walk

#: Tag prefixes whose suffix is a Python name, and what the loader does with it.
CALLING_TAGS = {
    "!new:": "creates an instance of",
    "!apply:": "calls",
    "!applyref:": "calls (while resolving references)",
    "!name:": "imports (and calls with arguments, as a partial)",
    "!module:": "imports the module",
}
INCLUDE_TAG = "!include:"
REFERENCE_TAGS = frozenset({"!ref", "!copy"})
_REFERENCE = re.compile(r"<([^>]*)>")
PRETRAINER = "speechbrain.utils.parameter_transfer.Pretrainer"
#: SpeechBrain classes whose `source:` is a Hub repository they download (its transformers wrappers).
_HUB_SOURCE = re.compile(r"speechbrain\.(lobes\.models\.(huggingface_transformers|huggingface_wav2vec)|integrations)\.")
MAX_PROBLEMS = 200


@dataclass
class HyperAnalysis:
    problems: list[Problem] = field(default_factory=list)
    dependencies: list[tuple[Dependency, int]] = field(default_factory=list)
    framework: dict[str, int] = field(default_factory=dict)
    #: plain scalars `(...)` HyperPyYAML parses as tuples with PyYAML's unsafe loader, by line
    tuples: list[tuple[str, int, str]] = field(default_factory=list)
    tags: int = 0


def analyse(root: Node) -> HyperAnalysis:
    result = HyperAnalysis()
    for path, node in walk(root, keys=True):
        tag = node.tag or ""
        where = ".".join(path) or "(top level)"
        prefix = next((p for p in CALLING_TAGS if tag.startswith(p)), None)
        if prefix is not None:
            result.tags += 1
            _calling(result, prefix, tag[len(prefix) :], where, node)
            if tag == "!new:" + PRETRAINER and isinstance(node, Mapping):
                _pretrainer(result, node, root)
            elif _HUB_SOURCE.match(tag[len(prefix) :]) and isinstance(node, Mapping):
                source = _resolved(node.get("source"), root)
                _depend(result, named(source, "SpeechBrain Hub source"), node.line)
        elif tag.startswith(INCLUDE_TAG):
            result.tags += 1
            _depend(result, named(tag[len(INCLUDE_TAG) :], "HyperPyYAML !include", hub=False), node.line)
        elif tag in REFERENCE_TAGS and isinstance(node, Scalar):
            result.tags += 1
            _reference(result, node, where)
        inner = tuple_text(node)
        if inner is not None:
            result.tuples.append((inner, node.line, where))
    return result


def tuple_text(node: Node) -> str | None:
    """`[...]` for a tuple string `(...)` that carries a tag (`!tuple`, or a plain scalar HyperPyYAML's
    implicit resolver tags): `_make_tuple` loads it with PyYAML's unsafe `yaml.Loader`."""
    if not isinstance(node, Scalar) or not (node.tag == "!tuple" or (node.plain and node.tag is None)):
        return None
    text = node.value.strip()
    if text.startswith("(") and text.endswith(")") and "!" in text:
        return "[" + text[1:-1] + "]"
    return None


def _calling(result: HyperAnalysis, prefix: str, name: str, where: str, node: Node) -> None:
    if not name:
        return  # HyperPyYAML raises on an empty name
    verdict = judge(name, "") if prefix == "!module:" else judge_target(name)
    if verdict.severity is Severity.INFO:
        result.framework[name] = result.framework.get(name, 0) + 1
        return
    evidence = f"{where}: {prefix}{name} {CALLING_TAGS[prefix]} {name}; {verdict.reason}"
    _add(result, Problem(HYPERPYYAML_TAG, verdict.severity, evidence, node.line, {"target": name}))


def _reference(result: HyperAnalysis, node: Scalar, where: str) -> None:
    """`<key.attr>` is `getattr(key's object, 'attr')`: a private or dunder attribute walks out of it."""
    for ref in _REFERENCE.findall(node.value):
        _, dot, attr = ref.partition(".")
        if dot and any(part.startswith("_") for part in attr.split(".")):
            evidence = f"{where}: {node.tag} <{ref}> reads attribute '{attr}' with getattr (a private or dunder walk)"
            _add(result, Problem(HYPERPYYAML_TAG, Severity.CRITICAL, evidence, node.line, {"reference": ref}))


def _pretrainer(result: HyperAnalysis, node: Mapping, root: Node) -> None:
    """Each `paths:` entry is fetched: `org/repo/file.ckpt` from the Hub, a URL, or a local path."""
    paths = node.get("paths")
    if not isinstance(paths, Mapping):
        return
    for key, value in paths.pairs[:64]:
        text = _resolved(value, root)
        if not text:
            continue
        source, _, filename = text.rpartition("/")
        dependency = named(source, f"SpeechBrain Pretrainer {text_of(key)}", hub=True, files=[filename])
        if dependency is not None and dependency.kind == "path":
            dependency = named(text, f"SpeechBrain Pretrainer {text_of(key)}", hub=False)
        _depend(result, dependency, value.line)


def _resolved(value: Node | None, root: Node, depth: int = 0) -> str | None:
    """A scalar's text with `!ref <key>` references replaced by the scalars they name (None when a
    reference names no scalar)."""
    text = text_of(value)
    if text is None or depth > 8:
        return None
    if value is not None and value.tag not in REFERENCE_TAGS:
        return text
    out = text
    for ref in _REFERENCE.findall(text):
        target = _lookup(root, ref)
        replacement = _resolved(target, root, depth + 1) if isinstance(target, Scalar) else None
        if replacement is None:
            return None
        out = out.replace(f"<{ref}>", replacement, 1)
    return out


def _lookup(root: Node, ref: str) -> Node | None:
    """The node `key[sub][subsub]` names (HyperPyYAML's `deref`, without the attribute part)."""
    node: Node | None = root
    for part in ref.partition(".")[0].split("["):
        key = part.strip("]").strip()
        node = node.get(key) if isinstance(node, Mapping) else None
        if node is None:
            return None
    return node


def _depend(result: HyperAnalysis, dependency: Dependency | None, line: int) -> None:
    if dependency is not None and all(dependency != d for d, _ in result.dependencies):
        result.dependencies.append((dependency, line))


def _add(result: HyperAnalysis, problem: Problem) -> None:
    if len(result.problems) < MAX_PROBLEMS:
        result.problems.append(problem)
