"""The content-addressed store: `blobs/<sha256>`, linked into snapshots laid out as a Hub cache.

The layout (`hub/models--ORG--NAME/snapshots/COMMIT/PATH`, `refs/REV`) is the one huggingface_hub
writes, so the scanner resolves a model's Hub dependencies (an adapter's base model) offline from
the store when they were fetched through the gateway, and a policy change re-judges from the bytes kept
here without fetching them again.

A blob is trusted only as far as it is checked: disk corruption, or someone with access to the store,
may change it after it was judged. So it is hashed again whenever a verdict is computed from it
(`verify`), its size is checked on every serve (`intact`, one `os.stat`), and a blob found changed is
moved to `quarantine/` (kept for whoever investigates) so that the next request fetches it again from
the upstream; `quarantine/SHA256.sent` records that its changed bytes were partly sent to a client.
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
        self.quarantined = self.root / "quarantine"
        for folder in (self.blobs, self.hub, self.tmp, self.quarantined):
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

    def intact(self, sha256: str, size: int) -> os.stat_result | None:
        """The blob's stat when it is there with the size its manifest gives (cheap: no read)."""
        try:
            stat = self.blob(sha256).stat()
        except FileNotFoundError:
            return None
        return stat if stat.st_size == size else None

    def verify(self, sha256: str, size: int) -> Signature | None:
        """Hash the blob whole; its signature when its bytes are the ones its name says, else None."""
        digest, read = hashlib.sha256(), 0
        try:
            with self.blob(sha256).open("rb") as handle:
                before = signature(os.fstat(handle.fileno()))
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                    read += len(chunk)
        except FileNotFoundError:
            return None
        return before if read == size and digest.hexdigest() == sha256 else None

    def quarantine(self, sha256: str, seen: Signature | None = None, sent: bool = False) -> None:
        """Move a blob found changed out of the way (unless another process already put a new one there:
        `seen` is the signature of the file found changed); `sent` marks the digest as one whose changed
        bytes may have reached a client (see `tainted`)."""
        blob = self.blob(sha256)
        if sent:
            (self.quarantined / f"{sha256}.sent").touch()
        try:
            if seen is not None and signature(blob.stat()) != seen:
                return
            os.replace(blob, self.quarantined / sha256)
        except FileNotFoundError:
            pass

    def tainted(self, sha256: str) -> bool:
        """Whether changed bytes of this digest were partly sent to a client once (until an operator
        removes `quarantine/SHA256.sent`): that client may resume from them."""
        return (self.quarantined / f"{sha256}.sent").exists()

    def link(self, repo: str, commit: str, manifest: dict[str, dict[str, object]]) -> int:
        """Make the snapshot folder of a revision hold every file of the manifest, hard-linked to its blob;
        the number of files (re)linked (a snapshot file that was missing or not its blob, when there was a
        snapshot: scans read these files, so one replaced there is put back before anything is judged)."""
        snapshot = self.snapshot(repo, commit)
        snapshot.mkdir(parents=True, exist_ok=True)  # an empty revision is scanned (and judged) too
        linked = 0
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
            linked += 1
        return linked

    def set_ref(self, repo: str, ref: str, commit: str) -> None:
        refs = self.repo_dir(repo) / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        fd, staged = tempfile.mkstemp(dir=refs, prefix=".ref-")
        with os.fdopen(fd, "w") as handle:
            handle.write(commit)
        os.replace(staged, refs / ref)


#: what identifies one state of a file without reading it: device, inode, size, modification and change times
Signature = tuple[int, int, int, int, int]


def signature(stat: os.stat_result) -> Signature:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def manifest_digest(manifest: dict[str, dict[str, object]]) -> str:
    """The revision's content: its file names and their bytes' digests (what the verdict is about)."""
    digest = hashlib.sha256()
    for name in sorted(manifest):
        digest.update(f"{name}\0{manifest[name]['sha256']}\n".encode())
    return digest.hexdigest()
