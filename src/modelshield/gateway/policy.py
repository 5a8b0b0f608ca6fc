"""The gateway's own policy file: each team's risk tolerance on top of the scanner's Policy.

The scanner's policy (`--policy`, `--team-policy`) decides what is found and at which severity a finding
fails; its digest keys the stored verdicts. This file decides what the gateway does with a stored
verdict: waive rules or formats for a reason until a date, trust organisations or repositories, let
unscannable files through or not. It is applied when a file is asked for, to the verdict's recorded
reasons, so changing it re-judges every stored verdict without fetching or scanning anything again.

    [default]                    # teams without a table of their own
    unscannable = "block"        # or "allow": files the scanner could not analyse (see UNSCANNABLE)
    trusted = ["our-org/*"]      # repository globs served whatever the verdict (still scanned, audited)
    [[default.waive]]
    rule = "PKL001"              # a rule id, or format = "torch-checkpoint" (a detected format, or a
                                 # layer of one: zip+torch-checkpoint)
    repo = "org/model"           # optional: only there (a glob; every repository by default)
    reason = "reviewed by J. Doe, ticket SEC-12"
    expires = 2027-01-31         # required; the waiver applies through that day (UTC), then no more
    [team.research]              # the same keys, replacing [default] for team `research`
"""

from __future__ import annotations

import datetime
import fnmatch
import hashlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelshield.core.rules import CATALOGUE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the `tomli` backport on 3.10
    import tomli as tomllib

UNSCANNED = "UNSCANNED"
#: what `unscannable = "allow"` lets through: a scan error, and the rules that say a file (or a part of
#: it) could not be analysed; never a bomb (SCN005), a polyglot or a misleading name with known content
UNSCANNABLE = frozenset({UNSCANNED, "SCN003", "SCN004", "TPL006", "TSC005", "PKG003"})


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
class Tolerance:
    """One team's risk tolerance (the built-in one blocks whatever the verdict blocks)."""

    waivers: tuple[Waiver, ...] = ()
    trusted: tuple[str, ...] = ()
    unscannable_blocks: bool = True

    def decide(
        self, repo: str, reasons: list[dict[str, str]], today: datetime.date
    ) -> tuple[list[dict[str, str]], list[str]]:
        """(the reasons that still block, why the others do not) for a verdict of `repo`."""
        if any(fnmatch.fnmatchcase(repo.lower(), glob.lower()) for glob in self.trusted):
            return [], [f"trusted repository ({', '.join(self.trusted)})"] if reasons else []
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
        return left, waived


@dataclass(frozen=True)
class GatewayPolicy:
    default: Tolerance = field(default_factory=Tolerance)
    teams: Mapping[str, Tolerance] = field(default_factory=dict)
    digest: str = "default"

    def for_team(self, team: str | None) -> Tolerance:
        return self.teams.get(team, self.default) if team is not None else self.default


def _tolerance(table: Any, where: str) -> Tolerance:
    if not isinstance(table, dict):
        raise GatewayPolicyError(f"{where} must be a table")
    unknown = sorted(set(table) - {"waive", "trusted", "unscannable"})
    if unknown:
        raise GatewayPolicyError(f"unknown key {unknown[0]!r} in {where} (allowed: trusted, unscannable, waive)")
    unscannable = table.get("unscannable", "block")
    if unscannable not in ("block", "allow"):
        raise GatewayPolicyError(f"{where}.unscannable must be 'block' or 'allow'")
    trusted = table.get("trusted", [])
    if not (isinstance(trusted, list) and all(isinstance(t, str) and "/" in t for t in trusted)):
        raise GatewayPolicyError(f"{where}.trusted must be a list of ORG/NAME globs")
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
        if rule is not None and (not isinstance(rule, str) or (rule.upper() != UNSCANNED and rule not in CATALOGUE)):
            raise GatewayPolicyError(f"{here}: {rule!r} is not a rule id (see 'modelshield rules')")
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
        waivers.append(Waiver(reason.strip(), expires, rule.upper() if rule else None, fmt, repo))
    return Tolerance(tuple(waivers), tuple(trusted), unscannable == "block")


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
