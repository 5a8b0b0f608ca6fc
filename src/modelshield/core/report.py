"""The report object: one per scan, rendered by the separate modules in `modelshield.reports`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from modelshield.core.dependencies import Graph
from modelshield.core.findings import Finding
from modelshield.core.policy import Policy, Suppression
from modelshield.core.rules import Severity


class ScannedObject(NamedTuple):
    """An object that was identified and scanned: the file itself or a member inside it."""

    location: str
    format: str


@dataclass
class FileResult:
    """Everything learned about one file given on the command line or found in a folder."""

    path: str
    format: str = "unknown"
    is_model: bool = False
    size: int = 0
    findings: list[Finding] = field(default_factory=list)
    suppressed: list[tuple[Finding, Suppression]] = field(default_factory=list)
    objects: list[ScannedObject] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    #: for a file scanned where it lives (`modelshield.sources`): its URI, revision, bytes fetched...
    remote: dict[str, Any] | None = None

    @property
    def max_severity(self) -> Severity | None:
        return max((f.level for f in self.findings), default=None)

    def record(self, finding: Finding, policy: Policy) -> None:
        """Keep a finding with the policy's severity override, or set it aside if a suppression matches."""
        finding, suppression = policy.apply(finding)
        if suppression is None:
            self.findings.append(finding)
        else:
            self.suppressed.append((finding, suppression))


@dataclass
class Report:
    files: list[FileResult]
    policy: Policy
    version: str
    started_at: str
    seconds: float
    #: models and the dependencies they load; None when dependencies were not followed
    dependencies: Graph | None = None
    #: remote targets scanned (URI, root, revision) and the requests spent; None when none was
    remote: dict[str, Any] | None = None

    @property
    def findings(self) -> list[Finding]:
        return [f for result in self.files for f in result.findings]

    @property
    def errors(self) -> list[tuple[str, str]]:
        return [(r.path, r.error) for r in self.files if r.error]

    @property
    def counts(self) -> dict[Severity, int]:
        """Unsuppressed findings per severity, worst first (every severity present)."""
        counted = Counter(f.level for f in self.findings)
        return {s: counted.get(s, 0) for s in sorted(Severity, reverse=True)}

    @property
    def max_severity(self) -> Severity | None:
        return max((f.level for f in self.findings), default=None)

    @property
    def failing(self) -> list[Finding]:
        """Unsuppressed findings at or above the policy's failing severity."""
        return [f for f in self.findings if f.level >= self.policy.fail_on]

    @property
    def exit_code(self) -> int:
        """0 clean, 1 findings at or above the failing severity, 2 inputs that could not be read."""
        if self.errors:
            return 2
        return 1 if self.failing else 0

    def to_json(self, verbose: bool = False) -> str:
        """The document `scan --format json` prints (report.schema.json); `verbose` also lists non-models."""
        from modelshield.reports.json_report import render  # noqa: PLC0415 - reports import this module

        return render(self, verbose)
