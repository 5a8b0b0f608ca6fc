"""The public Python API: `modelshield.scan(paths, policy=None) -> Report`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from modelshield import __version__
from modelshield.core.engine import Engine
from modelshield.core.files import Skipped, walk_files
from modelshield.core.policy import Policy, PolicyError
from modelshield.core.report import FileResult, Report
from modelshield.deps.resolve import require_download
from modelshield.deps.walk import Walker
from modelshield.integrity.check import check_signature
from modelshield.integrity.signing import SigningInputError, require_file
from modelshield.registry import HANDLERS

Progress = Callable[[FileResult, int, int], None]


class ScanInputError(FileNotFoundError):
    """A path given to scan does not exist."""


def scan_file(path: str, policy: Policy | None = None) -> FileResult:
    """Scan one file (never loading or executing it)."""
    return Engine(HANDLERS, policy or Policy()).scan_file(path)


def collect_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[str], list[Skipped]]:
    """Files to scan: the given files, and every file under the given folders, each file once per name
    (a cache snapshot links many names to one blob); and every path under the folders that was not read."""
    files: list[str] = []
    skipped: list[Skipped] = []
    seen: set[tuple[int, int, str]] = set()

    def add(path: str) -> None:
        try:
            st = os.stat(path)
        except OSError:
            files.append(path)  # reported as unreadable by the engine
            return
        key = (st.st_dev, st.st_ino, os.path.basename(path))
        if key not in seen:
            seen.add(key)
            files.append(path)

    for raw in paths:
        path = os.fspath(raw)
        if not os.path.lexists(path):
            raise ScanInputError(f"no such file or directory: {path}")
        if os.path.isdir(path):
            for name in walk_files(path, skipped):
                add(name)
        else:
            add(path)
    return files, skipped


def _jobs(jobs: int | None, count: int) -> int:
    wanted = jobs if jobs and jobs > 0 else (os.cpu_count() or 1)
    return max(1, min(wanted, count))


def _scan_files(files: list[str], policy: Policy, jobs: int | None, progress: Progress | None) -> list[FileResult]:
    results: list[FileResult] = []
    workers = _jobs(jobs, len(files))
    if workers == 1:
        mapped: Iterable[FileResult] = (scan_file(f, policy) for f in files)
        for result in mapped:
            results.append(result)
            if progress:
                progress(result, len(results), len(files))
    else:
        # Imported here: the process pool (multiprocessing, logging, threading) costs start-up time.
        from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(scan_file, files, [policy] * len(files), chunksize=4):
                results.append(result)
                if progress:
                    progress(result, len(results), len(files))
    return results


def scan(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    policy: Policy | None = None,
    *,
    jobs: int | None = None,
    progress: Progress | None = None,
    public_key: str | None = None,
    signature: str | None = None,
    follow_dependencies: bool = True,
    download: bool = False,
) -> Report:
    """Scan files and folders; raises `ScanInputError` for a path that does not exist.

    Dependencies the files name (base models, remote code, models a pickle loads...) are resolved
    offline and scanned too, unless `follow_dependencies` is False; `download` fetches Hub dependencies
    missing from the cache (the only network access; needs huggingface_hub).

    With a public key (here or the policy's `public-key`) each path is also a model whose signature is
    verified (`signature`, for a single path, or the default place); failures are INT findings.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    models = [os.fspath(p) for p in paths]
    policy = policy or Policy()
    public_key = public_key or policy.public_key
    if public_key is None:
        if policy.require_signature:
            raise PolicyError("require-signature = true needs a public key: set public-key or pass --public-key")
        if signature is not None:
            raise SigningInputError("a signature can only be checked with a public key (--public-key)")
    else:
        require_file(public_key, "public key")
        if signature is not None and len(models) != 1:
            raise SigningInputError("--signature applies to one model: give exactly one path")
    if download and follow_dependencies:
        require_download()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    started = time.perf_counter()
    files, skipped = collect_files(models)
    results = _scan_files(files, policy, jobs, progress) + [FileResult(s.path, error=s.reason) for s in skipped]
    graph = None
    if follow_dependencies:
        walker = Walker(policy, lambda files: _scan_files(files, policy, jobs, None), download)
        graph = walker.follow(models, results)
        results += walker.results
    if public_key is not None:
        results += [check_signature(model, public_key, policy, signature) for model in models]
    return Report(results, policy, __version__, started_at, time.perf_counter() - started, graph)
