"""The public Python API: `modelshield.scan(paths, policy=None) -> Report`, `load_policy(path)`."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from modelshield import __version__
from modelshield.core import activity
from modelshield.core.dependencies import Graph
from modelshield.core.engine import Engine, work_order
from modelshield.core.files import Skipped, walk_files
from modelshield.core.policy import Policy, PolicyError, load_policy_file
from modelshield.core.report import FileResult, Report
from modelshield.deps.resolve import require_download
from modelshield.deps.walk import Walker
from modelshield.integrity.check import check_signature
from modelshield.integrity.signing import SigningInputError, require_file
from modelshield.registry import ALLOWLISTS, HANDLERS
from modelshield.sources import is_remote

Progress = Callable[[FileResult, int, int], None]


class ScanInputError(FileNotFoundError):
    """A path given to scan does not exist."""


#: Set by the command line, whose `__main__` never scans when a spawned worker imports it.
main_is_guarded = False


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """The policy in a TOML file (a policy file or a pyproject.toml); raises `PolicyError` if invalid."""
    return load_policy_file(path, ALLOWLISTS)


def scan_file(path: str | os.PathLike[str], policy: Policy | None = None) -> FileResult:
    """Scan one file (never loading or executing it)."""
    return Engine(HANDLERS, policy or Policy()).scan_file(os.fspath(path))


def _scan_one(index: int, path: str, policy: Policy) -> FileResult:
    activity.started(index)
    try:
        return scan_file(path, policy)
    finally:
        activity.finished()


def _scan_batch(indices: list[int], paths: list[str], policy: Policy) -> list[FileResult]:
    return [_scan_one(index, path, policy) for index, path in zip(indices, paths, strict=True)]


def collect_files(
    paths: Iterable[str | os.PathLike[str]], policy: Policy | None = None
) -> tuple[list[str], list[Skipped], list[str]]:
    """Files to scan: the given files, and every file under the given folders, each file once per name
    (a cache snapshot links many names to one blob); every path under the folders that was not read;
    and the files under the folders that the policy's `exclude` globs leave out (paths given are never
    excluded: naming a file is asking for it)."""
    excluded: list[str] = []
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
                if policy is not None and policy.excludes(name, path):
                    excluded.append(name)
                else:
                    add(name)
        else:
            add(path)
    return files, skipped, excluded


def _jobs(jobs: int | None, count: int) -> int:
    wanted = jobs if jobs and jobs > 0 else (os.cpu_count() or 1)
    return max(1, min(wanted, count))


def _workers_rerun_main() -> bool:
    """Whether starting a worker would run the caller's script again (spawn and forkserver import
    `__main__`, as `multiprocessing.spawn` does): a script that calls `scan` at top level without a
    main guard would then scan again in every worker, or fail, so the scan stays in this process."""
    if main_is_guarded:
        return False
    import multiprocessing  # noqa: PLC0415 - only when a pool is wanted

    if multiprocessing.get_start_method() == "fork":
        return False
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        return not (name == "__main__" or name.endswith(".__main__"))
    return getattr(main, "__file__", None) is not None


def _scan_files(files: list[str], policy: Policy, jobs: int | None, progress: Progress | None) -> list[FileResult]:
    results: list[FileResult] = []
    workers = _jobs(jobs, len(files))
    if workers > 1 and _workers_rerun_main():
        workers = 1
    board = None
    if isinstance(progress, activity.Watcher):  # the terminal display: which file, how far
        board = activity.Board(files, workers)
        progress.watch(board)
    if workers == 1:
        activity.attach(board.cells if board else None, 0)
        try:
            for result in (_scan_one(i, f, policy) for i, f in enumerate(files)):
                results.append(result)
                if progress:
                    progress(result, len(results), len(files))
        finally:
            activity.attach(None, 0)
    else:
        # Imported here: the process pool (multiprocessing, logging, threading) costs start-up time.
        from concurrent.futures import ProcessPoolExecutor, as_completed  # noqa: PLC0415

        shared = (board.cells, board.counter) if board else (None, None)
        slots: list[FileResult | None] = [None] * len(files)
        with ProcessPoolExecutor(max_workers=workers, initializer=activity.join_pool, initargs=shared) as pool:
            batches = {
                pool.submit(_scan_batch, batch, [files[i] for i in batch], policy): batch for batch in work_order(files)
            }
            done = 0
            for future in as_completed(batches):
                for index, result in zip(batches[future], future.result(), strict=True):
                    slots[index] = result
                    done += 1
                    if progress:
                        progress(result, done, len(files))
        results = [result for result in slots if result is not None]  # in the order the files were given
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
    cache: bool = True,
    max_fetch_bytes: int | None = None,
) -> Report:
    """Scan files and folders; raises `ScanInputError` for a path that does not exist.

    Dependencies the files name (base models, remote code, models a pickle loads...) are resolved
    offline and scanned too, unless `follow_dependencies` is False; `download` fetches Hub dependencies
    missing from the cache (the only network access; needs huggingface_hub).

    With a public key (here or the policy's `public-key`) each path is also a model whose signature is
    verified (`signature`, for a single path, or the default place); failures are INT findings.

    A path may also be a remote model (`hf://ORG/NAME[@REV][/PATH]`, a Hub or any HTTPS file URL,
    `s3://BUCKET/KEY`, `models:/NAME/VERSION`, `runs:/RUN/PATH`): its files are scanned where they live,
    reading only the bytes the analysers need (at most `max_fetch_bytes` per file), and their verdicts kept
    in the verdict cache unless `cache` is False (see `modelshield.sources`). Remote targets that cannot be
    listed raise `RemoteInputError`.
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
    uris = [m for m in models if is_remote(m)]
    excluded: list[str] = []
    if not uris:
        files, skipped, excluded = collect_files(models, policy)
        results = _scan_files(files, policy, jobs, progress) + [FileResult(s.path, error=s.reason) for s in skipped]
        graph = None
        if follow_dependencies:
            walker = Walker(policy, lambda files: _scan_files(files, policy, jobs, None), download)
            graph = walker.follow(models, results)
            results += walker.results
        remote_summary = None
    else:
        if public_key is not None:
            raise SigningInputError("signatures are verified on local models only: download the model first")
        results, graph, remote_summary, excluded = _scan_with_remote(
            models,
            policy,
            jobs=jobs,
            progress=progress,
            follow_dependencies=follow_dependencies,
            download=download,
            cache=cache,
            max_fetch_bytes=max_fetch_bytes,
        )
    if public_key is not None:
        results += [check_signature(model, public_key, policy, signature) for model in models]
    seconds = time.perf_counter() - started
    return Report(results, policy, __version__, started_at, seconds, graph, excluded, remote_summary)


def _scan_with_remote(
    models: list[str],
    policy: Policy,
    *,
    jobs: int | None,
    progress: Progress | None,
    follow_dependencies: bool,
    download: bool,
    cache: bool,
    max_fetch_bytes: int | None,
) -> tuple[list[FileResult], Graph | None, dict[str, Any], list[str]]:
    """A scan with remote targets: each is listed and laid out in a shadow folder (see
    `modelshield.sources.scan`), scanned with the local files, and named by its URI in the results."""
    from modelshield.sources.cache import VerdictCache  # noqa: PLC0415 - only for remote scans
    from modelshield.sources.scan import RemoteScan  # noqa: PLC0415

    with RemoteScan(policy, jobs=jobs, budget=max_fetch_bytes, cache=VerdictCache() if cache else None) as remote:
        roots = [remote.add(m) if is_remote(m) else m for m in models]
        files, skipped, excluded = collect_files([m for m in models if not is_remote(m)], policy)
        counted = [0]

        def scan_files(paths: list[str]) -> list[FileResult]:
            remote_paths = [p for p in paths if remote.owns(p)]
            local = _scan_files([p for p in paths if not remote.owns(p)], policy, jobs, None)
            scanned = {r.path: r for r in [*local, *remote.scan(remote_paths)]}
            return [scanned[p] for p in paths]

        def report(result: FileResult) -> None:
            counted[0] += 1
            if progress is not None and not isinstance(progress, activity.Watcher):
                progress(result, counted[0], total)

        remote_files = list(dict.fromkeys(p for root in roots if remote.owns(root) for p in remote.files_under(root)))
        total = len(files) + len(remote_files)
        results = _scan_files(files, policy, jobs, progress) + [FileResult(s.path, error=s.reason) for s in skipped]
        counted[0] = len(files)
        results += remote.scan(remote_files, report)
        graph = None
        if follow_dependencies:
            walker = Walker(policy, scan_files, download, remote)
            graph = walker.follow(roots, results)
            results += walker.results
        remote.relocate(results, graph)
        return results, graph, remote.summary(), excluded
