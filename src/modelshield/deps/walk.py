"""Following dependencies transitively: resolve each one, scan its files with the normal engine, and
give the file that names it a DEP004 finding as severe as the worst finding found behind it.

Bounded on hostile input: the chain length (`max-dependency-depth`), the dependencies followed in one
scan (`max-dependencies`) and the files scanned per dependency; cycles are recorded, not followed.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import NamedTuple, Protocol

from modelshield.core.dependencies import Dependency, Edge, Graph, Node
from modelshield.core.dependency_rules import DEPENDENCY_FINDINGS, NOT_SCANNED
from modelshield.core.files import Skipped, inside, walk_files
from modelshield.core.findings import Finding, Location
from modelshield.core.policy import Policy
from modelshield.core.remote_code import analyse_modules, code_finding
from modelshield.core.report import FileResult
from modelshield.core.rules import Severity
from modelshield.deps.resolve import Resolution, resolve

#: Files scanned for one dependency: model repositories hold tens of files, rarely thousands.
MAX_FILES_PER_DEPENDENCY = 10_000

ScanFiles = Callable[[list[str]], list[FileResult]]


class RemoteResolver(Protocol):
    """Where remote targets are laid out (`modelshield.sources.scan.RemoteScan`): the dependencies of a
    remote file are resolved remotely, and its relative paths only inside its own target."""

    def owns(self, path: str) -> bool: ...

    def folder_of(self, path: str) -> str: ...

    def resolve(self, dependency: Dependency) -> Resolution: ...


class _Origin(NamedTuple):
    """Where a dependency is named: the node and file, the finding, and the chain of nodes to it."""

    node: Node
    depth: int
    chain: tuple[str, ...]
    namer: FileResult
    finding: Finding


def _model_folder(path: str) -> bool:
    return os.path.isfile(path) or os.path.isfile(os.path.join(path, "config.json"))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Walker:
    """One scan's dependency graph; `results` collects the files scanned for dependencies."""

    def __init__(
        self, policy: Policy, scan_files: ScanFiles, download: bool = False, remote: RemoteResolver | None = None
    ) -> None:
        self.policy = policy
        self.remote = remote
        self.scan_files = scan_files
        self.download = download
        self.graph = Graph()
        self.results: list[FileResult] = []
        self._by_real: dict[str, FileResult] = {}
        self._by_key: dict[str, Node] = {}
        self._namers: dict[Edge, FileResult] = {}
        self._analysed: set[str] = set()
        self._followed: set[str] = set()  # files whose findings were followed (each once)
        self._count = 0  # dependencies resolved and scanned
        self._queue: deque[tuple[Node, int, tuple[str, ...]]] = deque()

    def follow(self, roots: Iterable[str], scanned: list[FileResult]) -> Graph:
        """Follow every dependency recorded in `scanned` (the files under `roots`), transitively."""
        for result in scanned:
            self._by_real.setdefault(os.path.realpath(result.path), result)
        for root in roots:
            node = self._node(root, "root", "root", path=root)
            node.files = [r.path for r in scanned if _under(os.path.abspath(r.path), os.path.abspath(root))]
            self._by_key[os.path.realpath(root)] = node
            self._queue.append((node, 0, (node.id,)))
        while self._queue:
            node, depth, chain = self._queue.popleft()
            for path in node.files:
                real = os.path.realpath(path)
                if real in self._followed:
                    continue
                self._followed.add(real)
                result = self._by_real[real]
                for finding in [*result.findings, *(f for f, _ in result.suppressed)]:
                    if finding.rule in (NOT_SCANNED, DEPENDENCY_FINDINGS):
                        continue  # this walk's own findings, which repeat a dependency's details
                    dependency = Dependency.from_details(finding.details)
                    if dependency is not None:
                        self._link(_Origin(node, depth, chain, result, finding), dependency)
        self._propagate()
        return self.graph

    def _node(
        self,
        ref: str,
        kind: str,
        resolution: str,
        *,
        revision: str | None = None,
        path: str | None = None,
        detail: str = "",
    ) -> Node:
        node = Node(f"n{len(self.graph.nodes)}", ref, kind, resolution, revision, path, detail or None)
        self.graph.nodes.append(node)
        return node

    def _edge(self, origin: _Origin, target: Node, role: str, cycle: bool = False) -> None:
        edge = Edge(origin.node.id, target.id, role, str(origin.finding.location), origin.finding.rule_id, cycle)
        if edge not in self._namers:
            self.graph.edges.append(edge)
            self._namers[edge] = origin.namer

    def _not_scanned(self, origin: _Origin, text: str, severity: Severity) -> None:
        if self.policy.fail_on_unresolved_dependencies:
            severity = Severity.HIGH
        finding = Finding(NOT_SCANNED, origin.finding.location, text, severity, dict(origin.finding.details))
        origin.namer.record(finding, self.policy)

    def _link(self, origin: _Origin, dep: Dependency) -> None:
        """Resolve one dependency named in a file, and scan and queue it unless known or out of bounds."""
        limits = self.policy.limits
        resolution = None
        if dep.kind == "hub" and self.policy.trusts(dep.ref):
            status, why = "trusted", "listed in the policy's trusted-models"
        elif origin.depth >= limits.max_dependency_depth:
            status, why = "not followed", f"beyond max-dependency-depth={limits.max_dependency_depth}"
        else:
            resolution = self._resolve(dep, origin.namer.path)
            status, why = resolution.status, resolution.reason or ""
            if not dep.required and resolution.path and not _model_folder(resolution.path):
                # An origin a config merely records: scanning any folder it names would let a config
                # point the scan at the user's home; a model folder (with its config.json) is followed.
                resolution, status, why = None, "not followed", "an origin that is not a model folder"
        if resolution is None or resolution.path is None:
            node = self._node(dep.ref, dep.kind, status, revision=dep.revision, detail=why)
            self._edge(origin, node, dep.role)
            if dep.required and status != "trusted":
                serious = status == "not followed" or (
                    resolution is not None and (resolution.suspicious or resolution.failed)
                )
                severity = Severity.MEDIUM if serious else Severity.LOW
                self._not_scanned(origin, f"{dep.label}: {why}", severity)
            return
        key = os.path.realpath(resolution.path)
        known = self._by_key.get(key)
        if (
            known is None
            and os.path.isdir(resolution.path)
            and _under(os.path.abspath(origin.namer.path), os.path.abspath(resolution.path))
        ):
            known = origin.node  # the model naming itself (a downloaded model's origin is its own repository)
        if known is not None:
            self._edge(origin, known, dep.role, known.id in origin.chain)
            self._remote_code(dep, known)
            return
        if self._count >= limits.max_dependencies:
            why = "beyond max-dependencies"
            node = self._node(dep.ref, dep.kind, "not followed", revision=dep.revision, detail=why)
            self._edge(origin, node, dep.role)
            text = f"{dep.label}: more than max-dependencies={limits.max_dependencies} dependencies in this scan"
            self._not_scanned(origin, text, Severity.MEDIUM)
            return
        node = self._node(dep.ref, dep.kind, resolution.status, revision=dep.revision, path=resolution.path)
        self._by_key[key] = node
        self._count += 1
        self._edge(origin, node, dep.role)
        problem = self._scan(node, resolution)
        if problem:
            self._not_scanned(origin, f"{dep.label}: {problem}", Severity.MEDIUM)
        self._remote_code(dep, node)
        self._queue.append((node, origin.depth + 1, (*origin.chain, node.id)))

    def _resolve(self, dep: Dependency, naming_file: str) -> Resolution:
        remote = self.remote
        if remote is None or not remote.owns(naming_file):
            return resolve(dep, naming_file, self.download and dep.required)
        if dep.kind == "hub":
            return remote.resolve(dep)
        found = resolve(dep, naming_file)
        if found.path is not None and not inside(found.path, remote.folder_of(naming_file)):
            return Resolution("unresolved", reason=f"{dep.ref!r} lies outside the remote repository that names it")
        return found._replace(root=remote.folder_of(naming_file)) if found.path is not None else found

    def _scan(self, node: Node, resolution: Resolution) -> str | None:
        """Scan the dependency's files not scanned yet; why some were not scanned, if any were not."""
        path = resolution.path
        assert path is not None
        skipped: list[Skipped] = []
        names = list(islice(walk_files(path, skipped), MAX_FILES_PER_DEPENDENCY + 1)) if os.path.isdir(path) else [path]
        if len(names) > MAX_FILES_PER_DEPENDENCY:
            return f"more than {MAX_FILES_PER_DEPENDENCY} files; not scanned"
        root = resolution.root
        escaped = [n for n in names if root is not None and not inside(n, root)]
        node.files = [n for n in names if n not in escaped]
        fresh = list({os.path.realpath(n): n for n in node.files if os.path.realpath(n) not in self._by_real}.values())
        for result in self.scan_files(fresh):
            self._by_real[os.path.realpath(result.path)] = result
            self.results.append(result)
        problems = [s.reason for s in skipped[:3]]
        if escaped:
            shown = ", ".join(f"{os.path.relpath(n, path)} -> {os.path.realpath(n)}" for n in escaped[:3])
            problems.insert(
                0, f"{len(escaped)} file(s) link outside the Hugging Face cache and were not scanned: {shown}"
            )
        if len(skipped) > 3:
            problems.append(f"{len(skipped) - 3} more path(s) not read")
        return "; ".join(problems) or None

    def _remote_code(self, dep: Dependency, node: Node) -> None:
        """Analyse the code files a remote-code dependency names, once, at those files."""
        if not dep.files or node.path is None or not os.path.isdir(node.path):
            return
        modules = [f.removesuffix(".py").replace("/", ".") for f in dep.files]
        problems, analysed = analyse_modules(node.path, modules)
        for name in analysed:
            real = os.path.realpath(os.path.join(node.path, name))
            result = self._by_real.get(real)
            if result is None or real in self._analysed:
                continue
            self._analysed.add(real)
            mine = [p for p in problems if p.file == name]
            result.record(code_finding(Location(result.path), f"remote code of {dep.ref} ({name})", mine), self.policy)
            result.is_model = True

    def _propagate(self) -> None:
        """Give each naming file a DEP004 finding for the worst behind each of its links (children first),
        then set every node's verdict."""
        done: dict[str, tuple[Severity | None, str]] = {}

        def worst(node: Node, active: set[str]) -> tuple[Severity | None, str]:
            if node.id in done:
                return done[node.id]
            active.add(node.id)
            for edge in self.graph.children(node.id):
                if edge.cycle or edge.target in active:
                    continue
                target = self.graph.node(edge.target)
                severity, chain = worst(target, active)
                if severity is not None and severity >= Severity.LOW:
                    namer = self._namers[edge]
                    label = f"{edge.role} {target.ref}" + (f"@{target.revision}" if target.revision else "")
                    text = f"{os.path.basename(namer.path)} -> {label} -> {chain}"
                    location = Location(namer.path)
                    namer.record(Finding(DEPENDENCY_FINDINGS, location, text, severity, {"chain": text}), self.policy)
            active.discard(node.id)
            findings = [f for path in node.files for f in self._by_real[os.path.realpath(path)].findings]
            top = max(findings, key=lambda f: f.level, default=None)
            if top is None:
                done[node.id] = (None, "")
            elif top.rule is DEPENDENCY_FINDINGS:
                done[node.id] = (top.level, top.evidence)
            else:
                done[node.id] = (top.level, f"{os.path.basename(top.location.path)}: {top.evidence}")
            node.verdict = done[node.id][0]
            return done[node.id]

        for node in list(self.graph.nodes):
            worst(node, set())
