"""Checks shared by every archive handler: member names that escape, link targets, duplicate names."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator

from modelshield.containers.rules import DUPLICATE_NAME, LINK_ESCAPE, PATH_ESCAPE
from modelshield.core.findings import Finding
from modelshield.core.handler import Context

_DRIVE = re.compile(r"^[A-Za-z]:")


def escape_reason(name: str) -> str | None:
    """Why extracting a member called `name` would write outside the target folder, or None."""
    if "\\" in name:
        # Windows extractors treat backslashes as separators; judge the name as they would.
        windows = escape_reason(name.replace("\\", "/"))
        return f"{windows} (with backslash separators)" if windows else None
    if name.startswith("/"):
        return "absolute path"
    if _DRIVE.match(name):
        return "Windows drive-letter path"
    depth = 0
    for part in name.split("/"):
        depth += -1 if part == ".." else (part not in ("", "."))
        if depth < 0:
            return "climbs out of the extraction folder with '..'"
    return None


def link_escapes(member: str, target: str, *, hard: bool = False) -> bool:
    """Whether a link member's target lies outside the archive root (symlinks resolve from their folder)."""
    target = target.replace("\\", "/")
    if target.startswith("/") or _DRIVE.match(target):
        return True
    base = "" if hard else posixpath.dirname(member.replace("\\", "/"))
    resolved = posixpath.normpath(posixpath.join("/root", base, target))
    return not (resolved == "/root" or resolved.startswith("/root/"))


class MemberNames:
    """Gives every member a distinct display name: `data.pkl`, then `data.pkl[#2]`, `data.pkl[#3]`."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def add(self, name: str) -> tuple[str, int]:
        """The display name for the next member called `name`, and which copy (1-based) it is."""
        count = self._seen.get(name, 0) + 1
        self._seen[name] = count
        return (name if count == 1 else f"{name}[#{count}]"), count


def name_findings(ctx: Context, names: MemberNames, name: str) -> tuple[str, list[Finding]]:
    """The member's display name and the name-level findings (escape, duplicate) every archive reports."""
    display, copy = names.add(name)
    found: list[Finding] = []
    reason = escape_reason(name)
    if reason:
        found.append(ctx.finding(PATH_ESCAPE, f"member name {name!r}: {reason}", member=display))
    if copy > 1:
        found.append(
            ctx.finding(DUPLICATE_NAME, f"copy #{copy} of member {name!r}; every copy is scanned", member=display)
        )
    return display, found


def link_findings(ctx: Context, display: str, name: str, target: str, *, hard: bool = False) -> Iterator[Finding]:
    """A finding if a link member points outside the archive."""
    if link_escapes(name, target, hard=hard):
        kind = "hard link" if hard else "symbolic link"
        yield ctx.finding(LINK_ESCAPE, f"{kind} {name!r} -> {target!r} points outside the archive", member=display)
