"""Renderers of the one report object: text for people, JSON for machines, SARIF for code scanning."""

from __future__ import annotations

import importlib

from modelshield.core.report import Report

_MODULES = {
    "json": "modelshield.reports.json_report",
    "sarif": "modelshield.reports.sarif",
    "text": "modelshield.reports.text",
}

#: The report formats `scan --format` accepts.
FORMATS = tuple(sorted(_MODULES))


def render(fmt: str, report: Report, verbose: bool = False, color: bool = False) -> str:
    """The report in format `fmt`; a renderer is imported on first use (rich only for text)."""
    module = importlib.import_module(_MODULES[fmt])
    rendered: str = module.render(report, verbose, color)
    return rendered
