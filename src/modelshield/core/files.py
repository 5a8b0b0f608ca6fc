"""Walking folders: the one place that decides which files under a folder belong to a scan or a manifest."""

from __future__ import annotations

import os
from collections.abc import Iterator

#: Version-control folders hold history, not models; they are skipped in folder scans and manifests.
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn"})


def walk_files(root: str) -> Iterator[str]:
    """Regular files under `root` (joined to it), in sorted order, skipping version-control folders."""
    for folder, dirs, names in os.walk(root, onerror=None):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(names):
            full = os.path.join(folder, name)
            if os.path.isfile(full):
                yield full
