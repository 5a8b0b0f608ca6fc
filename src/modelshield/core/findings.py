"""The one finding model every scanner produces and every report renders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelshield.core.rules import Category, Rule, Severity

MEMBER_SEPARATOR = "!"
EVIDENCE_LIMIT = 400


def truncate(text: str, limit: int = EVIDENCE_LIMIT) -> str:
    """Bound evidence so hostile files cannot flood reports."""
    if len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


@dataclass(frozen=True)
class Location:
    """Where a finding sits: a file on disk, the chain of members inside it, a byte offset."""

    path: str
    members: tuple[str, ...] = ()
    offset: int | None = None

    def child(self, member: str) -> Location:
        """The location of a member inside the object at this location."""
        return Location(self.path, (*self.members, member))

    def at(self, offset: int | None) -> Location:
        return Location(self.path, self.members, offset)

    @property
    def display(self) -> str:
        """`bundle.zip!model/pytorch_model.bin!archive/data.pkl`: the file and its member chain."""
        return MEMBER_SEPARATOR.join((self.path, *self.members))

    def __str__(self) -> str:
        text = self.display
        return text if self.offset is None else f"{text}@{self.offset}"


@dataclass(frozen=True)
class Finding:
    """One observation: which rule, where, what was seen, and how severe (after policy)."""

    rule: Rule
    location: Location
    evidence: str
    severity: Severity | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", truncate(self.evidence))
        if self.severity is None:
            object.__setattr__(self, "severity", self.rule.severity)

    @property
    def level(self) -> Severity:
        """The effective severity (the rule's default unless the scanner or policy changed it)."""
        assert self.severity is not None
        return self.severity

    @property
    def rule_id(self) -> str:
        return self.rule.id

    @property
    def title(self) -> str:
        return self.rule.title

    @property
    def category(self) -> Category:
        return self.rule.category

    @property
    def remediation(self) -> str:
        return self.rule.remediation
