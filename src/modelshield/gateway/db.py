"""The gateway's database: client tokens, fetched revisions, verdicts and the audit log.

SQLAlchemy Core with portable types only (strings, integers, text), so the same schema serves SQLite
(the default, embedded) and PostgreSQL. Verdicts are keyed by the revision's content digest, the
scanner version and the policy digest: a new policy or scanner misses the old verdicts and re-judges
from the store, while an unchanged one reuses them across restarts and processes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

metadata = MetaData()

tokens = Table(
    "tokens",
    metadata,
    Column("digest", String(64), primary_key=True),  # sha256 of the token: the token itself is never stored
    Column("team", String(200), nullable=False),
    Column("created", Integer, nullable=False),
)

#: What a revision holds, as fetched and verified: name -> sha256, size, upstream etag.
revisions = Table(
    "revisions",
    metadata,
    Column("repo", String(300), primary_key=True),
    Column("commit_id", String(64), primary_key=True),
    Column("content", String(64), nullable=False),  # digest of the sorted (name, sha256) manifest
    Column("manifest", Text, nullable=False),
    Column("info", Text, nullable=False),  # the upstream repository info (JSON), replayed to clients
    Column("fetched", Integer, nullable=False),
)

verdicts = Table(
    "verdicts",
    metadata,
    Column("content", String(64), primary_key=True),
    Column("scanner", String(40), primary_key=True),
    Column("policy", String(64), primary_key=True),
    Column("blocked", Integer, nullable=False),
    Column("reasons", Text, nullable=False),  # JSON list of {rule, severity, file, title, evidence}
    Column("created", Integer, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Integer, nullable=False),
    Column("who", String(200), nullable=False),
    Column("action", String(40), nullable=False),
    Column("repo", String(300), nullable=False),
    Column("revision", String(200), nullable=False),
    Column("path", String(1000), nullable=False),
    Column("decision", String(20), nullable=False),
    Column("reason", Text, nullable=False),
)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL: readers never wait for the writer, and a commit is one append, not a journal rewrite; several
    gateway processes on one machine can share the file (PostgreSQL is for several machines)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Decision:
    """One audit entry: who asked, for what, what the gateway decided and why."""

    who: str
    action: str  # fetch, scan or serve
    repo: str
    revision: str
    path: str
    decision: str  # allow, block or error
    reason: str


@dataclass
class Verdict:
    blocked: bool
    reasons: list[dict[str, str]]


class Database:
    """Thin, synchronous access (each call is one short transaction; the app runs them in a thread)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)

    def add_token(self, team: str) -> str:
        token = "msg_" + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(insert(tokens).values(digest=token_digest(token), team=team, created=int(time.time())))
        return token

    def team(self, token: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(tokens.c.team).where(tokens.c.digest == token_digest(token))).first()
        return None if row is None else str(row[0])

    def revision(self, repo: str, commit: str) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
        """(content digest, manifest, upstream info) of a fetched revision."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(revisions.c.content, revisions.c.manifest, revisions.c.info).where(
                    revisions.c.repo == repo, revisions.c.commit_id == commit
                )
            ).first()
        return None if row is None else (str(row[0]), json.loads(row[1]), json.loads(row[2]))

    def save_revision(
        self, repo: str, commit: str, content: str, manifest: dict[str, Any], info: dict[str, Any]
    ) -> None:
        values: dict[str, Any] = {"repo": repo, "commit_id": commit, "content": content}
        values |= {"manifest": json.dumps(manifest), "info": json.dumps(info), "fetched": int(time.time())}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(revisions).values(**values))
        except IntegrityError:
            pass  # another process fetched the same commit: same content, keep the first row

    def verdict(self, content: str, scanner: str, policy: str) -> Verdict | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(verdicts.c.blocked, verdicts.c.reasons).where(
                    verdicts.c.content == content, verdicts.c.scanner == scanner, verdicts.c.policy == policy
                )
            ).first()
        return None if row is None else Verdict(bool(row[0]), json.loads(row[1]))

    def save_verdict(self, content: str, scanner: str, policy: str, verdict: Verdict) -> None:
        values: dict[str, Any] = {"content": content, "scanner": scanner, "policy": policy}
        values |= {"blocked": int(verdict.blocked), "reasons": json.dumps(verdict.reasons), "created": int(time.time())}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(verdicts).values(**values))
        except IntegrityError:
            pass

    def log(self, entry: Decision) -> None:
        values = asdict(entry) | {"at": int(time.time())}
        with self.engine.begin() as conn:
            conn.execute(insert(audit).values(**values))

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit).order_by(audit.c.id.desc()).limit(limit)).mappings().all()
        return [dict(row) for row in rows]
