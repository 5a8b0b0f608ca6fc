"""The verdict cache: a file's scan result stored by its content digest, the scanner's version and the
policy's digest, so that scanning an unchanged remote model again costs only its listing.

The digest is the one the remote store gives (the Hub's LFS sha256 or git blob id, an S3 ETag, ...); the
file's name inside its repository is part of the key too, since some verdicts depend on it (a pickle named
`.safetensors` is SCN001). The scanner version includes a digest of modelshield's own code, so that a
changed analyser never reuses an old verdict. Stored in SQLite under the user cache folder:
`$MODELSHIELD_CACHE_DIR`, else `$XDG_CACHE_HOME/modelshield`, else `~/.cache/modelshield`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelshield import __version__
from modelshield.core.findings import Finding, Location
from modelshield.core.policy import Policy, Suppression
from modelshield.core.report import FileResult, ScannedObject
from modelshield.core.rules import CATALOGUE, Severity

FILE_NAME = "verdicts.sqlite3"
_HERE = "\0path\0"  # the scanned file's own path inside stored text


def cache_dir() -> str:
    explicit = os.environ.get("MODELSHIELD_CACHE_DIR")
    if explicit:
        return os.path.expanduser(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "modelshield")


@functools.cache
def scanner_version() -> str:
    """The release and a digest of the installed code (a development change invalidates the cache)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".json") and path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:16]}"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return str(value.name)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def policy_digest(policy: Policy) -> str:
    """What in the policy can change a file's findings (not where the policy file was)."""
    data = _plain(policy)
    data.pop("source", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _swap(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: _swap(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, old, new) for v in value]
    return value


def _finding(f: Finding, path: str) -> dict[str, Any]:
    return {
        "rule": f.rule_id,
        "members": list(f.location.members),
        "offset": f.location.offset,
        "evidence": f.evidence,
        "severity": f.level.label,
        "details": f.details,
    }


def _unfinding(d: dict[str, Any], path: str) -> Finding:
    location = Location(path, tuple(d["members"]), d["offset"])
    rule = CATALOGUE.get(d["rule"])
    if rule is None:
        raise KeyError(d["rule"])
    return Finding(rule, location, d["evidence"], Severity.parse(d["severity"]), d["details"])


def dump_result(result: FileResult) -> str | None:
    """The result as JSON with its own path abstracted (None if it cannot be stored faithfully)."""
    everything = [*result.findings, *(f for f, _ in result.suppressed)]
    if result.error or any(f.location.path != result.path for f in everything):
        return None
    data = {
        "format": result.format,
        "is_model": result.is_model,
        "size": result.size,
        "findings": [_finding(f, result.path) for f in result.findings],
        "suppressed": [[_finding(f, result.path), list(s)] for f, s in result.suppressed],
        "objects": [list(o) for o in result.objects],
    }
    try:
        return json.dumps(_swap(data, result.path, _HERE))
    except (TypeError, ValueError):
        return None


def load_result(text: str, path: str) -> FileResult | None:
    try:
        data = _swap(json.loads(text), _HERE, path)
        result = FileResult(path, data["format"], data["is_model"], data["size"])
        result.findings = [_unfinding(d, path) for d in data["findings"]]
        result.suppressed = [(_unfinding(d, path), Suppression(*s)) for d, s in data["suppressed"]]
        result.objects = [ScannedObject(*o) for o in data["objects"]]
    except (KeyError, TypeError, ValueError):
        return None  # written by another version of this format: scanned again
    return result


class VerdictCache:
    """The SQLite table of stored results (opened per call: scans run in threads)."""

    def __init__(self, folder: str | None = None) -> None:
        self.folder = folder or cache_dir()
        self.path = os.path.join(self.folder, FILE_NAME)

    def _connect(self) -> sqlite3.Connection:
        os.makedirs(self.folder, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=10)
        db.execute(
            "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, digest TEXT, name TEXT, "
            "version TEXT, policy TEXT, result TEXT, stored REAL)"
        )
        return db

    @staticmethod
    def key(digest: str, name: str, policy: Policy) -> str:
        parts = [digest, name, scanner_version(), policy_digest(policy)]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def get(self, digest: str, name: str, policy: Policy, path: str) -> FileResult | None:
        try:
            with self._connect() as db:
                query = "SELECT result FROM verdicts WHERE key = ?"
                row = db.execute(query, (self.key(digest, name, policy),)).fetchone()
        except sqlite3.Error:
            return None  # a cache that cannot be read is no cache
        return load_result(row[0], path) if row else None

    def put(self, digest: str, name: str, policy: Policy, result: FileResult) -> None:
        text = dump_result(result)
        if text is None:
            return
        key = self.key(digest, name, policy)
        row = (key, digest, name, scanner_version(), policy_digest(policy), text, time.time())
        try:
            with self._connect() as db:
                db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?)", row)
        except sqlite3.Error:
            pass  # not storing a verdict only costs a rescan

    def stats(self) -> dict[str, Any]:
        if not os.path.exists(self.path):
            return {"path": self.path, "entries": 0, "bytes": 0}
        with self._connect() as db:
            (entries,) = db.execute("SELECT COUNT(*) FROM verdicts").fetchone()
        return {"path": self.path, "entries": entries, "bytes": os.path.getsize(self.path)}

    def clear(self) -> int:
        if not os.path.exists(self.path):
            return 0
        with self._connect() as db:
            (entries,) = db.execute("SELECT COUNT(*) FROM verdicts").fetchone()
            db.execute("DELETE FROM verdicts")
        with sqlite3.connect(self.path) as db:
            db.execute("VACUUM")
        return int(entries)
