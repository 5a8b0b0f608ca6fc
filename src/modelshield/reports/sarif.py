"""SARIF 2.1.0 report for GitHub code scanning and other SARIF consumers.

Every result's `ruleId` is described in `tool.driver.rules`, with the rule's full threat page as
`help`. Members inside containers are named in the message and as a logical location, because SARIF
physical locations can only point at files on disk.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from modelshield.core.findings import Finding
from modelshield.core.report import Report
from modelshield.core.rules import Rule, Severity
from modelshield.reports.json_report import dumps

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/modelshield/"
#: Relative artifact URIs are relative to the working directory, declared in `originalUriBaseIds`.
SRCROOT = "%SRCROOT%"

_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
#: GitHub maps `security-severity` scores onto its own critical/high/medium/low scale.
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}


def _pascal(title: str) -> str:
    return "".join(word[:1].upper() + word[1:] for word in title.replace("-", " ").split() if word.isalnum())


def _rule(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": _pascal(rule.title),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.overview},
        "help": {"text": rule.page(), "markdown": rule.page()},
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {
            "tags": ["security", rule.category.value],
            "security-severity": _SECURITY_SEVERITY[rule.severity],
            "precision": "high",
        },
    }


def _artifact(path: str) -> dict[str, str]:
    """A URI relative to the working directory (%SRCROOT%) when the file is inside it, else a file URI.

    Percent-encoded from the name's bytes (RFC 3986): `#`, `%`, spaces and bytes that are not UTF-8
    cannot be read as anything but the file's name.
    """
    absolute = Path(path).resolve()
    try:
        relative = absolute.relative_to(Path.cwd().resolve())
    except ValueError:
        return {"uri": absolute.as_uri()}
    return {"uri": quote(os.fsencode(relative.as_posix()), safe="/"), "uriBaseId": SRCROOT}


def _root_uri() -> str:
    """The working directory as a file URI ending in '/', as a uriBaseId requires (SARIF 3.14.14)."""
    uri = Path(os.getcwd()).resolve().as_uri()
    return uri if uri.endswith("/") else uri + "/"


def _fingerprint(finding: Finding) -> str:
    """Stable across runs for the same finding, so code scanning does not duplicate alerts."""
    key = f"{finding.rule_id}\0{finding.location}\0{finding.evidence}"
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _result(finding: Finding, index: int) -> dict[str, Any]:
    loc = finding.location
    # GitHub requires region.startLine; model files are binary, so line 1 stands for the file.
    region: dict[str, Any] = {"startLine": 1}
    if not loc.members and loc.offset is not None:
        region["byteOffset"] = loc.offset
    physical: dict[str, Any] = {"artifactLocation": _artifact(loc.path), "region": region}
    location: dict[str, Any] = {"physicalLocation": physical}
    if loc.members:
        location["logicalLocations"] = [{"fullyQualifiedName": str(loc), "kind": "member"}]
    text = f"{finding.title}: {finding.evidence} (at {loc})"
    return {
        "ruleId": finding.rule_id,
        "ruleIndex": index,
        "level": _LEVEL[finding.level],
        "message": {"text": text},
        "locations": [location],
        "partialFingerprints": {"modelshield/v1": _fingerprint(finding)},
        "properties": {"severity": finding.level.label, "category": finding.category.value},
    }


def sarif_dict(report: Report) -> dict[str, Any]:
    findings = report.findings
    rules: dict[str, Rule] = {}
    for finding in findings:
        rules.setdefault(finding.rule_id, finding.rule)
    ordered = sorted(rules)
    index = {rule_id: i for i, rule_id in enumerate(ordered)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "modelshield",
                        "version": report.version,
                        "semanticVersion": report.version,
                        "informationUri": INFORMATION_URI,
                        "rules": [_rule(rules[r]) for r in ordered],
                    }
                },
                "originalUriBaseIds": {SRCROOT: {"uri": _root_uri()}},
                "invocations": [
                    {
                        "executionSuccessful": not report.errors,
                        "exitCode": report.exit_code,
                        "workingDirectory": {"uri": _root_uri()},
                        "toolExecutionNotifications": [
                            {"level": "error", "message": {"text": message}} for _, message in report.errors
                        ],
                    }
                ],
                "results": [_result(f, index[f.rule_id]) for f in findings],
            }
        ],
    }


def render(report: Report, verbose: bool = False, color: bool = False) -> str:
    return dumps(sarif_dict(report))
