"""Renderers of the one report object: text for people, JSON for machines, SARIF for code scanning."""

from __future__ import annotations

from collections.abc import Callable

from modelshield.core.report import Report
from modelshield.reports import json_report, sarif, text

Renderer = Callable[[Report, bool, bool], str]

#: format name -> render(report, verbose, color)
RENDERERS: dict[str, Renderer] = {
    "text": text.render,
    "json": json_report.render,
    "sarif": sarif.render,
}
