"""The scan engine: identifies each object from its bytes, dispatches it to handlers, recurses
into containers within bounds, and turns every failure into a fail-closed finding."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence

from modelshield.core.errors import LimitExceeded, ScanError
from modelshield.core.files import check_file
from modelshield.core.findings import Finding, Location
from modelshield.core.handler import Context, Handler
from modelshield.core.limits import Meter
from modelshield.core.policy import Policy
from modelshield.core.report import FileResult, ScannedObject
from modelshield.core.rules import Severity
from modelshield.core.scan_rules import (
    EXTENSION_MISMATCH,
    LIMIT_EXCEEDED,
    NOT_ANALYSED,
    PLACEHOLDER,
    POLYGLOT,
    UNRECOGNISED,
)
from modelshield.core.sniff import classify_plain, lfs_pointer, suffix_of
from modelshield.core.source import FileSource, Source

#: Suffixes used for too many things (raw tensor data, GGML, ONNX external data, IDL and SPSS `.sav`) to
#: call unknown content under them suspicious; content of a *recognised* other format is still a mismatch.
AMBIGUOUS_SUFFIXES = frozenset({".bin", ".data", ".dat", ".sav"})
#: Outer suffixes that conventionally follow the real one: `checkpoint.pth.tar` is PyTorch's classic
#: checkpoint name for what `torch.save` writes (a zip or legacy pickle, not a tar).
CONVENTIONAL_OUTER_SUFFIXES = frozenset({".tar"})


#: Work handed to a `--jobs` worker at once: files of at least BATCH_BYTES go alone, smaller ones in
#: batches of up to BATCH_FILES files or BATCH_BYTES bytes, so a folder of thousands of small files
#: costs hundreds of round trips to the workers instead of thousands.
BATCH_FILES = 32
BATCH_BYTES = 1 << 20


def work_order(paths: Sequence[str]) -> list[list[int]]:
    """Batches of indices into `paths`, largest files first (longest processing time first, with size
    standing for cost): the few files that take seconds start at once instead of ending the run alone
    on one worker while the others idle, and the last batches are the smallest files."""
    sizes = []
    for path in paths:
        try:
            sizes.append(os.stat(path).st_size)
        except OSError:
            sizes.append(0)  # reported by the engine
    batches: list[list[int]] = []
    batch: list[int] = []
    held = 0
    for index in sorted(range(len(paths)), key=lambda i: -sizes[i]):
        if batch and (len(batch) == BATCH_FILES or held + sizes[index] > BATCH_BYTES):
            batches.append(batch)
            batch, held = [], 0
        batch.append(index)
        held += sizes[index]
    if batch:
        batches.append(batch)
    return batches


class Engine:
    """Scans one top-level file; holds that file's byte meter and object count."""

    def __init__(self, handlers: Sequence[Handler], policy: Policy) -> None:
        self.handlers = handlers
        self.policy = policy
        self.limits = policy.limits
        self.meter = Meter(policy.limits)
        self.objects: list[ScannedObject] = []
        self._stopped = False

    def scan_file(self, path: str) -> FileResult:
        skipped = check_file(path)
        if skipped is not None:
            return FileResult(path, error=skipped.reason)
        try:
            source = FileSource(path)
        except OSError as exc:
            return FileResult(path, error=f"cannot read {path}: {exc.strerror or exc}")
        try:
            return self.scan_source(source, path)
        finally:
            source.close()

    def scan_source(self, source: Source, path: str) -> FileResult:
        """Scan a top-level object read through any source (a remote file is scanned as a local one),
        reported under `path`."""
        result = FileResult(path)
        started = time.perf_counter()
        result.size = source.size
        seen: set[tuple[str, str, str]] = set()
        for raw in self.scan_object(source, Location(path), 0):
            key = (raw.rule_id, str(raw.location), raw.evidence)
            if key in seen:  # the same error met by a container and again by the member's analyser
                continue
            seen.add(key)
            result.record(raw, self.policy)
        result.objects = self.objects
        if self.objects:
            result.format = self.objects[0].format
        result.is_model = any(o.format not in _PLAIN for o in self.objects) or bool(result.findings)
        result.seconds = time.perf_counter() - started
        return result

    def detect(self, source: Source) -> list[Handler]:
        """Handlers that recognise the bytes (a detector that fails counts as not recognising)."""
        return self._identify(source)[0]

    def _identify(self, source: Source) -> tuple[list[Handler], list[str]]:
        """Recognising handlers, and why any detector could not decide: one failing detector
        (a truncated stream, a bound) must not stop the others from recognising the content."""
        detected: list[Handler] = []
        problems: list[str] = []
        for handler in self.handlers:
            try:
                if handler.detect(source):
                    detected.append(handler)
            except ScanError as exc:
                problems.append(f"{handler.label}: {exc}")
            except Exception as exc:  # fail closed on scanner bugs
                problems.append(f"internal error in the {handler.name} detector: {exc!r}")
        return detected, problems

    def scan_object(self, source: Source, location: Location, depth: int) -> Iterator[Finding]:
        """Identify `source` by content and scan it with every handler that recognises it."""
        yield from self._scan_object(source, location, depth)
        if source.error is not None:  # met while sniffing: reading only a head must not hide it
            yield failure_finding(location, source.error)

    def _scan_object(self, source: Source, location: Location, depth: int) -> Iterator[Finding]:
        if self._stopped:
            return
        if depth > self.limits.max_depth:
            yield Finding(LIMIT_EXCEEDED, location, f"nesting deeper than max_depth={self.limits.max_depth}")
            return
        if len(self.objects) >= self.limits.max_members:
            self._stopped = True
            yield Finding(
                LIMIT_EXCEEDED, location, f"more than max_members={self.limits.max_members} objects in one file"
            )
            return
        name = location.members[-1] if location.members else os.path.basename(location.path)
        pointer = lfs_pointer(source.head())
        if pointer is not None:  # a stand-in for the file, whatever its name: no format's loader reads it
            self.objects.append(ScannedObject(location.display, "git-lfs-pointer"))
            yield Finding(PLACEHOLDER, location, f"a Git LFS pointer, not the file it stands for ({pointer})")
            return
        detected, problems = self._identify(source)
        if problems and not detected:
            yield Finding(NOT_ANALYSED, location, "could not identify the content: " + "; ".join(problems))
            return
        if not detected:
            yield from self._unrecognised(source, location, name)
            return
        self.objects.append(ScannedObject(location.display, "+".join(h.name for h in detected)))
        yield from self._check_name(detected, location, name)
        if len([h for h in detected if not h.companion]) > 1:
            views = " and ".join(h.label for h in detected)
            yield Finding(POLYGLOT, location, f"content is valid as {views}; every view is scanned")
        ctx = Context(self, location, depth)
        for handler in detected:
            try:
                yield from handler.scan(source, ctx)
            except ScanError as exc:
                yield failure_finding(location, exc)
            except (RecursionError, MemoryError) as exc:
                yield Finding(NOT_ANALYSED, location, f"{handler.label} analysis aborted: {type(exc).__name__}")
            except Exception as exc:
                detail = f"internal error in the {handler.name} analyser: {type(exc).__name__}: {exc}"
                yield Finding(NOT_ANALYSED, location, detail)

    def _check_name(self, detected: list[Handler], location: Location, name: str) -> Iterator[Finding]:
        suffix = suffix_of(name)
        claims = [h for h in self.handlers if suffix in h.extensions]
        if not claims or any(h.transparent for h in detected):
            return
        accepted = {suffix}
        if suffix in CONVENTIONAL_OUTER_SUFFIXES:
            accepted.add(suffix_of(name[: -len(suffix)]))
        if any(accepted & h.extensions for h in detected):
            return
        claimed = "/".join(dict.fromkeys(h.label for h in claims))
        actual = " + ".join(h.label for h in detected)
        yield Finding(EXTENSION_MISMATCH, location, f"named '{suffix}' ({claimed}) but the content is {actual}")

    def _unrecognised(self, source: Source, location: Location, name: str) -> Iterator[Finding]:
        kind = classify_plain(source.head())
        self.objects.append(ScannedObject(location.display, kind))
        suffix = suffix_of(name)
        claims = [h for h in self.handlers if suffix in h.extensions]
        if not claims:
            return
        if kind == "empty":
            yield Finding(PLACEHOLDER, location, f"an empty file named '{suffix}': not the model")
            return
        if suffix in AMBIGUOUS_SUFFIXES:
            return
        loaders = "/".join(dict.fromkeys(h.label for h in claims))
        if kind == "binary":
            yield Finding(
                UNRECOGNISED, location, f"named '{suffix}' ({loaders}) but the content is binary of no known format"
            )
            return
        # Text and images are rejected by every loader of the name (text pickles are recognised as pickles).
        evidence = (
            f"named '{suffix}' but the content is {'an image' if kind == 'image' else kind}, which no {loaders} "
            "loader accepts: check that this is the file you meant to get"
        )
        yield Finding(UNRECOGNISED, location, evidence, Severity.LOW)


_PLAIN = frozenset({"empty", "text", "image", "binary"})


def failure_finding(location: Location, exc: ScanError) -> Finding:
    """The fail-closed finding for an error: a bound hit (possible bomb) or unanalysable data."""
    if isinstance(exc, LimitExceeded):
        return Finding(LIMIT_EXCEEDED, location, exc.detail, details={"limit": exc.limit})
    return Finding(NOT_ANALYSED, location, str(exc))
