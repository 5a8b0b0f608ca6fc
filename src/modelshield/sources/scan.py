"""Scanning remote targets with the engine and handlers that scan local files.

Each target gets a shadow folder on disk with one entry per remote file, under the file's own name: a
sparse file of the right size (never read; the engine reads the remote bytes through a `RangeSource`),
or, for Python files small enough for the remote-code analysis, the file itself. Analysers that look at a
file's siblings (remote code named by `config.json`, ONNX external data, safetensors shards) and the
dependency walk therefore see the repository exactly as they would see a download of it, so a remote
verdict equals the local one. Reports name the remote objects: `relocate` swaps each shadow folder for
its target's root (`hf://org/name@<commit>`) in every path, evidence and dependency edge.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from modelshield.core.dependencies import Dependency, Graph
from modelshield.core.engine import Engine, failure_finding
from modelshield.core.errors import ScanError
from modelshield.core.findings import Finding, Location
from modelshield.core.policy import Policy
from modelshield.core.remote_code import MAX_FILE_BYTES
from modelshield.core.report import FileResult, ScannedObject
from modelshield.deps.resolve import Resolution
from modelshield.registry import HANDLERS
from modelshield.sources import RemoteFile, RemoteInputError, Target
from modelshield.sources.cache import VerdictCache
from modelshield.sources.http import DEFAULT_BUDGET, Counter, shared_client

#: Files fetched whole into the shadow folder: the code a config names is read by the remote-code analyser.
_WHOLE_SUFFIXES = (".py",)
#: Files listed for one target (a Hub repository holds tens, rarely thousands).
MAX_FILES_PER_TARGET = 100_000


class RemoteScan:
    """The remote targets of one scan, their shadow folders, and the shared HTTP client."""

    def __init__(
        self, policy: Policy, *, jobs: int | None = None, budget: int | None = None, cache: VerdictCache | None = None
    ) -> None:
        self.policy = policy
        self.jobs = max(1, min(jobs or 8, 32))
        self.budget = budget or DEFAULT_BUDGET
        self.cache = cache
        self.client = shared_client()
        self.shadow = tempfile.mkdtemp(prefix="modelshield-remote-")
        self.targets: list[Target] = []
        self.requests = 0
        self._files: dict[str, tuple[Target, RemoteFile, Counter | None]] = {}
        self._by_root: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None

    def close(self) -> None:
        shutil.rmtree(self.shadow, ignore_errors=True)

    def __enter__(self) -> RemoteScan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, uri: str) -> str:
        """List a target and lay out its shadow folder; the shadow path of what `uri` asked for."""
        from modelshield.sources.uri import target  # noqa: PLC0415 - the stores import optional clients

        found = target(uri, self.client)
        self.requests += found.requests
        if len(found.files) > MAX_FILES_PER_TARGET:
            raise RemoteInputError(f"{found.root} holds more than {MAX_FILES_PER_TARGET} files; scan a narrower path")
        folder = self._by_root.get(found.root)
        if folder is None:
            folder = os.path.join(self.shadow, str(len(self.targets)))
            self.targets.append(found)
            self._by_root[found.root] = folder
            self._pattern = None
            for remote in found.files:
                try:
                    self._lay_out(found, remote, folder)
                except OSError as exc:  # `a` listed as a file and as a folder (`a/b`): no loader sees both
                    raise RemoteInputError(
                        f"{found.root} lists {remote.name!r}, which cannot be laid out: {exc}"
                    ) from None
        return os.path.join(folder, *found.select.split("/")) if found.select else folder

    def _lay_out(self, target: Target, remote: RemoteFile, folder: str) -> None:
        local = os.path.join(folder, *remote.name.split("/"))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        counter = None
        if remote.name.endswith(_WHOLE_SUFFIXES) and 0 <= remote.size <= MAX_FILE_BYTES:
            counter = Counter(self.budget)
            try:
                source = remote.open(counter)
                data = source.read_at(0, source.size)
            except ScanError:
                data = None  # scanned remotely instead, where the failure becomes its finding
            if data is not None and len(data) == remote.size:
                with open(local, "wb") as handle:
                    handle.write(data)
            else:
                counter = None
        if counter is None:
            with open(local, "wb") as handle:
                handle.truncate(max(remote.size, 0))
        self._files[local] = (target, remote, counter)

    def owns(self, path: str) -> bool:
        """Whether a path lies in a target's shadow folder (a remote file, or a name inside a remote target)."""
        return path.startswith(self.shadow + os.sep)

    def folder_of(self, path: str) -> str:
        """The shadow folder of the target `path` lies in."""
        return os.path.join(self.shadow, os.path.relpath(path, self.shadow).split(os.sep)[0])

    def files_under(self, root: str) -> list[str]:
        """The shadow paths of the remote files at or under `root`, in listing order."""
        return [p for p in self._files if p == root or p.startswith(root + os.sep)]

    def resolve(self, dependency: Dependency) -> Resolution:
        """A Hub dependency of a remote model, listed and laid out remotely (for the dependency walk)."""
        from modelshield.sources.hf import dependency_uri  # noqa: PLC0415

        uri = dependency_uri(dependency)
        try:
            folder = self.add(uri)
        except (RemoteInputError, RuntimeError) as exc:
            return Resolution("unresolved", reason=str(exc), failed=True)
        return Resolution("remote", folder, root=folder)

    def scan(self, paths: list[str], progress: Callable[[FileResult], None] | None = None) -> list[FileResult]:
        """Scan shadow paths (in order), several files at once."""
        with ThreadPoolExecutor(max_workers=min(self.jobs, max(1, len(paths)))) as pool:
            results = []
            for result in pool.map(self._scan_one, paths):
                results.append(result)
                if progress:
                    progress(result)
        return results

    def _scan_one(self, path: str) -> FileResult:
        target, remote, counter = self._files[path]
        info: dict[str, Any] = {
            "uri": f"{target.root}/{remote.name}",
            "revision": target.revision,
            "digest": remote.digest,
            "bytes_fetched": 0,
            "requests": 0,
            "cached": False,
        }
        if self.cache is not None and remote.digest is not None:
            hit = self.cache.get(remote.digest, remote.name, self.policy, path)
            if hit is not None:
                hit.remote = {**info, "cached": True}
                return hit
        engine = Engine(HANDLERS, self.policy)
        if counter is not None:  # fetched whole already (small code files)
            result = engine.scan_file(path)
        else:
            counter = Counter(self.budget)
            result = self._scan_remote(engine, remote, counter, path)
        result.remote = {**info, "bytes_fetched": counter.received, "requests": counter.requests}
        return result

    def _scan_remote(self, engine: Engine, remote: RemoteFile, counter: Counter, path: str) -> FileResult:
        source = None
        try:
            source = remote.open(counter)
            source.head()  # read outside any analyser: its failure is this file's finding, below
            result = engine.scan_source(source, path)
        except ScanError as exc:  # the engine reports errors inside analysers itself; this is the transfer's
            result = FileResult(path, size=max(remote.size, 0), is_model=True)
            result.record(failure_finding(Location(path), exc), self.policy)
            return result
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
        if getattr(source, "error", None) is None and self.cache is not None and remote.digest is not None:
            self.cache.put(remote.digest, remote.name, self.policy, result)
        return result

    # -- reports name the remote objects ---------------------------------------------------------------

    def _swap(self, text: str) -> str:
        if self._pattern is None:
            self._pattern = re.compile(re.escape(self.shadow + os.sep) + r"(\d+)")
        roots = [t.root for t in self.targets]
        return self._pattern.sub(lambda m: roots[int(m.group(1))], text) if self.shadow in text else text

    def _deep(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._swap(value)
        if isinstance(value, dict):
            return {k: self._deep(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._deep(v) for v in value]
        return value

    def _finding(self, f: Finding) -> Finding:
        loc = Location(self._swap(f.location.path), f.location.members, f.location.offset)
        return Finding(f.rule, loc, self._swap(f.evidence), f.severity, self._deep(f.details))

    def relocate(self, results: list[FileResult], graph: Graph | None) -> None:
        """Name remote objects by their URIs in results and the dependency graph (in place)."""
        for result in results:
            result.path = self._swap(result.path)
            result.findings = [self._finding(f) for f in result.findings]
            result.suppressed = [(self._finding(f), s) for f, s in result.suppressed]
            result.objects = [ScannedObject(self._swap(o.location), o.format) for o in result.objects]
            if result.error:
                result.error = self._swap(result.error)
        if graph is None:
            return
        for node in graph.nodes:
            node.path = self._swap(node.path) if node.path else node.path
            node.detail = self._swap(node.detail) if node.detail else node.detail
            node.files = [self._swap(f) for f in node.files]
        graph.edges[:] = [e._replace(location=self._swap(e.location)) for e in graph.edges]

    def summary(self) -> dict[str, Any]:
        return {
            "targets": [{"uri": t.uri, "root": t.root, "revision": t.revision} for t in self.targets],
            "listing_requests": self.requests,
        }
