"""Walking folders: the one place that decides which files under a folder belong to a scan or a manifest.

Nothing under a folder is passed over in silence: what cannot be read (a folder without permission, a
broken link, a link loop, a named pipe, a socket, a device) comes out as a `Skipped` path with the
reason, which the scan reports as an error (exit 2) and `hash` prints on stderr. Links to folders are
followed, as loaders follow them, each folder once.

A Hugging Face cache repository (`models--org--name`, with `blobs/` and `snapshots/<commit>/` of links
into the blobs) is walked by its snapshots, so that files keep the names loaders open them by; blobs no
snapshot links to are walked last under their own paths (a later download can link them again);
huggingface_hub's bookkeeping (`refs/`, the `.no_exist/` markers of files a repository lacks) is not part
of any model. A snapshot entry that resolves outside its repository folder is never read.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from typing import NamedTuple

#: Version-control folders hold history, not models; they are skipped in folder scans and manifests.
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn"})
#: Prefixes of repository folders in a Hugging Face cache (`hub/models--org--name`).
HF_REPO_PREFIXES = ("models--", "datasets--", "spaces--")
#: huggingface_hub's bookkeeping in a cache repository, never loaded as part of a model: `refs/NAME` holds
#: the commit a branch or tag names, `.no_exist/<commit>/NAME` empty markers for files a repository lacks.
HF_BOOKKEEPING = frozenset({"refs", ".no_exist"})

_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class Skipped(NamedTuple):
    """A path under a walked folder that was not read, and why (a whole sentence naming the path)."""

    path: str
    reason: str


def _kind(mode: int) -> str:
    return next((text for test, text in _KINDS if test(mode)), "not a regular file or folder")


def _unreadable(path: str, exc: OSError) -> Skipped:
    """The report for a path whose target cannot be reached: a broken link, a link loop, no permission."""
    why = exc.strerror or str(exc)
    if os.path.islink(path):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        what = "a link loop" if exc.errno == errno.ELOOP else "a broken link"
        return Skipped(path, f"cannot read {path}: {what} (to {target}): {why}")
    return Skipped(path, f"cannot read {path}: {why}")


def _stat(path: str) -> os.stat_result | Skipped:
    """The status of a regular file or folder (links followed), or why the path cannot be read as one."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return _unreadable(path, exc)
    if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
        return st
    return Skipped(path, f"cannot read {path}: {_kind(st.st_mode)}")


def check_file(path: str) -> Skipped | None:
    """Why `path` is not a readable regular file (None if it is one): opening a named pipe would block."""
    st = _stat(path)
    if isinstance(st, Skipped):
        return st
    return Skipped(path, f"cannot read {path}: a folder") if stat.S_ISDIR(st.st_mode) else None


#: `.../models--org--name/snapshots/<commit>/<file>`: the cache layout huggingface_hub writes.
_SNAPSHOT = re.compile(r"(?:^|/)models--(?P<repo>[^/]+)/snapshots/(?P<commit>[0-9a-f]{40})/(?P<file>.*)")


def hub_snapshot_file(path: str) -> tuple[str, str, str] | None:
    """(repo id, commit, path inside the snapshot) of a file in a Hugging Face cache snapshot."""
    match = _SNAPSHOT.search(path.replace(os.sep, "/"))
    if match is None:
        return None
    return match["repo"].replace("--", "/"), match["commit"], match["file"]


def is_hf_repo_name(name: str) -> bool:
    """Whether a folder name is a Hugging Face cache repository's (`models--org--name`)."""
    return any(name.startswith(prefix) and len(name) > len(prefix) for prefix in HF_REPO_PREFIXES)


def _is_hf_repo(folder: str, names: set[str]) -> bool:
    return is_hf_repo_name(os.path.basename(os.path.normpath(folder))) and "snapshots" in names


class _Walk:
    """One walk: the folders already walked (by device and inode, so that linked folders and loops
    are walked once) and, inside a cache repository, the folder every entry must resolve into."""

    def __init__(self) -> None:
        self.folders: set[tuple[int, int]] = set()

    def entries(self, root: str) -> Iterator[str | Skipped]:
        try:
            st = os.stat(root)
        except OSError as exc:
            yield _unreadable(root, exc)
            return
        self.folders.add((st.st_dev, st.st_ino))
        yield from self._folder(root, None)

    def _list(self, folder: str) -> list[str] | Skipped:
        try:
            return sorted(os.listdir(folder))
        except OSError as exc:
            return Skipped(folder, f"cannot read folder {folder}: {exc.strerror or exc}")

    def _folder(self, top: str, confine: str | None) -> Iterator[str | Skipped]:
        """Files of `top` in sorted order, each folder's files before its subfolders (as `os.walk`)."""
        stack = [top]
        while stack:
            folder = stack.pop()
            names = self._list(folder)
            if isinstance(names, Skipped):
                yield names
                continue
            if confine is None and _is_hf_repo(folder, set(names)):
                yield from self._repo(folder, names)
                continue
            subfolders: list[str] = []
            for name in names:
                full = os.path.join(folder, name)
                if confine is not None and not inside(full, confine):
                    target = os.path.realpath(full)
                    yield Skipped(full, f"not read {full}: it links out of its Hugging Face cache folder (to {target})")
                    continue
                st = _stat(full)
                if isinstance(st, Skipped):
                    yield st
                elif stat.S_ISDIR(st.st_mode):
                    key = (st.st_dev, st.st_ino)
                    if name not in SKIPPED_DIRS and key not in self.folders:
                        self.folders.add(key)  # a folder met again (a link to it) is already walked
                        subfolders.append(full)
                else:
                    yield full
            stack += reversed(subfolders)

    def _repo(self, repo: str, names: list[str]) -> Iterator[str | Skipped]:
        """A cache repository: its snapshots by real file names, then blobs no snapshot links to, then
        anything else it holds but huggingface_hub's bookkeeping."""
        linked: set[str] = set()
        snapshots = os.path.join(repo, "snapshots")
        for entry in self._folder(snapshots, repo):
            if isinstance(entry, str):
                linked.add(os.path.realpath(entry))
            yield entry
        for name in names:
            if name == "snapshots" or name in HF_BOOKKEEPING:
                continue
            for entry in self._folder(os.path.join(repo, name), None):
                if isinstance(entry, Skipped) or os.path.realpath(entry) not in linked:
                    yield entry


def inside(path: str, root: str) -> bool:
    """Whether `path`, with every link resolved, lies inside `root` (itself resolved)."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, base]) == base


def walk(root: str) -> Iterator[str | Skipped]:
    """Regular files under the folder `root` (joined to it) and every path that was not read, in order."""
    return _Walk().entries(root)


def walk_files(root: str, skipped: list[Skipped]) -> Iterator[str]:
    """The regular files of `walk`; the paths that were not read are appended to `skipped`."""
    for entry in walk(root):
        if isinstance(entry, Skipped):
            skipped.append(entry)
        else:
            yield entry
