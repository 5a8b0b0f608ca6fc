"""The rule catalogue: every rule the scanner can report, with its threat page."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


class Severity(enum.IntEnum):
    """How badly a finding can hurt; ordered so that comparisons mean 'at least'."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """Parse a user-supplied severity name, case-insensitively."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of: {names})") from None


class Category(enum.Enum):
    """The kind of threat a rule describes; stable strings used in JSON and SARIF."""

    LOAD_TIME_CODE = "code-at-load-time"
    INFERENCE_TIME_CODE = "code-at-inference-time"
    MODEL_DEPENDENCY = "model-dependency"
    ARCHIVE = "archive-and-container"
    INTEGRITY = "integrity"
    TEMPLATE = "template"


@dataclass(frozen=True)
class Rule:
    """A stable rule id with the threat page shown by `modelshield explain` and embedded in SARIF."""

    id: str
    title: str
    severity: Severity
    category: Category
    overview: str
    attack: str
    impact: str
    remediation: str
    example: str = ""

    def page(self) -> str:
        """The rule's threat page as Markdown."""
        parts = [
            f"# {self.id}: {self.title}",
            f"Default severity: **{self.severity.label}** · Category: `{self.category.value}`",
            "## Overview",
            self.overview,
            "## How the attack works",
            self.attack,
            "## Impact",
            self.impact,
        ]
        if self.example:
            parts += ["## Example", self.example]
        parts += ["## Remediation", self.remediation]
        return "\n\n".join(parts) + "\n"


class Catalogue:
    """All rules by id; format modules register theirs so adding a format touches no core file."""

    def __init__(self) -> None:
        self._rules: dict[str, Rule] = {}

    def register(self, rules: Iterable[Rule]) -> None:
        for rule in rules:
            if rule.id in self._rules and self._rules[rule.id] != rule:
                raise ValueError(f"rule id {rule.id} registered twice")
            self._rules[rule.id] = rule

    def get(self, rule_id: str) -> Rule | None:
        return self._rules.get(rule_id.strip().upper())

    def __contains__(self, rule_id: object) -> bool:
        return isinstance(rule_id, str) and rule_id.upper() in self._rules

    def __iter__(self) -> Iterator[Rule]:
        return iter(sorted(self._rules.values(), key=lambda r: r.id))

    def __len__(self) -> int:
        return len(self._rules)


CATALOGUE = Catalogue()
