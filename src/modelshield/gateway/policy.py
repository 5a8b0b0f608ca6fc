"""The gateway's own policy file: each team's risk tolerance on top of the scanner's Policy.

The scanner's policy (`--policy`, `--team-policy`) decides what is found, at which severity a finding
fails and whether a signature is required; its digest keys the stored verdicts. This file decides what
the gateway does with a stored verdict: block rules or formats whatever their severity, waive them for a
reason until a date, trust organisations or repositories, let unscannable files through or not, and which
repositories a team may ask for at all. It is applied when a file is asked for, to the verdict's recorded
findings and formats, so changing it re-judges every stored verdict without fetching or scanning again.

    [default]                    # teams without a table of their own
    unscannable = "block"        # or "allow": files the scanner could not analyse (see UNSCANNABLE)
    trusted = ["our-org/*"]      # repository globs served whatever the verdict (still scanned, audited)
    allow = ["our-org/*", "google-bert/*"]  # optional: the only repositories the team may ask for
    deny = ["our-org/scratch-*"] # repositories it may never ask for (both checked before any fetch,
                                 # and a revision that loads such a repository, an adapter's base, blocks)
    block = [{rule = "TSC001"}, {format = "pickle", reason = "no pickles, SEC-7"}]
                                 # always block: a rule at any severity (even below fail-on; not when
                                 # the scanner policy suppresses it), or a format: a file's detected
                                 # format, a layer of it (torch-checkpoint in zip+torch-checkpoint) or one
                                 # found inside it (the pickle in a checkpoint), even when the scan found
                                 # nothing; in the revision's dependencies too; optional repo glob, reason
    [[default.waive]]
    rule = "PKL001"              # a rule id, or format = "torch-checkpoint" (a detected format, or a
                                 # layer of one: zip+torch-checkpoint)
    repo = "org/model"           # optional: only there (a glob; every repository by default)
    reason = "reviewed by J. Doe, ticket SEC-12"
    expires = 2027-01-31         # required; the waiver applies through that day (UTC), then no more
    [team.research]              # the same keys, replacing [default] for team `research`

Order: a repository outside `allow` or inside `deny` is refused first; a trusted one is then served; the
scan's failing reasons and the `block` entries are left, minus what waivers and `unscannable` let through.
A waiver therefore scopes an exception to a block (block pickle, waive it for one repository until a date).
Files posted to `/api/scan` are judged as the repository `upload`. Required signatures belong to the
scanner policy (`require-signature`, `public-key` in a `--team-policy` file): they change what is found.
"""

from __future__ import annotations

import datetime
import fnmatch
import hashlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelshield.core.rules import CATALOGUE
from modelshield.registry import HANDLERS

if TYPE_CHECKING:
    from modelshield.gateway.db import Verdict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the `tomli` backport on 3.10
    import tomli as tomllib

UNSCANNED = "UNSCANNED"
#: what `unscannable = "allow"` lets through: a scan error, and the rules that say a file (or a part of
#: it) could not be analysed; never a bomb (SCN005), a polyglot or a misleading name with known content
UNSCANNABLE = frozenset({UNSCANNED, "SCN003", "SCN004", "TPL006", "TSC005", "PKG003"})
#: the `rule` of a reason for a file of the revision the scanner walked past (under .git/): not waivable
SKIPPED = "SKIPPED"
#: the `rule` of a reason that a `block = [{format = ...}]` entry adds (not a catalogue rule)
BLOCKED_FORMAT = "FORMAT"
#: the `rule` of a reason for a dependency the team's `allow`/`deny` lists keep it from
DENIED_DEPENDENCY = "ACCESS"
#: what a format entry may name: the formats the scanner detects (layers join them with `+`)
FORMATS = frozenset(handler.name for handler in HANDLERS)


class GatewayPolicyError(ValueError):
    """The gateway policy file is invalid: the gateway does not start (a typo must not open a gate)."""


@dataclass(frozen=True)
class Waiver:
    reason: str
    expires: datetime.date
    rule: str | None = None
    format: str | None = None
    repo: str = "*"

    def covers(self, reason: Mapping[str, str], repo: str, today: datetime.date) -> bool:
        if today > self.expires or not fnmatch.fnmatchcase(repo.lower(), self.repo.lower()):
            return False
        if self.rule is not None:
            return reason.get("rule") == self.rule
        detected = reason.get("format", "")  # e.g. zip+torch-checkpoint: the whole, or one layer of it
        return self.format in (detected, *detected.split("+"))

    def describe(self) -> str:
        what = f"rule {self.rule}" if self.rule else f"format {self.format}"
        return f"{what} waived until {self.expires.isoformat()}: {self.reason}"


@dataclass(frozen=True)
class Block:
    """A rule or a format a team never takes, whatever its severity or the scan's verdict."""

    rule: str | None = None
    format: str | None = None
    repo: str = "*"
    reason: str = ""

    def describe(self, scope: str) -> str:
        what = f"rule {self.rule}" if self.rule else f"format {self.format}"
        return f"{what} always blocks for {scope}" + (f" ({self.reason})" if self.reason else "")

    def reasons(self, verdict: Verdict, scope: str, known: set[tuple[str, str]]) -> list[dict[str, str]]:
        """The reasons this entry adds to a verdict (`known`: the (rule, file) pairs already blocking)."""
        recorded = verdict.findings if self.rule else verdict.formats
        if recorded is None:  # a verdict stored before findings and formats were: fail closed
            if self.rule and any(r.get("rule") == self.rule for r in verdict.reasons):
                return []  # it fails already
            why = f"{self.describe(scope)}, and the stored verdict predates the record of every finding and format"
            return [
                _policy_reason(
                    self.rule or BLOCKED_FORMAT, "*", why + " (a new scanner re-scans)", fmt=self.format or ""
                )
            ]
        found = []
        if self.rule:
            for finding in verdict.findings or ():
                where = (finding.get("rule", ""), finding.get("file", ""))
                if where[0] == self.rule and where not in known:
                    known.add(where)
                    title = f"{finding.get('title', '')}; {self.describe(scope)}"
                    found.append({"evidence": "", "format": "unknown"} | finding | {"title": title})
            return found
        matching: dict[tuple[str, ...], bool] = {}  # most files share a few format lists: decide each once
        for file, formats in (verdict.formats or {}).items():
            key = tuple(formats)
            if key not in matching:
                matching[key] = any(self.format in (detected, *detected.split("+")) for detected in formats)
            if matching[key] and (BLOCKED_FORMAT, file) not in known:
                known.add((BLOCKED_FORMAT, file))
                # its format is the blocked one: what a format waiver for it names
                found.append(
                    _policy_reason(
                        BLOCKED_FORMAT, file, self.describe(scope), f"detected {' '.join(formats)}", self.format or ""
                    )
                )
        return found


def _matches(repo: str, globs: tuple[str, ...]) -> str | None:
    """The first glob `repo` matches (case-insensitively, as the Hub names repositories)."""
    return next((glob for glob in globs if fnmatch.fnmatchcase(repo.lower(), glob.lower())), None)


@dataclass(frozen=True)
class Tolerance:
    """One team's risk tolerance (the built-in one blocks whatever the verdict blocks)."""

    waivers: tuple[Waiver, ...] = ()
    trusted: tuple[str, ...] = ()
    unscannable_blocks: bool = True
    blocks: tuple[Block, ...] = ()
    #: repository globs the team may ask for (empty: any) and may never ask for
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    #: whose tolerance this is, in messages ("team research", "the default policy")
    scope: str = "the default policy"

    def refuses(self, repo: str) -> str | None:
        """Why the team may not ask for `repo` at all (None when it may)."""
        denied = _matches(repo, self.deny)
        if denied is not None:
            return f"the gateway policy of {self.scope} denies {repo} (deny {denied})"
        if self.allow and _matches(repo, self.allow) is None:
            return f"the gateway policy of {self.scope} does not allow {repo} (allow: {', '.join(self.allow)})"
        return None

    def decide(self, repo: str, verdict: Verdict, today: datetime.date) -> tuple[list[dict[str, str]], list[str]]:
        """(the reasons that still block, why the others do not) for a verdict of `repo`."""
        reasons = list(verdict.reasons)
        known = {(r.get("rule", ""), r.get("file", "")) for r in reasons}
        for block in self.blocks:
            if fnmatch.fnmatchcase(repo.lower(), block.repo.lower()):
                reasons += block.reasons(verdict, self.scope, known)
        denied = self._denied_dependencies(verdict)  # not lifted by trust nor waivers, as for the repository
        if _matches(repo, self.trusted) is not None:
            return denied, [f"trusted repository ({', '.join(self.trusted)})"] if reasons else []
        left, waived = [], []
        for reason in reasons:
            if reason.get("rule") in UNSCANNABLE and not self.unscannable_blocks:
                waived.append(f"{reason.get('rule')} in {reason.get('file', '')}: unscannable, allowed by policy")
                continue
            waiver = next((w for w in self.waivers if w.covers(reason, repo, today)), None)
            if waiver is None:
                left.append(reason)
            else:
                waived.append(f"{reason.get('rule')} in {reason.get('file', '')}: {waiver.describe()}")
        return denied + left, waived

    def _denied_dependencies(self, verdict: Verdict) -> list[dict[str, str]]:
        """A revision that loads a repository the team may not ask for (an adapter on a denied base)."""
        if not (self.allow or self.deny):
            return []
        if verdict.dependencies is None:  # stored before dependencies were recorded: fail closed
            why = f"the gateway policy of {self.scope} limits repositories, and the stored verdict predates "
            return [_policy_reason(DENIED_DEPENDENCY, "*", why + "the record of dependencies (a new scanner re-scans)")]
        return [
            _policy_reason(DENIED_DEPENDENCY, dependency, f"{refused}, and this revision loads it")
            for dependency in verdict.dependencies
            if (refused := self.refuses(dependency)) is not None
        ]


def _policy_reason(rule: str, file: str, title: str, evidence: str = "", fmt: str = "") -> dict[str, str]:
    """A reason the team's policy adds to a verdict (its severity is `policy`: no finding set it)."""
    return {
        "rule": rule,
        "severity": "policy",
        "file": file,
        "member": "",
        "title": title,
        "evidence": evidence,
        "format": fmt,
    }


@dataclass(frozen=True)
class GatewayPolicy:
    default: Tolerance = field(default_factory=Tolerance)
    teams: Mapping[str, Tolerance] = field(default_factory=dict)
    digest: str = "default"

    def for_team(self, team: str | None) -> Tolerance:
        return self.teams.get(team, self.default) if team is not None else self.default


def _globs(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    globs = table.get(key, [])
    if not (isinstance(globs, list) and all(isinstance(g, str) and "/" in g for g in globs)):
        raise GatewayPolicyError(f"{where}.{key} must be a list of ORG/NAME globs")
    return tuple(globs)


def _rule(value: Any, here: str) -> str:
    if not isinstance(value, str) or (value.upper() != UNSCANNED and value.upper() not in CATALOGUE):
        raise GatewayPolicyError(f"{here}: {value!r} is not a rule id (see 'modelshield rules')")
    return value.upper()


def _blocks(entries: Any, where: str) -> tuple[Block, ...]:
    if not isinstance(entries, list):
        raise GatewayPolicyError(f"{where}.block must be a list of tables ({{rule = ...}} or {{format = ...}})")
    blocks = []
    for number, entry in enumerate(entries, 1):
        here = f"{where}.block #{number}"
        if not isinstance(entry, dict):
            raise GatewayPolicyError(f"{here} must be a table")
        unknown = sorted(set(entry) - {"rule", "format", "repo", "reason"})
        if unknown:
            raise GatewayPolicyError(f"unknown key {unknown[0]!r} in {here}")
        rule, fmt = entry.get("rule"), entry.get("format")
        if (rule is None) == (fmt is None):
            raise GatewayPolicyError(f"{here} needs exactly one of rule or format")
        if rule is not None and _rule(rule, here) == UNSCANNED:
            raise GatewayPolicyError(f"{here}: unscanned files are governed by unscannable = 'block'")
        if fmt is not None and fmt not in FORMATS:  # a typo would silently block nothing
            raise GatewayPolicyError(f"{here}: {fmt!r} is not a format the scanner detects (one of {sorted(FORMATS)})")
        repo, reason = entry.get("repo", "*"), entry.get("reason", "")
        if not isinstance(repo, str) or not isinstance(reason, str):
            raise GatewayPolicyError(f"{here}: repo must be a glob and reason a string")
        blocks.append(Block(rule.upper() if rule else None, fmt, repo, reason.strip()))
    return tuple(blocks)


def _tolerance(table: Any, where: str) -> Tolerance:
    if not isinstance(table, dict):
        raise GatewayPolicyError(f"{where} must be a table")
    keys = {"waive", "trusted", "unscannable", "block", "allow", "deny"}
    unknown = sorted(set(table) - keys)
    if unknown:
        raise GatewayPolicyError(f"unknown key {unknown[0]!r} in {where} (allowed: {', '.join(sorted(keys))})")
    unscannable = table.get("unscannable", "block")
    if unscannable not in ("block", "allow"):
        raise GatewayPolicyError(f"{where}.unscannable must be 'block' or 'allow'")
    waivers = []
    for number, entry in enumerate(table.get("waive", []), 1):
        here = f"{where}.waive #{number}"
        if not isinstance(entry, dict):
            raise GatewayPolicyError(f"{here} must be a table")
        unknown = sorted(set(entry) - {"rule", "format", "repo", "reason", "expires"})
        if unknown:
            raise GatewayPolicyError(f"unknown key {unknown[0]!r} in {here}")
        rule, fmt = entry.get("rule"), entry.get("format")
        if (rule is None) == (fmt is None):
            raise GatewayPolicyError(f"{here} needs exactly one of rule or format")
        if rule is not None:
            rule = _rule(rule, here)
        if fmt is not None and not (isinstance(fmt, str) and fmt):
            raise GatewayPolicyError(f"{here}: format must be a format name")
        reason, expires = entry.get("reason"), entry.get("expires")
        if not (isinstance(reason, str) and reason.strip()):
            raise GatewayPolicyError(f"{here} needs a reason")
        if not isinstance(expires, datetime.date) or isinstance(expires, datetime.datetime):
            raise GatewayPolicyError(f"{here} needs an expiry date (expires = YYYY-MM-DD)")
        repo = entry.get("repo", "*")
        if not isinstance(repo, str):
            raise GatewayPolicyError(f"{here}: repo must be a glob")
        waivers.append(Waiver(reason.strip(), expires, rule, fmt, repo))
    scope = "the default policy" if where == "default" else where.replace(".", " ", 1)
    return Tolerance(
        tuple(waivers),
        _globs(table, "trusted", where),
        unscannable == "block",
        _blocks(table.get("block", []), where),
        _globs(table, "allow", where),
        _globs(table, "deny", where),
        scope,
    )


def load_gateway_policy(path: str | None) -> GatewayPolicy:
    if path is None:
        return GatewayPolicy()
    data = Path(path).read_bytes()
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise GatewayPolicyError(f"{path}: {exc}") from exc
    unknown = sorted(set(document) - {"default", "team"})
    if unknown:
        raise GatewayPolicyError(f"unknown key {unknown[0]!r} in {path} (allowed: default, team)")
    teams = document.get("team", {})
    if not isinstance(teams, dict):
        raise GatewayPolicyError("team must be a table of team tables")
    return GatewayPolicy(
        _tolerance(document.get("default", {}), "default"),
        {name: _tolerance(table, f"team.{name}") for name, table in teams.items()},
        hashlib.sha256(data).hexdigest(),
    )
