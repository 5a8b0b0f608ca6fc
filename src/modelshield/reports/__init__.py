"""Renderers of the one report object: text for people, JSON for machines, SARIF for code scanning.

File names are bytes on POSIX; Python hands the bytes that are not UTF-8 over as lone surrogates
(`surrogateescape`). No report may carry those (they are not valid UTF-8), so every report shows each
such byte as the four characters `\\xNN`; the JSON report also keeps the exact name as base64
(`path_bytes`) and SARIF percent-encodes the bytes in its URIs, so both stay reversible.
"""

from __future__ import annotations

import base64
import importlib
import os
import re

from modelshield.core.report import Report
from modelshield.core.rules import Severity

_MODULES = {
    "cyclonedx": "modelshield.reports.cyclonedx",
    "html": "modelshield.reports.html",
    "json": "modelshield.reports.json_report",
    "sarif": "modelshield.reports.sarif",
    "text": "modelshield.reports.text",
}

#: The report formats `scan --format` accepts.
FORMATS = tuple(sorted(_MODULES))

_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # the byte 0x80..0xFF that surrogateescape could not decode
        code -= 0xDC00
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every undecodable byte as `\\xNN` (and any other lone surrogate as `\\uNNNN`)."""
    if text.isascii():
        return text
    return _SURROGATE.sub(lambda m: _escape(m.group()), text)


#: C0 and C1 controls, and the invisible marks that reorder or hide text (bidirectional overrides).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def one_line(text: str) -> str:
    """`printable(text)` with control characters also as `\\xNN`: a file name holding a newline or a
    terminal escape cannot forge report lines nor drive the terminal."""
    text = printable(text)
    if text.isprintable():
        return text
    return _CONTROL.sub(lambda m: _escape(m.group()), text)


def printable_json(document: str) -> str:
    """A JSON text whose strings may hold lone surrogates, with them written as `\\xNN` in the value."""
    if document.isascii():
        return document
    return _SURROGATE.sub(lambda m: "\\" + _escape(m.group()), document)


def path_bytes(path: str) -> str | None:
    """The exact bytes of a file name that is not valid UTF-8, base64-encoded; None for the others."""
    if path.isascii() or not _SURROGATE.search(path):
        return None
    return base64.b64encode(os.fsencode(path)).decode("ascii")


class FormatUnavailable(Exception):
    """A report format whose optional dependency is not installed (the message says what to install)."""


def require(fmt: str) -> None:
    """Raise FormatUnavailable before a scan when `fmt` cannot be rendered here."""
    check = getattr(importlib.import_module(_MODULES[fmt]), "require", None)
    if check is not None:
        check()


#: Formats for people, which take a display floor; machine formats always carry every finding.
DISPLAYS = frozenset({"text", "html"})


def render(
    fmt: str,
    report: Report,
    verbose: bool = False,
    color: bool = False,
    *,
    floor: Severity = Severity.INFO,
    quiet: bool = False,
) -> str:
    """The report in format `fmt`; a renderer is imported on first use (rich only for text).

    `floor` hides findings below it from the formats for people (the summary still counts them);
    `quiet` leaves only the findings in the text report."""
    module = importlib.import_module(_MODULES[fmt])
    if fmt == "text":
        text: str = module.render(report, verbose, color, floor=floor, quiet=quiet)
        return text
    if fmt in DISPLAYS:
        page: str = module.render(report, verbose, color, floor=floor)
        return page
    rendered: str = module.render(report, verbose, color)
    return rendered
