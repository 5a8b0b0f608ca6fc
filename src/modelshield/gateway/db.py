"""The gateway's database: client tokens, fetched revisions, verdicts and the audit log.

SQLAlchemy Core with portable types only (strings, integers, text), so the same schema serves SQLite
(the default, embedded) and PostgreSQL (`postgresql+psycopg://...`, psycopg 3). The schema is versioned:
`MIGRATIONS` are applied in order at start-up and recorded in `schema_migrations`, under a lock so that
several processes starting together apply each step once; a database newer than this code is refused.
Verdicts are keyed by the revision's content digest, the scanner version and the policy digest: a new
policy or scanner misses the old verdicts and re-judges from the store, while an unchanged one reuses
them across restarts and processes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

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
    Column("reasons", Text, nullable=False),  # JSON: Verdict.dumps (a list of reasons in old rows)
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


schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("description", String(200), nullable=False),
    Column("applied", Integer, nullable=False),
)


#: Who is fetching and scanning a revision now: one row per (repo, commit), the primary key is the lock.
#: The holder refreshes `heartbeat` (time.time() of its host) while it works; a row not refreshed for the
#: lease timeout belongs to a process that died and is taken over (hosts' clocks must agree within it).
leases = Table(
    "leases",
    metadata,
    Column("repo", String(300), primary_key=True),
    Column("commit_id", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("heartbeat", Float, nullable=False),
)


def _initial_schema(conn: Connection) -> None:
    # checkfirst: a database made by the first gateway slice (before migrations) is adopted as version 1
    metadata.create_all(conn, tables=[tokens, revisions, verdicts, audit], checkfirst=True)


def _leases(conn: Connection) -> None:
    leases.create(conn, checkfirst=True)


#: (version, description, step): append new steps, never edit an applied one
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "tokens, revisions, verdicts, audit", _initial_schema),
    (2, "leases: one fetch and one scan per revision across processes", _leases),
]

#: pg_advisory_xact_lock key that serialises migrations between processes (any fixed 64-bit number)
_MIGRATION_LOCK = 0x6D6F64656C736869


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer gateway: this one would misread it."""


def migrate(engine: Engine) -> list[int]:
    """Apply the missing migrations in one transaction; return the versions applied now."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        schema_migrations.create(conn, checkfirst=True)
        done = {int(row[0]) for row in conn.execute(select(schema_migrations.c.version))}
        known = {version for version, _description, _step in MIGRATIONS}
        if done - known:
            raise SchemaTooNew(f"database schema version {max(done)} is newer than this gateway's {max(known)}")
        applied = []
        for version, description, step in MIGRATIONS:
            if version not in done:
                step(conn)
                conn.execute(
                    insert(schema_migrations).values(version=version, description=description, applied=int(time.time()))
                )
                applied.append(version)
    return applied


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
    """What the scan of a revision found, stored under (content, scanner, policy) and judged per team."""

    blocked: bool
    #: what fails under the scanner policy: failing findings and scan errors (rule, severity, file, ...)
    reasons: list[dict[str, str]]
    #: every finding, failing or not, once per rule, file and severity: what `block = [{rule = ...}]` reads
    findings: list[dict[str, str]] | None = None
    #: each file's detected formats (its own, then those found inside it): what `{format = ...}` reads
    formats: dict[str, list[str]] | None = None
    #: the Hub repositories the revision loads (an adapter's base, and its own): what `allow`/`deny` read
    dependencies: list[str] | None = None
    #: the commits the revision's Hub dependencies resolved to when it was judged ("org/base@main" -> commit):
    #: a branch that moved since makes the verdict stale
    resolved: dict[str, str] = field(default_factory=dict)
    # findings, formats and dependencies are None in verdicts stored before they were recorded (the column held the
    # reasons' list alone): such a verdict is still read, and a team policy that needs them fails closed.

    def dumps(self) -> str:
        data = {"reasons": self.reasons, "findings": self.findings, "formats": self.formats}
        return json.dumps(data | {"dependencies": self.dependencies, "resolved": self.resolved})

    @classmethod
    def loads(cls, blocked: bool, text: str) -> Verdict:
        data = json.loads(text)
        if isinstance(data, list):
            return cls(blocked, data)
        found, formats, dependencies = data.get("findings"), data.get("formats"), data.get("dependencies")
        return cls(blocked, data["reasons"], found, formats, dependencies, data.get("resolved") or {})


class Database:
    """Thin, synchronous access (each call is one short transaction; the app runs them in a thread)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            migrate(self.engine)
        except (IntegrityError, OperationalError):
            if self.engine.dialect.name != "sqlite":
                raise
            # SQLite has no advisory lock: a process starting at the same moment applied the same step
            migrate(self.engine)

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
        return None if row is None else Verdict.loads(bool(row[0]), row[1])

    def judged(self, repo: str, commit: str, scanner: str, policy: str) -> bool:
        """Whether the revision is fetched and has a verdict under this scanner and policy."""
        query = (
            select(verdicts.c.blocked)
            .join(revisions, revisions.c.content == verdicts.c.content)
            .where(revisions.c.repo == repo, revisions.c.commit_id == commit)
            .where(verdicts.c.scanner == scanner, verdicts.c.policy == policy)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def claim(self, repo: str, commit: str, holder: str, timeout: float) -> tuple[bool, str | None]:
        """Take the revision's lease: (acquired, the holder whose stale lease was removed first, if any)."""
        now = time.time()
        where = (leases.c.repo == repo, leases.c.commit_id == commit, leases.c.heartbeat < now - timeout)
        with self.engine.begin() as conn:
            row = conn.execute(select(leases.c.holder).where(*where)).first()
            # the heartbeat condition again: a holder that came back to life in between keeps its lease
            stale = str(row[0]) if row and conn.execute(delete(leases).where(*where)).rowcount else None
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(leases).values(repo=repo, commit_id=commit, holder=holder, heartbeat=now))
        except IntegrityError:
            return False, stale
        return True, stale

    def lease(self, repo: str, commit: str) -> tuple[str, float] | None:
        """(holder, last heartbeat) of the revision's lease, if someone holds it."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(leases.c.holder, leases.c.heartbeat).where(leases.c.repo == repo, leases.c.commit_id == commit)
            ).first()
        return None if row is None else (str(row[0]), float(row[1]))

    def beat(self, repo: str, commit: str, holder: str) -> bool:
        """Refresh the lease; False when it is no longer this holder's (it was taken over as stale)."""
        mine = (leases.c.repo == repo, leases.c.commit_id == commit, leases.c.holder == holder)
        with self.engine.begin() as conn:
            return bool(conn.execute(update(leases).where(*mine).values(heartbeat=time.time())).rowcount)

    def release(self, repo: str, commit: str, holder: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(leases).where(leases.c.repo == repo, leases.c.commit_id == commit, leases.c.holder == holder)
            )

    def save_verdict(self, content: str, scanner: str, policy: str, verdict: Verdict) -> None:
        values: dict[str, Any] = {"content": content, "scanner": scanner, "policy": policy}
        values |= {"blocked": int(verdict.blocked), "reasons": verdict.dumps(), "created": int(time.time())}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(verdicts).values(**values))
        except IntegrityError:
            pass

    def log(self, entry: Decision) -> None:
        values = asdict(entry) | {"at": int(time.time())}
        with self.engine.begin() as conn:
            conn.execute(insert(audit).values(**values))

    def audit_size(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit)).scalar_one())

    def blocked(self, scanner: str, limit: int = 100) -> list[dict[str, Any]]:
        """Blocked revisions by this scanner, newest verdict first: repo, commit, policy, reasons, created."""
        query = (
            select(revisions.c.repo, revisions.c.commit_id, verdicts.c.policy, verdicts.c.reasons, verdicts.c.created)
            .join(verdicts, verdicts.c.content == revisions.c.content)
            .where(verdicts.c.blocked == 1, verdicts.c.scanner == scanner)
            .order_by(verdicts.c.created.desc(), revisions.c.repo)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            {
                "repo": r[0],
                "commit": r[1],
                "policy": r[2],
                "reasons": Verdict.loads(True, r[3]).reasons,
                "created": r[4],
            }
            for r in rows
        ]

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit).order_by(audit.c.id.desc()).limit(limit)).mappings().all()
        return [dict(row) for row in rows]
