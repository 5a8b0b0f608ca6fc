"""Text report for people: grouped by file, severity colours, one summary line."""

from __future__ import annotations

import io
import shutil

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from modelshield.core.findings import Finding
from modelshield.core.report import FileResult, Report
from modelshield.core.rules import Severity

STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "bold yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


def _first_sentence(text: str) -> str:
    head, dot, _ = text.partition(". ")
    return head + ("." if dot else "")


def _finding(console: Console, finding: Finding) -> None:
    badge = Text(f" {finding.level.label.upper():<8} ", style=STYLE[finding.level])
    line = Text.assemble(badge, " ", (finding.rule_id, "bold"), " ", finding.title)
    console.print(line)
    console.print(Text.assemble("           at ", (str(finding.location), "blue")))
    console.print(Text("           " + finding.evidence))
    fix = _first_sentence(finding.remediation)
    console.print(
        f"           [dim]fix:[/dim] {escape(fix)} [dim](modelshield explain {finding.rule_id})[/dim]"
    )


def _file(console: Console, result: FileResult, verbose: bool) -> None:
    if result.error:
        console.print(Text.assemble((result.path, "bold"), "  ", ("error: " + result.error, "bold red")))
        return
    if not result.is_model and not result.suppressed:
        if verbose:
            console.print(Text.assemble((result.path, "dim"), (f"  ({result.format}, not a model)", "dim")))
        return
    objects = len(result.objects)
    header = Text.assemble((result.path, "bold"), f"  ({result.format}, {objects} object{'s' * (objects != 1)})")
    if not result.findings:
        header.append("  no findings", style="green")
    console.print(header)
    for finding in sorted(result.findings, key=lambda f: (-f.level, str(f.location), f.rule_id)):
        _finding(console, finding)
    if result.suppressed:
        console.print(f"           [dim]{len(result.suppressed)} finding(s) suppressed by policy[/dim]")
    if verbose:
        for obj in result.objects[1:]:
            console.print(Text(f"           scanned {obj.location} ({obj.format})", style="dim"))


def summary_line(report: Report) -> str:
    counts = ", ".join(f"{n} {s.label}" for s, n in report.counts().items())
    models = sum(r.is_model for r in report.files)
    verdict = {0: "PASSED", 1: "FAILED", 2: "ERROR"}[report.exit_code]
    return (
        f"{len(report.files)} file(s) scanned, {models} model(s), in {report.seconds:.2f} s: {counts}. "
        f"{verdict} (fail-on: {report.policy.fail_on.label})"
    )


def render(report: Report, verbose: bool = False, color: bool = False) -> str:
    buffer = io.StringIO()
    # On a terminal wrap to its width; in files and pipes never wrap, so each line stays greppable.
    width = shutil.get_terminal_size((120, 24)).columns if color else 100_000
    console = Console(file=buffer, force_terminal=color, no_color=not color, width=width, highlight=False)
    for result in report.files:
        _file(console, result, verbose)
    style = {0: "bold green", 1: "bold red", 2: "bold red"}[report.exit_code]
    console.print(Text(summary_line(report), style=style))
    return buffer.getvalue()
