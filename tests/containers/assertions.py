"""Assertions on scan results shared by the container tests."""

from __future__ import annotations

from modelshield import FileResult
from modelshield.core.rules import Severity


def has_rule(result: FileResult, rule_id: str, location: str | None = None) -> bool:
    """Whether `rule_id` was reported (at a location ending with `location`, if given)."""
    return any(
        f.rule_id == rule_id and (location is None or f.location.display.endswith(location)) for f in result.findings
    )


def quiet(result: FileResult) -> bool:
    """No finding at medium or above, and no error."""
    return result.error is None and not [f for f in result.findings if f.level >= Severity.MEDIUM]
