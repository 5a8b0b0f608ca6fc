"""Text report for people: grouped by file, severity colours, one summary line."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from modelshield.core.dependencies import Edge, Graph, Node
from modelshield.core.findings import Finding
from modelshield.core.report import FileResult, Report
from modelshield.core.rules import Severity
from modelshield.reports import one_line, printable

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
    console.print(Text.assemble("           at ", (one_line(str(finding.location)), "blue")))
    console.print(Text("           " + one_line(finding.evidence)))
    fix = _first_sentence(finding.remediation)
    console.print(f"           [dim]fix:[/dim] {escape(fix)} [dim](modelshield explain {finding.rule_id})[/dim]")


def _file(console: Console, result: FileResult, verbose: bool, floor: Severity, quiet: bool) -> None:
    shown = [f for f in result.findings if f.level >= floor]
    if quiet:
        for finding in sorted(shown, key=lambda f: (-f.level, str(f.location), f.rule_id)):
            _finding(console, finding)
        return
    if result.error:
        error = "error: " + one_line(result.error)
        console.print(Text.assemble((one_line(result.path), "bold"), "  ", (error, "bold red")))
        return
    if not result.is_model and not result.suppressed:
        if verbose:
            console.print(Text.assemble((one_line(result.path), "dim"), (f"  ({result.format}, not a model)", "dim")))
        return
    objects = len(result.objects)
    counted = f"  ({result.format}, {objects} object{'s' * (objects != 1)})"
    header = Text.assemble((one_line(result.path), "bold"), counted)
    if not result.findings:
        header.append("  no findings", style="green")
    console.print(header)
    for finding in sorted(shown, key=lambda f: (-f.level, str(f.location), f.rule_id)):
        _finding(console, finding)
    if len(shown) < len(result.findings):
        hidden = len(result.findings) - len(shown)
        console.print(f"           [dim]{hidden} finding(s) below {floor.label} not shown[/dim]")
    if result.suppressed:
        console.print(f"           [dim]{len(result.suppressed)} finding(s) suppressed by policy[/dim]")
    if verbose:
        for obj in result.objects[1:]:
            console.print(Text(f"           scanned {one_line(obj.location)} ({obj.format})", style="dim"))


#: Lines of the dependency tree; the graph itself is bounded by the policy's dependency limits.
MAX_TREE_LINES = 500


def _node_text(node: Node, edge: Edge | None) -> Text:
    verdict = node.verdict
    badge = (f"[{verdict.label}]", STYLE[verdict]) if verdict is not None else ("[no findings]", "green")
    if edge is None:
        return Text.assemble((one_line(node.ref), "bold"), "  ", badge)
    named_in = edge.location.rsplit("/", 1)[-1]
    revision = f"@{node.revision}" if node.revision else ""
    where = node.path or node.detail
    resolved = f"{node.kind}, {node.resolution}" + (f": {where}" if where else "")
    text = Text(one_line(f"{named_in}: {edge.role} {node.ref}{revision} ({resolved})  "))
    if edge.cycle:
        return text.append("(cycle: already on this chain)", style="dim")
    return text.append(*badge)


def dependency_tree(graph: Graph) -> Iterator[Text]:
    """The graph as a tree from each scanned path: a node's links are expanded once, cycles marked."""
    expanded: set[str] = set()
    lines = 0

    def walk(node: Node, edge: Edge | None, prefix: str, last: bool, top: bool) -> Iterator[Text]:
        nonlocal lines
        lines += 1
        if lines > MAX_TREE_LINES:
            return
        branch = "" if top else ("└── " if last else "├── ")
        yield Text(prefix + branch).append_text(_node_text(node, edge))
        if (edge is not None and edge.cycle) or node.id in expanded:
            return
        expanded.add(node.id)
        children = graph.children(node.id)
        inner = prefix if top else prefix + ("    " if last else "│   ")
        for index, child in enumerate(children):
            yield from walk(graph.node(child.target), child, inner, index == len(children) - 1, False)

    for root in (n for n in graph.nodes if n.kind == "root"):
        yield from walk(root, None, "", True, True)
    if lines > MAX_TREE_LINES:
        yield Text(f"... (tree cut at {MAX_TREE_LINES} lines)", style="dim")


def summary_line(report: Report) -> str:
    counts = ", ".join(f"{n} {s.label}" for s, n in report.counts.items())
    models = sum(r.is_model for r in report.files)
    verdict = {0: "PASSED", 1: "FAILED", 2: "ERROR"}[report.exit_code]
    return (
        f"{len(report.files)} file(s) scanned, {models} model(s), in {report.seconds:.2f} s: {counts}. "
        f"{verdict} (fail-on: {report.policy.fail_on.label})"
    )


def _console(buffer: io.StringIO, color: bool) -> Console:
    # On a terminal wrap to its width; in files and pipes never wrap, so each line stays greppable.
    width = shutil.get_terminal_size((120, 24)).columns if color else 100_000
    return Console(file=buffer, force_terminal=color, no_color=not color, width=width, highlight=False)


def render_dependencies(report: Report, color: bool = False) -> str:
    """`modelshield deps`: the dependency tree with each node's verdict, and the summary line."""
    buffer = io.StringIO()
    console = _console(buffer, color)
    for line in dependency_tree(report.dependencies or Graph()):
        console.print(line)
    style = {0: "bold green", 1: "bold red", 2: "bold red"}[report.exit_code]
    console.print(Text(summary_line(report), style=style))
    return printable(buffer.getvalue())


def render(
    report: Report, verbose: bool = False, color: bool = False, *, floor: Severity = Severity.INFO, quiet: bool = False
) -> str:
    """Files with their findings at or above `floor`, the dependency tree and the summary line;
    `quiet` keeps only the findings."""
    buffer = io.StringIO()
    console = _console(buffer, color)
    for result in report.files:
        _file(console, result, verbose, floor, quiet)
    if quiet:
        return printable(buffer.getvalue())
    if report.dependencies is not None and report.dependencies.edges:
        console.print(Text("Dependencies", style="bold"))
        for line in dependency_tree(report.dependencies):
            console.print(line)
    style = {0: "bold green", 1: "bold red", 2: "bold red"}[report.exit_code]
    console.print(Text(summary_line(report), style=style))
    return printable(buffer.getvalue())
