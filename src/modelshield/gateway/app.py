"""The gateway's ASGI application: the part of the Hub API huggingface_hub uses, scan before serve.

A revision is fetched whole, scanned whole and judged before any of its files is served; the verdict
is kept in the database under (content, scanner version, policy). Anything that did not finish (an
upstream failure, a file that does not match its listing, a scan that raised) answers an error: the
gateway fails closed and never serves bytes it has not judged.

Stored content is what was judged, checked rather than trusted (store.py): a verdict computed again from
stored content (a new policy or scanner) first hashes every blob of the revision, and a blob that
changed is quarantined and fetched again from the upstream, verified as at the first fetch, or the
request fails (502, audited). Serving checks the blob's size (one `os.stat`) and hashes it as it is
sent, holding back the last chunk until the digest matches: sha256 runs at about 1.7 GiB/s on one core
here (2.3 s for a 4 GiB blob), too slow to hash before the first byte (huggingface_hub's read timeout is
10 s) but as fast as a client reads, and running beside the socket writes. On a mismatch the response
is cut off (the client sees a short body, which huggingface_hub retries as a `Range` request), the blob
is quarantined and the decision audited; a `Range` request for a digest once quarantined is answered
whole (200) from the refetched blob, which huggingface_hub takes as the cue to discard what it has, so
no client completes a download with bytes that were not the judged ones. Other `Range` requests are
served from a blob hashed whole once by this process (remembered by inode, size and times).

A verdict records the commits its Hub dependencies (an adapter's base model named by a branch) resolved
to. When such a branch later resolves to another commit (after `REF_TTL`), the dependent is judged
again with the new base (kept under its content and the dependencies' commits) and the audit log says
which dependency moved; while nothing moved, a cached request costs one look-up per dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

import modelshield
from modelshield import Policy, PolicyError, Report, load_policy
from modelshield.core.files import hub_snapshot_file
from modelshield.core.rules import CATALOGUE
from modelshield.gateway import ui
from modelshield.gateway.db import Database, Decision, Verdict, token_digest
from modelshield.gateway.policy import SKIPPED, UNSCANNED, GatewayPolicy, Tolerance
from modelshield.gateway.store import Signature, Store, manifest_digest, signature
from modelshield.gateway.upstream import HUB_HOSTS, Upstream, UpstreamError
from modelshield.reports import render
from modelshield.sources.cache import policy_digest as cached_policy_digest

log = logging.getLogger("modelshield.gateway")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
#: how long a branch name (`main`) stays resolved to the commit upstream gave for it
REF_TTL = 30.0
MAX_PATH = 1000
#: how long a token's team is remembered: a revoked token keeps working for at most this long per process
TOKEN_TTL = 5.0
#: how often a process waiting on another's lease looks again, and how long it waits at most
LEASE_POLL = 0.075
LEASE_WAIT = 600.0
_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1, "info": 0}
#: how deep dependencies of dependencies are fetched (an adapter, its base, the base's own base)
MAX_DEPTH = 3
_UI_COOKIE = "modelshield_ui"
_UI_HEADERS = {
    "Content-Security-Policy": ui.CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class Config:
    upstream: str
    db: str
    store: str
    policy: Policy = field(default_factory=Policy)
    #: digest of the policy file's bytes ("default" for the built-in policy): part of every verdict's key
    policy_digest: str = "default"
    anonymous: bool = False
    upstream_token: str | None = None
    #: revisions larger than this (sum of the listed sizes) or with more files are refused before fetching
    max_revision_bytes: int = 200 * 2**30
    max_files: int = 20_000
    #: team -> (policy, digest) for teams judged by their own risk tolerance instead of `policy`
    teams: dict[str, tuple[Policy, str]] = field(default_factory=dict)
    #: teams whose tokens open the security page (`GET /ui`); none by default: the page is then closed
    admin_teams: frozenset[str] = frozenset()
    #: waivers, trusted repositories, unscannable files, per team: applied to stored verdicts when serving
    gateway_policy: GatewayPolicy = field(default_factory=GatewayPolicy)
    #: the gateway's address as developers reach it (`--public-url`), for the threat-page links in refusals;
    #: by default the scheme and host the request came to
    public_url: str | None = None
    #: seconds a revision's lease holder may go without a heartbeat before another process takes over
    lease_timeout: float = 30.0
    #: hosts besides the upstream's own that its redirects may lead to (`--upstream-host`)
    upstream_hosts: tuple[str, ...] = HUB_HOSTS


@dataclass(frozen=True)
class Client:
    """Who asks (`team:NAME` or `anonymous`) and the policy their team is judged by."""

    name: str
    policy: Policy
    policy_digest: str
    tolerance: Tolerance = field(default_factory=Tolerance)


class Refused(Exception):
    """A request answered with an error status and a message the Hub client shows to the developer."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.commit = status, code, commit


@dataclass
class Judged:
    repo: str
    commit: str
    manifest: dict[str, dict[str, Any]]
    info: dict[str, Any]
    verdict: Verdict


def valid_repo(org: str, name: str) -> str:
    if not (_NAME.match(org) and _NAME.match(name)) or ".." in org + name or "--" in org + name:
        raise Refused(400, "invalid repository name")
    return f"{org}/{name}"


def valid_path(path: str) -> str:
    parts = path.split("/")
    if (
        not path
        or len(path) > MAX_PATH
        or "\\" in path
        or "\0" in path
        or any(part in ("", ".", "..") for part in parts)
        or any(ord(c) < 32 for c in path)
    ):
        raise Refused(400, "invalid file name")
    return path


def valid_revision(revision: str) -> str:
    if not _REVISION.match(revision) or ".." in revision:
        raise Refused(400, "invalid revision")
    return revision


def blocked_message(judged: Judged, path: str | None, pages: str | None = None) -> str:
    """One line (it travels in the X-Error-Message header): what blocked, where, and how to learn more:
    the finding in the requested file, and the worst finding of the revision or its dependencies, with
    the rule's threat page (`modelshield explain RULE`, and at `pages`/rules/RULE on the gateway)."""
    # Worst first; at equal severity a finding itself before the dependency rule that reports it upward.
    reasons = sorted(
        judged.verdict.reasons,
        key=lambda r: (_RANK.get(r["severity"], 0), not r["rule"].startswith("DEP")),
        reverse=True,
    )
    head = f"modelshield gateway blocked {judged.repo}@{judged.commit[:12]}"
    if not reasons:
        return head
    worst = reasons[0]
    shown = [r for r in reasons if r["file"] == path][:1]
    shown += [worst] if worst not in shown else []
    text = head + ": " + "; ".join(f"{r['rule']} ({r['severity']}) in {r['file']}: {r['title']}" for r in shown)
    if len(reasons) > len(shown):
        text += f" (and {len(reasons) - len(shown)} more)"
    rules = [r["rule"] for r in shown if r["rule"] in CATALOGUE]  # not UNSCANNED nor a blocked FORMAT
    if rules:
        text += "; see " + ", ".join(f"`modelshield explain {rule}`" for rule in dict.fromkeys(rules))
        if pages:
            text += " or " + ", ".join(f"{pages}/rules/{rule}" for rule in dict.fromkeys(rules))
    return text


def judge(report: Report, snapshot: Path, hub: Path) -> Verdict:
    """Blocked when any finding reaches the policy's failing severity, or any file could not be analysed."""

    def shown(path: str) -> str:
        full = Path(path).resolve() if os.path.isabs(path) else Path(path)
        try:
            return full.relative_to(snapshot).as_posix()
        except ValueError:
            pass
        # a dependency's file, in the store's Hub cache: shown as ORG/NAME@COMMIT/PATH
        found = hub_snapshot_file(full.relative_to(hub).as_posix()) if full.is_relative_to(hub) else None
        if found is None:
            return Path(path).name
        repo, commit, name = found
        return f"{repo}@{commit[:12]}/{name}"

    formats = {r.path: r.format for r in report.files}  # what format waivers match
    findings: dict[tuple[str, str, str], dict[str, str]] = {}
    for f in (finding for result in report.files for finding in result.findings):
        entry = {"rule": f.rule_id, "severity": f.level.label, "file": shown(f.location.path)}
        entry |= {"member": "!".join(f.location.members), "title": f.title, "format": formats.get(f.location.path, "")}
        findings.setdefault((entry["rule"], entry["file"], entry["severity"]), entry)  # once: bounded by rules
    reasons = [
        {
            "rule": f.rule_id,
            "severity": f.level.label,
            "file": shown(f.location.path),
            "member": "!".join(f.location.members),
            "title": f.title,
            "evidence": f.evidence,
            "format": formats.get(f.location.path, "unknown"),
        }
        for f in report.failing
    ]
    reasons += [
        {"rule": UNSCANNED, "severity": "high", "file": shown(path), "member": "", "title": error, "evidence": ""}
        for path, error in report.errors
    ]
    # Every file of the revision is served, so every one must have been judged: one the scanner walked
    # past (under .git/ or .hg/, folders it skips and signatures leave out) blocks, even where unscannable
    # files are allowed; the scanner policy's own `exclude` globs are its team's choice.
    judged = {shown(r.path) for r in report.files} | {shown(path) for path in report.excluded}
    title = "not scanned: the scanner skips its folder, so the gateway does not serve it"
    reasons += [
        {"rule": SKIPPED, "severity": "high", "file": name, "member": "", "title": title, "evidence": ""}
        for name in sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
        if name not in judged
    ]
    detected = {  # each file's format, then the formats found inside it (what `block` formats match)
        shown(r.path): list(dict.fromkeys([r.format, *(o.format for o in r.objects)])) for r in report.files
    }
    graph = report.dependencies.nodes if report.dependencies else []
    dependencies = sorted({node.ref for node in graph if node.kind == "hub"})
    return Verdict(bool(reasons), reasons, list(findings.values()), detected, dependencies)


_K = TypeVar("_K")
_V = TypeVar("_V")
#: entries each per-process cache keeps (revisions judged, branches resolved, tokens, blobs hashed...)
CACHE_ENTRIES = 4096


class Recent(OrderedDict[_K, _V]):
    """A dict of the `size` entries most recently set or read: a long-running gateway's per-process caches
    stay bounded whatever it serves (a forgotten entry is looked up again in the database or store)."""

    def __init__(self, size: int = CACHE_ENTRIES) -> None:
        super().__init__()
        self.size = size

    def __getitem__(self, key: _K) -> _V:
        value = super().__getitem__(key)
        self.move_to_end(key)
        return value

    def get(self, key: _K, default: None = None) -> _V | None:  # type: ignore[override]
        return self[key] if key in self else default  # noqa: SIM401 - self.get would recurse

    def __setitem__(self, key: _K, value: _V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)

    def setdefault(self, key: _K, default: _V) -> _V:
        if key not in self:
            self[key] = default
        return self[key]


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.db = Database(config.db)
        self.store = Store(config.store)
        self.upstream = Upstream(config.upstream, config.upstream_token, config.upstream_hosts)
        self.scanner = modelshield.__version__
        self._locks: Recent[tuple[str, str], asyncio.Lock] = Recent()
        self._refs: Recent[tuple[str, str], tuple[str, float]] = Recent()
        self._judged: Recent[tuple[str, str, str], Judged] = Recent()
        #: (repo, ref) -> the one upstream refresh of that branch in flight
        self._refreshing: dict[tuple[str, str], asyncio.Future[tuple[str, dict[str, Any]]]] = {}
        #: token digest -> (team, monotonic time it expires): a known token costs no database query
        self._teams: Recent[str, tuple[str, float]] = Recent()
        #: this process's name on the revisions' leases it holds
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        #: scans run by this process, and decisions by (action, decision): `GET /metrics`
        self.scans = 0
        self.decisions: Counter[tuple[str, str]] = Counter()
        #: blobs this process hashed whole, by the signature (inode, size, times) they had then
        self._verified: Recent[str, Signature] = Recent(16 * CACHE_ENTRIES)
        self._blob_locks: Recent[str, asyncio.Lock] = Recent()
        #: stored files put back (blobs fetched again, snapshot files relinked) because they had changed
        self.restores = 0

    # -- access ----------------------------------------------------------------------------------------

    async def who(self, request: Request) -> Client:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer ") and header[7:].strip():
            team = await self._team(header[7:].strip())
            if team is None:
                raise Refused(401, "Invalid credentials in Authorization header")
            policy, digest = self.config.teams.get(team, (self.config.policy, self.config.policy_digest))
            return Client(f"team:{team}", policy, digest, self.config.gateway_policy.for_team(team))
        if self.config.anonymous:
            return Client(
                "anonymous", self.config.policy, self.config.policy_digest, self.config.gateway_policy.default
            )
        raise Refused(401, "modelshield gateway: a token is required (set HF_TOKEN to your gateway token)")

    async def _team(self, token: str) -> str | None:
        digest, now = token_digest(token), time.monotonic()
        known = self._teams.get(digest)
        if known and now < known[1]:
            return known[0]
        team = await asyncio.to_thread(self.db.team, token)
        if team is not None:  # unknown tokens are not remembered: made-up ones cannot fill the memory
            self._teams[digest] = (team, now + TOKEN_TTL)
        return team

    # -- resolving and judging ---------------------------------------------------------------------------

    async def commit(self, repo: str, revision: str) -> tuple[str, dict[str, Any] | None]:
        """The commit a revision names, and the upstream info when it had to be asked for."""
        if _COMMIT.match(revision):
            return revision, None
        key = (repo, revision)
        known = self._refs.get(key)
        if known and time.monotonic() - known[1] < REF_TTL:
            return known[0], None
        refresh = self._refreshing.get(key)
        if refresh is None:  # one upstream request per branch at a time; whoever starts it waits for it
            refresh = self._refreshing[key] = asyncio.ensure_future(self._refresh(repo, revision))
            refresh.add_done_callback(lambda _done: self._refreshing.pop(key, None))
        elif known:  # a refresh is under way: the commit known a moment ago answers meanwhile
            return known[0], None
        return await asyncio.shield(refresh)

    async def _refresh(self, repo: str, revision: str) -> tuple[str, dict[str, Any]]:
        try:
            info = await self.upstream.info(repo, revision)
        except UpstreamError as exc:
            raise Refused(exc.status, str(exc), "RepoNotFound" if exc.status == 404 else None) from exc
        commit = str(info["sha"])
        if not _COMMIT.match(commit):
            raise Refused(502, "upstream gave an invalid commit id")
        self._refs[(repo, revision)] = (commit, time.monotonic())
        await asyncio.to_thread(self.store.set_ref, repo, revision, commit)
        return commit, info

    async def judged(self, repo: str, revision: str, who: Client, chain: tuple[tuple[str, str], ...] = ()) -> Judged:
        """The revision fetched, scanned and judged; `chain` holds the dependents being judged (a cycle
        of dependencies would otherwise wait on its own lock)."""
        commit, info = await self.commit(repo, revision)
        key = (repo, commit)
        cached = self._judged.get((repo, commit, who.policy_digest))
        if cached is not None and not await self._moved(repo, cached.verdict):
            return cached
        if key in chain:
            raise Refused(508, f"dependency cycle through {repo}@{commit[:12]}")
        lock = self._locks.setdefault(key, asyncio.Lock())
        # One fetch and one scan per revision, whoever asks first: the lock within this process, the
        # database lease between processes (taken unless the verdict is already stored).
        async with lock, contextlib.AsyncExitStack() as held:
            cached = self._judged.get((repo, commit, who.policy_digest))
            if cached is not None and not await self._moved(repo, cached.verdict):
                return cached
            if not await asyncio.to_thread(self.db.judged, repo, commit, self.scanner, who.policy_digest):
                await held.enter_async_context(self._lease(repo, commit))
            found = await asyncio.to_thread(self.db.revision, repo, commit)
            if found is None:
                if info is None:
                    info = await self._info(repo, commit)
                manifest = await self._fetch(repo, commit, info, who)
                content = manifest_digest(manifest)
                await asyncio.to_thread(self.db.save_revision, repo, commit, content, manifest, info)
            else:
                content, manifest, info = found
            verdict, because = await self._stored_verdict(repo, commit, content, who)
            if found is not None:  # stored earlier: checked before it is linked, scanned or served
                await self._restore(repo, commit, manifest, who, whole=verdict is None)
            # The snapshot is (re)linked from the blobs: scans, and dependents' scans, read it.
            if await asyncio.to_thread(self.store.link, repo, commit, manifest) and found is not None:
                self.restores += 1  # a stored snapshot was not its blobs: a dependent's scan may have read it
            if verdict is None:
                verdict = await self._scan(repo, commit, manifest, who, (*chain, key), because=because)
                stored = dependent_key(content, verdict.resolved) if because else content
                await asyncio.to_thread(self.db.save_verdict, stored, self.scanner, who.policy_digest, verdict)
            judged = Judged(repo, commit, manifest, info, verdict)
            self._judged[(repo, commit, who.policy_digest)] = judged
            return judged

    @contextlib.asynccontextmanager
    async def _lease(self, repo: str, commit: str) -> AsyncIterator[None]:
        """Hold the revision's lease in the database while fetching and scanning it. Another process's
        lease is waited on until it is released (its verdict is then stored) or goes stale (its holder
        died mid-scan: this process takes over and scans itself; nothing is served meanwhile)."""
        fields = {"repo": repo, "commit": commit, "holder": self.holder}
        deadline, timeout = time.monotonic() + LEASE_WAIT, self.config.lease_timeout
        while True:
            acquired, stale = await asyncio.to_thread(self.db.claim, repo, commit, self.holder, timeout)
            if stale:
                log.warning("lease taken over", extra={"fields": fields | {"stale": stale}})
            if acquired:
                break
            log.info("lease wait", extra={"fields": fields})
            while True:  # reads only until the lease is gone or stale, then claim it
                if time.monotonic() > deadline:
                    raise Refused(503, f"modelshield gateway: {repo}@{commit[:12]} is still being scanned; retry")
                await asyncio.sleep(LEASE_POLL)
                lease = await asyncio.to_thread(self.db.lease, repo, commit)
                if lease is None or lease[1] < time.time() - timeout:
                    break

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(timeout / 4)
                try:
                    if not await asyncio.to_thread(self.db.beat, repo, commit, self.holder):
                        log.warning("lease lost", extra={"fields": fields})  # taken over: the verdict is the same
                except Exception:
                    log.exception("lease heartbeat failed", extra={"fields": fields})

        beating = asyncio.ensure_future(heartbeat())
        try:
            yield
        finally:
            beating.cancel()
            try:
                await asyncio.to_thread(self.db.release, repo, commit, self.holder)
            except Exception:  # the database went away: the lease goes stale and is taken over
                log.exception("lease release failed", extra={"fields": fields})

    async def _moved(self, repo: str, verdict: Verdict) -> dict[str, tuple[str, str]]:
        """The dependencies (named by a branch) that resolve to another commit than the verdict was
        judged with: {ref@branch: (judged, now)}. Within REF_TTL, a look-up in memory each."""
        moved = {}
        for name, judged_with in verdict.resolved.items():
            ref, _, revision = name.rpartition("@")
            if _COMMIT.match(revision):
                continue
            try:
                now, _info = await self.commit(ref, revision)
            except Refused as exc:  # fail closed: a dependency that cannot be resolved is not assumed unmoved
                raise Refused(
                    502, f"modelshield gateway: {repo} depends on {name}, which cannot be resolved upstream: {exc}"
                ) from exc
            if now != judged_with:
                moved[name] = (judged_with, now)
        return moved

    async def _stored_verdict(self, repo: str, commit: str, content: str, who: Client) -> tuple[Verdict | None, str]:
        """The stored verdict still valid for this content, and when none is, why (a dependency moved)."""
        verdict = await asyncio.to_thread(self.db.verdict, content, self.scanner, who.policy_digest)
        if verdict is None:
            return None, ""
        moved = await self._moved(repo, verdict)
        if not moved:
            return verdict, ""
        current = verdict.resolved | {name: now for name, (_old, now) in moved.items()}
        again = await asyncio.to_thread(
            self.db.verdict, dependent_key(content, current), self.scanner, who.policy_digest
        )
        if again is not None and not await self._moved(repo, again):
            return again, ""
        because = "; ".join(f"{name} moved from {old[:12]} to {now[:12]}" for name, (old, now) in moved.items())
        return None, f"judged again: {because}"

    async def _restore(
        self, repo: str, commit: str, manifest: dict[str, dict[str, Any]], who: Client, whole: bool
    ) -> None:
        """Check a revision's stored blobs: their sizes, or (before a verdict is computed from them) their
        digests; a blob that changed is quarantined and fetched again."""

        def check() -> list[tuple[str, str, Signature | None]]:
            changed: list[tuple[str, str, Signature | None]] = []
            for name, entry in manifest.items():
                sha256, size = str(entry["sha256"]), int(entry["size"])
                stat = self.store.intact(sha256, size)
                if stat is None:
                    changed.append((name, "is missing or not of its listed size", None))
                elif whole:
                    seen = self.store.verify(sha256, size)
                    if seen is None:
                        changed.append((name, "does not match its digest", signature(stat)))
                    else:
                        self._verified[sha256] = seen
            return changed

        for name, problem, seen in await asyncio.to_thread(check):
            await self._replace(repo, commit, name, manifest[name], who=who, problem=problem, seen=seen)

    async def _replace(
        self,
        repo: str,
        commit: str,
        name: str,
        entry: dict[str, Any],
        *,
        who: Client,
        problem: str,
        seen: Signature | None,
    ) -> None:
        """Quarantine a stored blob found changed and fetch it again, verified against the manifest the
        revision was judged with; fail closed (502, audited) when the upstream cannot give it."""
        sha256 = str(entry["sha256"])
        async with self._blob_locks.setdefault(sha256, asyncio.Lock()):
            current = await asyncio.to_thread(self.store.intact, sha256, int(entry["size"]))
            if current is not None and self._verified.get(sha256) == signature(current) != seen:
                return  # fetched again meanwhile by another request
            reason = f"the stored content {problem}: quarantined, fetched again"
            await self._audit(Decision(who.name, "verify", repo, commit, name, "error", reason))
            await asyncio.to_thread(self.store.quarantine, sha256, seen)
            sibling: dict[str, Any] = {"rfilename": name, "size": entry["size"], "blobId": entry.get("blob_id")}
            if entry["lfs"]:
                sibling["lfs"] = {"size": entry["size"], "sha256": sha256}
            try:
                again = await self.upstream.fetch(self.store, repo, commit, sibling)
                if again["sha256"] != sha256:
                    raise UpstreamError(f"upstream sent other bytes for {name} than were judged")
            except UpstreamError as exc:
                await self._audit(Decision(who.name, "fetch", repo, commit, name, "error", str(exc)))
                raise Refused(
                    502,
                    f"modelshield gateway: the stored {name} of {repo}@{commit[:12]} {problem} and the upstream "
                    f"cannot give it again ({exc}); not served",
                ) from exc
            fresh = await asyncio.to_thread(self.store.intact, sha256, int(entry["size"]))
            if fresh is not None:
                self._verified[sha256] = signature(fresh)
            self.restores += 1

    async def _info(self, repo: str, commit: str) -> dict[str, Any]:
        try:
            return await self.upstream.info(repo, commit)
        except UpstreamError as exc:
            raise Refused(exc.status, str(exc), "RevisionNotFound" if exc.status == 404 else None) from exc

    async def _fetch(self, repo: str, commit: str, info: dict[str, Any], who: Client) -> dict[str, dict[str, Any]]:
        siblings = [s for s in info.get("siblings", []) if isinstance(s, dict)]
        names = [str(s.get("rfilename", "")) for s in siblings]
        for name in names:
            try:
                valid_path(name)
            except Refused as exc:
                await self._audit(
                    Decision(who.name, "fetch", repo, commit, name, "error", "the upstream listing names a path trick")
                )
                raise Refused(502, f"upstream lists an invalid file name for {repo}: {name!r}") from exc
        total = sum(int((s.get("lfs") or {}).get("size", s.get("size", 0)) or 0) for s in siblings)
        if total > self.config.max_revision_bytes or len(siblings) > self.config.max_files:
            reason = f"{len(siblings)} files, {total} bytes: over the gateway's limit; not fetched"
            await self._audit(Decision(who.name, "fetch", repo, commit, "", "block", reason))
            raise Refused(403, f"modelshield gateway refused {repo}@{commit[:12]}: {reason}", "GatedRepo", commit)
        manifest: dict[str, dict[str, Any]] = {}
        log.info("fetch", extra={"fields": {"repo": repo, "commit": commit, "files": len(siblings)}})
        for sibling in siblings:
            try:
                manifest[str(sibling["rfilename"])] = await self.upstream.fetch(self.store, repo, commit, sibling)
            except UpstreamError as exc:
                name = str(sibling["rfilename"])
                await self._audit(Decision(who.name, "fetch", repo, commit, name, "error", str(exc)))
                raise Refused(
                    exc.status,
                    f"modelshield gateway: {exc}; nothing of {repo} is served until it is fetched and scanned whole",
                ) from exc
        return manifest

    async def _scan(
        self,
        repo: str,
        commit: str,
        manifest: dict[str, dict[str, Any]],
        who: Client,
        chain: tuple[tuple[str, str], ...],
        *,
        because: str = "",
    ) -> Verdict:
        """Scan the revision whole. Its Hub dependencies (an adapter's base model) are judged through the
        gateway itself, which fetches those missing from the store and moves the store's branch refs to
        the commits the upstream names now; the revision is scanned again when any of them changed, and
        the verdict records the commits it was judged with."""
        snapshot = self.store.snapshot(repo, commit)
        report = await self._run_scan(repo, commit, snapshot, who)
        changed, restores = False, self.restores
        for node in _hub_nodes(report):
            if len(chain) > MAX_DEPTH:
                break
            try:
                org, name = node.ref.split("/")
                dependency = await self.judged(
                    valid_repo(org, name), valid_revision(node.revision or "main"), who, chain
                )
            except (Refused, ValueError) as exc:  # not on the upstream: the scan's unresolved finding stands
                log.info("dependency", extra={"fields": {"repo": repo, "dependency": node.ref, "error": str(exc)}})
                continue
            changed |= node.resolution != "cached" or Path(str(node.path)).name != dependency.commit
            # judged earlier by this process: its snapshot, which this scan read, is put back to its blobs
            linked = await asyncio.to_thread(self.store.link, dependency.repo, dependency.commit, dependency.manifest)
            changed |= linked > 0
        if changed or self.restores != restores:
            report = await self._run_scan(repo, commit, snapshot, who)
        verdict = judge(report, snapshot.resolve(), self.store.hub.resolve())
        verdict.resolved = {
            f"{node.ref}@{node.revision or 'main'}": Path(str(node.path)).name
            for node in _hub_nodes(report)
            if node.resolution == "cached"
        }
        reason = blocked_message(Judged(repo, commit, manifest, {}, verdict), None) if verdict.blocked else "clean"
        reason = f"{because}; {reason}" if because else reason
        await self._audit(Decision(who.name, "scan", repo, commit, "", "block" if verdict.blocked else "allow", reason))
        return verdict

    async def _run_scan(self, repo: str, commit: str, snapshot: Path, who: Client) -> Report:
        self.scans += 1
        log.info("scan", extra={"fields": {"repo": repo, "commit": commit}})
        try:
            return await asyncio.to_thread(
                modelshield.scan, [str(snapshot)], who.policy, jobs=1, download=False, cache=False
            )
        except Exception as exc:  # a scan that did not finish never lets the files through
            await self._audit(Decision(who.name, "scan", repo, commit, "", "error", f"{type(exc).__name__}: {exc}"))
            raise Refused(500, f"modelshield gateway: the scan of {repo} did not finish; nothing is served") from exc

    async def _audit(self, entry: Decision) -> None:
        self.decisions[(entry.action, entry.decision)] += 1
        await asyncio.to_thread(self.db.log, entry)
        log.info("decision", extra={"fields": asdict(entry)})

    # -- responses -----------------------------------------------------------------------------------------

    def siblings(self, judged: Judged) -> list[dict[str, Any]]:
        rows = []
        for name, entry in judged.manifest.items():
            row: dict[str, Any] = {"rfilename": name, "size": entry["size"], "blobId": entry.get("blob_id")}
            if entry["lfs"]:
                row["lfs"] = {"size": entry["size"], "sha256": entry["sha256"], "pointerSize": 134}
            rows.append(row)
        return rows

    async def repo_info(self, request: Request) -> Response:
        who = await self.who(request)
        repo = valid_repo(request.path_params["org"], request.path_params["name"])
        revision = valid_revision(request.path_params.get("revision", "main"))
        await self._access(who, repo, revision)
        judged = await self.judged(repo, revision, who)
        await self._blocked(judged, None, who, self._pages(request))
        # Xet fields are never passed on: the client would fetch from the CAS directly, past the gateway.
        info = {k: v for k, v in judged.info.items() if "xet" not in k.lower()}
        info |= {"id": repo, "sha": judged.commit, "siblings": self.siblings(judged)}
        return JSONResponse(info)

    async def tree(self, request: Request) -> Response:
        who = await self.who(request)
        repo = valid_repo(request.path_params["org"], request.path_params["name"])
        revision = valid_revision(request.path_params["revision"])
        await self._access(who, repo, revision)
        judged = await self.judged(repo, revision, who)
        await self._blocked(judged, None, who, self._pages(request))
        prefix = request.path_params.get("path", "").strip("/")
        if prefix:
            valid_path(prefix)
        recursive = request.query_params.get("recursive", "").lower() in ("1", "true")
        rows: list[dict[str, Any]] = []
        folders: set[str] = set()
        for name, entry in sorted(judged.manifest.items()):
            if prefix and not name.startswith(prefix + "/"):
                continue
            rest = name[len(prefix) + 1 :] if prefix else name
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(filter(None, [prefix, *parts[:depth]]))
                if folder not in folders and (recursive or depth == 1):
                    folders.add(folder)
                    rows.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": folder})
            if len(parts) > 1 and not recursive:
                continue
            row: dict[str, Any] = {"type": "file", "oid": entry.get("blob_id"), "size": entry["size"], "path": name}
            if entry["lfs"]:
                row["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": 134}
            rows.append(row)
        return JSONResponse(rows)

    async def resolve(self, request: Request) -> Response:
        who = await self.who(request)
        repo = valid_repo(request.path_params["org"], request.path_params["name"])
        revision = valid_revision(request.path_params["revision"])
        path = valid_path(request.path_params["path"])
        await self._access(who, repo, revision, path)
        judged = await self.judged(repo, revision, who)
        entry = judged.manifest.get(path)
        if entry is None:
            raise Refused(404, f"{path} is not in {repo}@{judged.commit}", "EntryNotFound", judged.commit)
        await self._blocked(judged, path, who, self._pages(request))
        headers = {"ETag": f'"{entry["etag"]}"', "X-Repo-Commit": judged.commit}
        if entry["lfs"]:
            headers |= {"X-Linked-Etag": f'"{entry["sha256"]}"', "X-Linked-Size": str(entry["size"])}
        if request.method == "GET" and not judged.verdict.blocked:  # a waived verdict was audited with its waivers
            await self._audit(Decision(who.name, "serve", repo, judged.commit, path, "allow", "clean"))
        return await self._file(request, judged, path, entry, headers, who=who)

    async def _file(
        self,
        request: Request,
        judged: Judged,
        path: str,
        entry: dict[str, Any],
        headers: dict[str, str],
        *,
        who: Client,
    ) -> Response:
        """The stored blob, only as the bytes that were judged (see the module docstring)."""
        sha256, size = str(entry["sha256"]), int(entry["size"])
        stat = self.store.intact(sha256, size)  # one stat, inline: the response does not stat again in a thread
        if stat is None:
            problem = "is missing or not of its listed size"
            await self._replace(judged.repo, judged.commit, path, entry, who=who, problem=problem, seen=None)
            stat = await asyncio.to_thread(self.store.intact, sha256, size)
            if stat is None:
                raise Refused(503, f"modelshield gateway: the stored content of {path} is missing; not served")
        blob = self.store.blob(sha256)
        if request.method == "HEAD":
            return _BlobResponse(blob, headers=headers, media_type="application/octet-stream", stat_result=stat)
        if "range" in request.headers and not await asyncio.to_thread(self.store.tainted, sha256):
            if self._verified.get(sha256) != signature(stat):
                seen = await asyncio.to_thread(self.store.verify, sha256, size)
                if seen is None:
                    problem, seen = "does not match its digest", signature(stat)
                    await self._replace(judged.repo, judged.commit, path, entry, who=who, problem=problem, seen=seen)
                else:
                    self._verified[sha256] = seen
            return _BlobResponse(blob, headers=headers, media_type="application/octet-stream")

        async def verified(seen: Signature) -> None:
            self._verified[sha256] = seen

        async def changed(seen: Signature) -> None:
            reason = "the stored content does not match its digest: response cut off, blob quarantined"
            await self._audit(Decision(who.name, "verify", judged.repo, judged.commit, path, "error", reason))
            await asyncio.to_thread(self.store.quarantine, sha256, seen, True)

        try:
            handle = await asyncio.to_thread(blob.open, "rb")
        except FileNotFoundError as exc:
            raise Refused(503, f"modelshield gateway: the stored content of {path} is missing; not served") from exc
        return _VerifiedBlob(handle, size, sha256, headers, verified=verified, changed=changed)

    def _pages(self, request: Request) -> str:
        """Where this gateway's threat pages are, as the client reached it (`--public-url` when set)."""
        return self.config.public_url or f"{request.url.scheme}://{request.url.netloc}"

    async def rule_page(self, request: Request) -> Response:
        """`GET /rules/RULE`: a rule's threat page, for the developer a blocked download points to (public:
        it is the scanner's documentation, and names nothing the gateway served)."""
        page = ui.rule_page(request.path_params["rule"])
        if page is None:
            raise Refused(404, "no such rule (see `modelshield rules`)")
        return HTMLResponse(page, headers=_UI_HEADERS)

    async def _blocked(self, judged: Judged, path: str | None, who: Client, pages: str | None = None) -> None:
        """Refuse unless the client's team tolerates what the stored verdict found (waivers, trust)."""
        today = datetime.datetime.now(datetime.timezone.utc).date()
        left, waived = who.tolerance.decide(judged.repo, judged.verdict, today)
        if waived and not left:
            if path is not None:  # files are audited; listings of a tolerated revision are not
                reason = "; ".join(waived)
                await self._audit(Decision(who.name, "serve", judged.repo, judged.commit, path, "allow", reason))
            return
        if left:
            left_only = replace(judged, verdict=Verdict(True, left))
            message = blocked_message(left_only, path)  # the audit log names no client-given host
            await self._audit(Decision(who.name, "serve", judged.repo, judged.commit, path or "", "block", message))
            # GatedRepo: huggingface_hub raises it as is (GatedRepoError, with this message) instead of
            # falling back to its cache, and transformers shows it to the developer.
            raise Refused(403, blocked_message(left_only, path, pages), "GatedRepo", judged.commit)

    async def _access(self, who: Client, repo: str, revision: str, path: str = "") -> None:
        """Refuse, before anything is fetched or scanned, a repository the team's policy keeps it from."""
        refused = who.tolerance.refuses(repo)
        if refused is not None:
            message = f"modelshield gateway refused {repo}: {refused}"
            await self._audit(Decision(who.name, "serve", repo, revision, path, "block", message))
            raise Refused(403, message, "GatedRepo")

    async def scan_upload(self, request: Request) -> Response:
        """`POST /api/scan?name=FILE&format=json|sarif`: scan the body (a model file or archive) with the
        gateway's policy and answer the report; the verdict is recorded as for fetched revisions, so CI and
        registries gate uploads on the same policy and database."""
        who = await self.who(request)
        name = valid_path(request.query_params.get("name", "upload.bin"))
        fmt = request.query_params.get("format", "json")
        if "/" in name or fmt not in ("json", "sarif"):
            raise Refused(400, "name must be a file name and format json or sarif")
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, dir=self.store.tmp, prefix="upload-"))
        try:
            digest, size = hashlib.sha256(), 0
            with (folder / name).open("wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self.config.max_revision_bytes:
                        raise Refused(413, "upload over the gateway's limit")
                    digest.update(chunk)
                    out.write(chunk)
            report = await self._run_scan("upload", digest.hexdigest(), folder, who)
            verdict = judge(report, folder.resolve(), self.store.hub.resolve())
            await asyncio.to_thread(self.db.save_verdict, digest.hexdigest(), self.scanner, who.policy_digest, verdict)
            # The team's gateway policy too (blocked formats and rules, waivers): CI gates as downloads do.
            left, _waived = who.tolerance.decide("upload", verdict, datetime.datetime.now(datetime.timezone.utc).date())
            decision = "block" if left else "allow"
            reasons = "; ".join(f"{r['rule']} in {r['file']}" for r in left) or "clean"
            await self._audit(Decision(who.name, "upload", "upload", digest.hexdigest(), name, decision, reasons))
            body = await asyncio.to_thread(render, fmt, report)
            body = body.replace(str(folder.resolve()), "upload").replace(str(folder), "upload")
            media = "application/sarif+json" if fmt == "sarif" else "application/json"
            return Response(body, media_type=media, headers={"X-Modelshield-Verdict": decision})
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)

    # -- the security team's page ----------------------------------------------------------------------

    async def _ui_team(self, token: str) -> str | None:
        team = await asyncio.to_thread(self.db.team, token) if token else None
        return team if team in self.config.admin_teams else None

    async def ui_page(self, request: Request) -> Response:
        team = await self._ui_team(request.cookies.get(_UI_COOKIE, ""))
        if team is None:
            return HTMLResponse(ui.login(), headers=_UI_HEADERS)  # the sign-in form is the page

        def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
            return self.db.audit_log(200), self.db.blocked(self.scanner), self.db.audit_size()

        decisions, blocked, size = await asyncio.to_thread(read)
        return HTMLResponse(ui.dashboard(team, decisions, blocked, size), headers=_UI_HEADERS)

    async def ui_login(self, request: Request) -> Response:
        """The token arrives in a form post and goes back as an HttpOnly, same-site cookie for /ui only."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > 4096:
                raise Refused(413, "form over 4 KiB")
        token = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0].strip()
        team = await self._ui_team(token)
        if team is None:
            await self._audit(Decision("unknown", "ui", "", "", "/ui", "block", "sign-in refused"))
            return HTMLResponse(ui.login("Unknown token, or not a security team's."), 401, headers=_UI_HEADERS)
        response = RedirectResponse("/ui", 303, headers=_UI_HEADERS)
        secure = request.url.scheme == "https"
        response.set_cookie(_UI_COOKIE, token, path="/ui", httponly=True, samesite="strict", secure=secure)
        return response

    async def metrics(self, request: Request) -> Response:
        """Prometheus text format: counts only (no repository names, no clients)."""
        lines = [
            "# HELP modelshield_gateway_scans_total Scans run by this process.",
            "# TYPE modelshield_gateway_scans_total counter",
            f"modelshield_gateway_scans_total {self.scans}",
            "# HELP modelshield_gateway_decisions_total Audited decisions by action and outcome.",
            "# TYPE modelshield_gateway_decisions_total counter",
        ]
        lines += [
            f'modelshield_gateway_decisions_total{{action="{action}",decision="{decision}"}} {count}'
            for (action, decision), count in sorted(self.decisions.items())
        ]
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    async def health(self, request: Request) -> Response:
        try:
            await asyncio.to_thread(self.db.audit_log, 1)
        except Exception as exc:
            return JSONResponse({"status": "error", "reason": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "scanner": self.scanner, "policy": self.config.policy_digest})


class _BlobResponse(FileResponse):
    chunk_size = 1 << 20  # Starlette's 64 KiB chunks cost a large share of throughput on model-sized files


class _VerifiedBlob(Response):
    """A whole blob, hashed as it is sent: the last chunk goes out only once the digest matched, otherwise
    the response is left unfinished (the server closes the connection) and `changed` is called."""

    chunk_size = 1 << 20

    def __init__(
        self,
        handle: Any,
        size: int,
        sha256: str,
        headers: dict[str, str],
        *,
        verified: Callable[[Signature], Awaitable[None]],
        changed: Callable[[Signature], Awaitable[None]],
    ) -> None:
        super().__init__(None, 200, headers | {"Content-Length": str(size)}, "application/octet-stream")
        self.handle, self.size, self.sha256 = handle, size, sha256
        self.verified, self.changed = verified, changed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        digest, read_so_far = hashlib.sha256(), 0

        def read() -> bytes:
            nonlocal read_so_far
            chunk: bytes = self.handle.read(min(self.chunk_size, self.size + 1 - read_so_far))  # one byte past
            digest.update(chunk)  # hashlib releases the GIL: hashing runs beside the event loop
            read_so_far += len(chunk)
            return chunk

        try:
            seen = signature(os.fstat(self.handle.fileno()))
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            held = b""
            while read_so_far <= self.size and (chunk := await asyncio.to_thread(read)):
                if held:
                    await send({"type": "http.response.body", "body": held, "more_body": True})
                held = chunk
            if read_so_far != self.size or digest.hexdigest() != self.sha256:
                await self.changed(seen)
                return
            await send({"type": "http.response.body", "body": held, "more_body": False})
            await self.verified(seen)
        finally:
            self.handle.close()


def _refusal(exc: Refused) -> Response:
    headers = {"X-Error-Message": exc.args[0].encode("ascii", "replace").decode()[:1000]}
    if exc.code:
        headers["X-Error-Code"] = exc.code
    if exc.commit:
        headers["X-Repo-Commit"] = exc.commit
    return JSONResponse({"error": exc.args[0]}, status_code=exc.status, headers=headers)


def create_app(config: Config) -> Starlette:
    gateway = Gateway(config)

    def wrap(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                response: Response = await handler(request)
                return response
            except Refused as exc:
                return _refusal(exc)
            except Exception as exc:  # a bug: answer 500, log it, never serve
                log.exception("internal error", extra={"fields": {"path": request.url.path}})
                return _refusal(Refused(500, f"modelshield gateway: internal error ({type(exc).__name__})"))

        return endpoint

    routes = [
        Route("/health", wrap(gateway.health), methods=["GET"]),
        Route("/metrics", wrap(gateway.metrics), methods=["GET"]),
        Route("/api/scan", wrap(gateway.scan_upload), methods=["POST"]),
        Route("/ui", wrap(gateway.ui_page), methods=["GET"]),
        Route("/rules/{rule}", wrap(gateway.rule_page), methods=["GET"]),
        Route("/ui/login", wrap(gateway.ui_login), methods=["POST"]),
        Route("/api/models/{org}/{name}", wrap(gateway.repo_info), methods=["GET"]),
        Route("/api/models/{org}/{name}/revision/{revision}", wrap(gateway.repo_info), methods=["GET"]),
        Route("/api/models/{org}/{name}/tree/{revision}", wrap(gateway.tree), methods=["GET"]),
        Route("/api/models/{org}/{name}/tree/{revision}/{path:path}", wrap(gateway.tree), methods=["GET"]),
        Route("/{org}/{name}/resolve/{revision}/{path:path}", wrap(gateway.resolve), methods=["GET", "HEAD"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.upstream.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    return app


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, event and its fields (never a token: none is logged)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry |= getattr(record, "fields", {})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def dependent_key(content: str, dependencies: dict[str, str]) -> str:
    """The key of a verdict judged again because a dependency moved: the content and the commits."""
    text = "\n".join([content, *(f"{name}={commit}" for name, commit in sorted(dependencies.items()))])
    return hashlib.sha256(text.encode()).hexdigest()


def _hub_nodes(report: Report) -> list[Any]:
    """The Hub dependencies the scan named, each ref@revision once (trusted and unfollowed ones aside)."""
    nodes = report.dependencies.nodes if report.dependencies else []
    unique = {(n.ref, n.revision): n for n in nodes if n.kind == "hub" and n.resolution in ("cached", "unresolved")}
    return list(unique.values())


def policy_digest(path: str | None) -> str:
    """What keys a scanner policy's stored verdicts: everything the policy file says, with its paths
    resolved (suppressions and the public key are relative to the file's folder), and the bytes of the
    public key it names: a new key, or a key file replaced in place, re-judges. Raises `PolicyError` for a
    policy the gateway could not scan with (a required signature without a readable key)."""
    if path is None:
        return "default"
    policy = load_policy(path)
    digest = hashlib.sha256(cached_policy_digest(policy).encode())
    if policy.public_key is not None:
        try:
            digest.update(os.path.realpath(policy.public_key).encode() + b"\0" + Path(policy.public_key).read_bytes())
        except OSError as exc:
            raise PolicyError(f"{path}: cannot read its public-key {policy.public_key}: {exc.strerror}") from None
    elif policy.require_signature:
        raise PolicyError(f"{path}: require-signature = true needs a public-key")
    return digest.hexdigest()
