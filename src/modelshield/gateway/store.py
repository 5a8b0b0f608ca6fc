"""The content-addressed store: `blobs/<sha256>`, linked into snapshots laid out as a Hub cache.

The layout (`hub/models--ORG--NAME/snapshots/COMMIT/PATH`, `refs/REV`) is the one huggingface_hub
writes, so the scanner resolves a model's Hub dependencies (an adapter's base model) offline from
the store when they were fetched through the gateway, and a policy change re-judges from the bytes kept
here without fetching them again.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class Store:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.blobs = self.root / "blobs"
        self.hub = self.root / "hub"
        self.tmp = self.root / "tmp"
        for folder in (self.blobs, self.hub, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)

    def blob(self, sha256: str) -> Path:
        return self.blobs / sha256

    def repo_dir(self, repo: str) -> Path:
        return self.hub / ("models--" + repo.replace("/", "--"))

    def snapshot(self, repo: str, commit: str) -> Path:
        return self.repo_dir(repo) / "snapshots" / commit

    def temporary(self) -> tuple[int, str]:
        """A new file in the store's own folder (same file system, so `keep` is an atomic rename)."""
        return tempfile.mkstemp(dir=self.tmp, prefix="fetch-")

    def keep(self, temporary: str, sha256: str) -> Path:
        """Move a fully fetched and verified file to its content address."""
        target = self.blob(sha256)
        os.replace(temporary, target)
        return target

    def link(self, repo: str, commit: str, manifest: dict[str, dict[str, object]]) -> Path:
        """The snapshot folder of a revision: every file of the manifest, hard-linked to its blob."""
        snapshot = self.snapshot(repo, commit)
        snapshot.mkdir(parents=True, exist_ok=True)  # an empty revision is scanned (and judged) too
        for name, entry in manifest.items():
            target = snapshot / name
            blob = self.blob(str(entry["sha256"]))
            if target.exists() and os.path.samefile(target, blob):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            staged = target.with_name(f".{target.name}.{os.getpid()}.link")
            staged.unlink(missing_ok=True)
            os.link(blob, staged)
            os.replace(staged, target)
        return snapshot

    def set_ref(self, repo: str, ref: str, commit: str) -> None:
        refs = self.repo_dir(repo) / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        fd, staged = tempfile.mkstemp(dir=refs, prefix=".ref-")
        with os.fdopen(fd, "w") as handle:
            handle.write(commit)
        os.replace(staged, refs / ref)


def manifest_digest(manifest: dict[str, dict[str, object]]) -> str:
    """The revision's content: its file names and their bytes' digests (what the verdict is about)."""
    digest = hashlib.sha256()
    for name in sorted(manifest):
        digest.update(f"{name}\0{manifest[name]['sha256']}\n".encode())
    return digest.hexdigest()
