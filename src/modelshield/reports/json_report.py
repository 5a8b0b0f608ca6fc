"""JSON report: a documented, versioned schema (see report.schema.json beside this module)."""

from __future__ import annotations

import json
from typing import Any

from modelshield.core.findings import Finding
from modelshield.core.policy import Suppression
from modelshield.core.report import FileResult, Report
from modelshield.reports import path_bytes, printable_json

#: Bump the major version on any incompatible change to the document's shape.
SCHEMA_VERSION = "1.3"
#: `deps --format json` (deps.schema.json beside this module), versioned on its own.
DEPS_SCHEMA_VERSION = "1.0"


def _with_path(entry: dict[str, Any], path: str) -> dict[str, Any]:
    """Since 1.2: `path_bytes` keeps a name that is not UTF-8 exactly (`path` shows its bytes as \\xNN)."""
    raw = path_bytes(path)
    if raw is not None:
        entry["path_bytes"] = raw
    return entry


def finding_dict(finding: Finding) -> dict[str, Any]:
    loc = finding.location
    return {
        "rule_id": finding.rule_id,
        "title": finding.title,
        "severity": finding.level.label,
        "category": finding.category.value,
        "location": _with_path(
            {"path": loc.path, "members": list(loc.members), "display": loc.display, "offset": loc.offset}, loc.path
        ),
        "evidence": finding.evidence,
        "remediation": finding.remediation,
        "details": finding.details,
    }


def _suppressed_dict(finding: Finding, suppression: Suppression) -> dict[str, Any]:
    entry = finding_dict(finding)
    entry["suppressed_by"] = {"rule": suppression.rule, "path": suppression.path, "reason": suppression.reason}
    return entry


def _file_dict(result: FileResult) -> dict[str, Any]:
    worst = result.max_severity
    entry = {
        "path": result.path,
        "format": result.format,
        "is_model": result.is_model,
        "size": result.size,
        "max_severity": worst.label if worst is not None else None,
        "findings": [finding_dict(f) for f in result.findings],
        "suppressed": [_suppressed_dict(f, s) for f, s in result.suppressed],
        "objects": [{"location": o.location, "format": o.format} for o in result.objects],
        "error": result.error,
        "seconds": round(result.seconds, 6),
    }
    if result.remote is not None:  # since 1.3: a file scanned where it lives
        entry["remote"] = result.remote
    return _with_path(entry, result.path)


def dependencies_dict(report: Report) -> dict[str, Any] | None:
    """The dependency graph (schema 1.1): models and what they load, each with its verdict."""
    graph = report.dependencies
    if graph is None:
        return None
    nodes = [
        {
            "id": n.id,
            "ref": n.ref,
            "kind": n.kind,
            "revision": n.revision,
            "resolution": n.resolution,
            "path": n.path,
            "detail": n.detail,
            "verdict": n.verdict.label if n.verdict is not None else None,
        }
        for n in graph.nodes
    ]
    edges = [
        {
            "source": e.source,
            "target": e.target,
            "role": e.role,
            "location": e.location,
            "rule_id": e.rule_id,
            "cycle": e.cycle,
        }
        for e in graph.edges
    ]
    return {"nodes": nodes, "edges": edges}


def report_dict(report: Report, verbose: bool = False) -> dict[str, Any]:
    """The report as plain data; files that are not models are included only when verbose."""
    worst = report.max_severity
    shown = [r for r in report.files if verbose or r.is_model or r.error or r.suppressed]
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "modelshield", "version": report.version},
        "started_at": report.started_at,
        "duration_seconds": round(report.seconds, 6),
        "policy": {"fail_on": report.policy.fail_on.label, "source": report.policy.source},
        "summary": {
            "files": len(report.files),
            "models": sum(r.is_model for r in report.files),
            "findings": len(report.findings),
            "suppressed": sum(len(r.suppressed) for r in report.files),
            "by_severity": {s.label: n for s, n in report.counts.items()},
            "max_severity": worst.label if worst is not None else None,
            "failed": report.exit_code != 0,
            "exit_code": report.exit_code,
        },
        "files": [_file_dict(r) for r in shown],
        "errors": [_with_path({"path": path, "message": message}, path) for path, message in report.errors],
        "dependencies": dependencies_dict(report),
        **({"remote": report.remote} if report.remote is not None else {}),
    }


def dumps(document: Any) -> str:
    """JSON text that is valid UTF-8 whatever the file names (see `modelshield.reports`)."""
    return printable_json(json.dumps(document, indent=2, ensure_ascii=False)) + "\n"


def deps_dict(report: Report) -> dict[str, Any]:
    """`modelshield deps --format json`: the dependency graph alone."""
    return {"schema_version": DEPS_SCHEMA_VERSION, "dependencies": dependencies_dict(report)}


def render(report: Report, verbose: bool = False, color: bool = False) -> str:
    return dumps(report_dict(report, verbose))
