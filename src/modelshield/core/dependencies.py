"""The dependency data types: what a file names (`Dependency`) and the graph a scan builds from them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from modelshield.core.rules import Severity

#: A scheme such as `https://`, `gs://`, `s3://`: fetched by the loader, never by this scanner.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: A Hugging Face repository id, `name` or `org/name` (names of letters, digits, `-`, `_`, `.`).
_HUB_ID = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
#: Prefixes by which timm, open_clip and keras_hub name a Hub repository.
_HUB_PREFIXES = ("hf-hub:", "hf://")
#: Loading calls (last name component) whose first argument is a Hub repository id or a local folder.
_HUB_LOADERS = frozenset(
    {"from_pretrained", "from_single_file", "hf_hub_download", "snapshot_download", "create_model"}
)
MAX_REF_CHARS = 1000


class Dependency(NamedTuple):
    """Something a file tells its loader to load: a Hub repository, a local path or a URL."""

    kind: str  # "hub", "path" or "url"
    ref: str
    revision: str | None = None
    #: how the loader uses it, in words that read well in a chain ("base model", "torch.load")
    role: str = "model"
    #: code files of a remote-code dependency to analyse once it is resolved
    files: tuple[str, ...] = ()
    #: False for a model's recorded origin (`_name_or_path`), which loaders do not need to load it
    required: bool = True

    def details(self) -> dict[str, Any]:
        """`{"dependency": {...}}` for `Finding.details`: one shape for every analyser."""
        return {
            "dependency": {
                "kind": self.kind,
                "ref": self.ref,
                "revision": self.revision,
                "role": self.role,
                "files": list(self.files),
                "required": self.required,
            }
        }

    @classmethod
    def from_details(cls, details: Mapping[str, Any]) -> Dependency | None:
        raw = details.get("dependency")
        if not isinstance(raw, dict) or raw.get("kind") not in ("hub", "path", "url"):
            return None
        ref, revision, role = raw.get("ref"), raw.get("revision"), raw.get("role", "model")
        files = raw.get("files", [])
        if not isinstance(ref, str) or not isinstance(role, str) or not isinstance(files, list):
            return None
        return cls(
            raw["kind"],
            ref,
            revision if isinstance(revision, str) else None,
            role,
            tuple(f for f in files if isinstance(f, str)),
            raw.get("required", True) is not False,
        )

    @property
    def label(self) -> str:
        """`base model evil-org/llama-7b-base@v1`: the link as a chain shows it."""
        return f"{self.role} {self.ref}" + (f"@{self.revision}" if self.revision else "")


def named(
    ref: Any, role: str, revision: Any = None, *, hub: bool = True, required: bool = True, files: Sequence[str] = ()
) -> Dependency | None:
    """The dependency a config value or call argument names, or None if it names nothing.

    `hub=False` for loaders that only read files (torch.load): their argument is a path or a URL.
    Otherwise a string shaped like a repository id is one, as loaders try the Hub for anything that is
    not an existing local folder.
    """
    if not isinstance(ref, str) or not ref.strip() or len(ref) > MAX_REF_CHARS:
        return None
    rev = revision if isinstance(revision, str) and revision else None
    for prefix in _HUB_PREFIXES:
        if ref.startswith(prefix):
            return Dependency("hub", ref[len(prefix) :].strip("/"), rev, role, tuple(files), required)
    if _URL.match(ref):
        return Dependency("url", ref, rev, role, tuple(files), required)
    kind = "hub" if hub and _HUB_ID.match(ref) and not ref.endswith((".py", ".json")) else "path"
    return Dependency(kind, ref, rev, role, tuple(files), required)


def call_dependency(dotted: str, args: Sequence[Any]) -> dict[str, Any]:
    """Details naming what a model-loading call in a pickle loads, from its first constant argument."""
    if not args or not isinstance(args[0], str):
        return {}
    first = args[0]
    last = dotted.rpartition(".")[2]
    if dotted == "torch.hub.load":  # a GitHub repository `owner/repo[:ref]`, or a folder with source='local'
        first = first if first.startswith((".", "/")) or _URL.match(first) else f"https://github.com/{first}"
    dependency = named(first, dotted, hub=last in _HUB_LOADERS)
    return dependency.details() if dependency else {}


@dataclass
class Node:
    """A model in the graph: a scanned path, or a dependency as named, with how it was resolved."""

    id: str
    ref: str
    kind: str  # "root", "hub", "path" or "url"
    resolution: str  # "root", "local", "cached", "downloaded", "unresolved", "trusted", "not followed"
    revision: str | None = None
    path: str | None = None
    detail: str | None = None
    #: the worst unsuppressed finding in the node's files (dependencies' DEP004 included), if any
    verdict: Severity | None = None
    files: list[str] = field(default_factory=list)


class Edge(NamedTuple):
    """`source` names `target` in the finding at `location` (rule `rule_id`)."""

    source: str
    target: str
    role: str
    location: str
    rule_id: str
    #: the target is already on the chain that leads here: a cycle, not followed again
    cycle: bool = False


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def children(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.source == node_id]

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)
