"""HTML report (`scan --format html`): one self-contained page for people who would rather look than read.

No script, font, style sheet or image is fetched: the page is a single file that can be mailed, attached
to a CI run or opened offline. Findings are grouped by model and file, worst first, each with its
evidence, its fix and a link to its threat page further down; the dependency graph is drawn as inline
SVG. Every piece of text that comes from a scanned file (names, evidence) is escaped, so a hostile model
cannot inject markup into the page.
"""

from __future__ import annotations

import re
from collections import defaultdict
from html import escape

from modelshield.core.dependencies import Graph
from modelshield.core.findings import Finding
from modelshield.core.report import FileResult, Report
from modelshield.core.rules import Rule, Severity
from modelshield.reports import one_line

_COLOURS = {
    Severity.CRITICAL: "#8b0000",
    Severity.HIGH: "#c0392b",
    Severity.MEDIUM: "#d35400",
    Severity.LOW: "#7f8c8d",
    Severity.INFO: "#2c7fb8",
}
_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}h3{margin-bottom:.3em}
code,pre{font:12px ui-monospace,monospace;background:#f4f4f4;padding:.1em .3em;border-radius:3px}
pre{padding:.6em;white-space:pre-wrap;word-break:break-all}
table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em;table-layout:fixed}
col.s{width:6em}col.r{width:14em}td code{word-break:break-all}
td,th{border:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}th{background:#fafafa}
.sev{color:#fff;border-radius:3px;padding:.1em .45em;font-weight:600;font-size:12px;white-space:nowrap}
.verdict{font-size:1.2em;font-weight:700;padding:.5em .8em;border-radius:4px;display:inline-block}
.fail{background:#fdecea;color:#8b0000}.pass{background:#e8f5e9;color:#1b5e20}
.counts span{margin-right:1em}.muted{color:#777}section.rule{margin-bottom:2em}
"""
_COLUMNS = (
    '<colgroup><col class="s"><col class="r"><col><col><col></colgroup>'
    "<tr><th>severity</th><th>rule</th><th>where</th><th>evidence</th><th>fix</th></tr>"
)
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _text(value: str) -> str:
    """Escaped text from a scanned file or a rule: control characters shown, never markup."""
    return escape(one_line(value))


def _markdown(text: str) -> str:
    """The little Markdown threat pages use (paragraphs, `code`, **bold**), as escaped HTML."""
    blocks = []
    for block in text.split("\n\n"):
        if block.startswith("```"):
            body = block.strip("`").partition("\n")[2]
            blocks.append(f"<pre>{escape(body)}</pre>")
            continue
        html = escape(block)
        html = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", html)
        html = _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", html)
        blocks.append(f"<p>{html}</p>")
    return "\n".join(blocks)


def _badge(severity: Severity) -> str:
    return f'<span class="sev" style="background:{_COLOURS[severity]}">{severity.label}</span>'


def _anchor(rule_id: str) -> str:
    return f"rule-{escape(rule_id)}"


def _summary(report: Report) -> str:
    failed = report.exit_code != 0
    verdict = "FAIL" if failed else "PASS"
    counts = "".join(f"<span>{_badge(s)} {n}</span>" for s, n in report.counts.items())
    models = sum(r.is_model for r in report.files)
    parts = [
        f'<p class="verdict {"fail" if failed else "pass"}" id="verdict">{verdict} (exit code {report.exit_code})</p>',
        f'<p class="counts" id="counts">{counts}</p>',
        f"<p>{len(report.files)} files, {models} models, {len(report.findings)} findings; failing at "
        f"<strong>{report.policy.fail_on.label}</strong> and above"
        + (f" (policy {_text(report.policy.source)})" if report.policy.source else "")
        + f". modelshield {escape(report.version)}, started {escape(report.started_at)}, "
        f"{report.seconds:.2f} s.</p>",
    ]
    if report.errors:
        items = "".join(f"<li><code>{_text(p)}</code>: {_text(m)}</li>" for p, m in report.errors)
        parts.append(f'<h2>Inputs that could not be read</h2><ul id="errors">{items}</ul>')
    return "\n".join(parts)


def _finding_row(finding: Finding) -> str:
    return (
        f'<tr class="finding"><td>{_badge(finding.level)}</td>'
        f'<td><a href="#{_anchor(finding.rule_id)}">{escape(finding.rule_id)}</a><br>{escape(finding.title)}</td>'
        f"<td><code>{_text(str(finding.location))}</code></td><td>{_text(finding.evidence)}</td>"
        f"<td>{_markdown(finding.remediation)}</td></tr>"
    )


def _file_section(result: FileResult, floor: Severity) -> str:
    worst = result.max_severity
    head = f"<h3><code>{_text(result.path)}</code> {_badge(worst) if worst is not None else ''}</h3>"
    meta = f'<p class="muted">format {escape(result.format)}, {result.size:,} bytes</p>'
    findings = sorted((f for f in result.findings if f.level >= floor), key=lambda f: f.level, reverse=True)
    rows = "".join(_finding_row(f) for f in findings)
    if len(findings) < len(result.findings):
        hidden = len(result.findings) - len(findings)
        rows += f'<tr><td colspan="5" class="muted">{hidden} below {floor.label} not shown</td></tr>'

    table = f"<table>{_COLUMNS}{rows}</table>" if rows else '<p class="muted">no findings</p>'
    suppressed = ""
    if result.suppressed:
        items = "".join(
            f"<li>{escape(f.rule_id)} at <code>{_text(str(f.location))}</code>: "
            f"{_text(s.reason or 'no reason given')}</li>"
            for f, s in result.suppressed
        )
        summary = f"<summary>{len(result.suppressed)} suppressed by policy</summary>"
        suppressed = f"<details>{summary}<ul>{items}</ul></details>"
    return head + meta + table + suppressed


def _groups(report: Report) -> list[tuple[str, list[FileResult]]]:
    """Files grouped by the model (scanned path or dependency) whose files they are, worst first."""
    shown = [r for r in report.files if r.is_model or r.findings or r.suppressed]
    owner: dict[str, str] = {}
    if report.dependencies is not None:
        for node in report.dependencies.nodes:
            for path in node.files:
                owner.setdefault(path, node.ref)
    groups: dict[str, list[FileResult]] = defaultdict(list)
    shown.sort(key=lambda r: -1 if r.max_severity is None else int(r.max_severity), reverse=True)
    for result in shown:
        groups[owner.get(result.path, result.path)].append(result)

    def worst(item: tuple[str, list[FileResult]]) -> int:
        return max((int(r.max_severity) for r in item[1] if r.max_severity is not None), default=-1)

    return sorted(groups.items(), key=worst, reverse=True)


def _graph_svg(graph: Graph) -> str:
    """The dependency graph, drawn in columns by depth from the scanned paths."""
    depth = {n.id: 0 for n in graph.nodes if n.kind == "root"}
    frontier = list(depth)
    while frontier:
        nxt = []
        for node_id in frontier:
            for edge in graph.children(node_id):
                if edge.target not in depth:
                    depth[edge.target] = depth[node_id] + 1
                    nxt.append(edge.target)
        frontier = nxt
    for node in graph.nodes:
        depth.setdefault(node.id, 0)
    columns: dict[int, list[str]] = defaultdict(list)
    for node in graph.nodes:
        columns[depth[node.id]].append(node.id)
    width, height, gap_x, gap_y = 260, 44, 90, 24
    position = {
        node_id: (col * (width + gap_x) + 10, row * (height + gap_y) + 10)
        for col, ids in columns.items()
        for row, node_id in enumerate(ids)
    }
    total_w = (max(columns) + 1) * (width + gap_x) + 20
    total_h = max(len(ids) for ids in columns.values()) * (height + gap_y) + 20
    shapes = []
    for edge in graph.edges:
        if edge.source in position and edge.target in position:
            (x1, y1), (x2, y2) = position[edge.source], position[edge.target]
            shapes.append(
                f'<line x1="{x1 + width}" y1="{y1 + height // 2}" x2="{x2}" y2="{y2 + height // 2}" '
                f'stroke="#999" marker-end="url(#arrow)"><title>{_text(edge.role)}</title></line>'
            )
    for node in graph.nodes:
        x, y = position[node.id]
        colour = _COLOURS[node.verdict] if node.verdict is not None else "#2e7d32"
        label = one_line(node.ref)
        label = label if len(label) <= 34 else "…" + label[-33:]
        verdict = node.verdict.label if node.verdict is not None else "no findings"
        shapes.append(
            f'<g class="node"><rect x="{x}" y="{y}" width="{width}" height="{height}" rx="6" fill="#fff" '
            f'stroke="{colour}" stroke-width="2"/><text x="{x + 8}" y="{y + 18}" font-size="12">{escape(label)}</text>'
            f'<text x="{x + 8}" y="{y + 34}" font-size="11" fill="{colour}">{escape(node.resolution)} · '
            f"{escape(verdict)}</text><title>{_text(node.ref)}</title></g>"
        )
    return (
        f'<svg id="dependency-graph" xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}" '
        f'role="img" aria-label="dependency graph"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        f'markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z" fill="#999"/></marker></defs>'
        + "".join(shapes)
        + "</svg>"
    )


def _threat_page(rule: Rule) -> str:
    parts = [
        f'<section class="rule" id="{_anchor(rule.id)}"><h3>{escape(rule.id)}: {escape(rule.title)}</h3>',
        f"<p>Default severity {_badge(rule.severity)} · category <code>{escape(rule.category.value)}</code></p>",
        "<h4>Overview</h4>" + _markdown(rule.overview),
        "<h4>How the attack works</h4>" + _markdown(rule.attack),
        "<h4>Impact</h4>" + _markdown(rule.impact),
    ]
    if rule.example:
        parts.append("<h4>Example</h4>" + _markdown(rule.example))
    parts.append("<h4>Remediation</h4>" + _markdown(rule.remediation) + "</section>")
    return "\n".join(parts)


def render(report: Report, verbose: bool = False, color: bool = False, *, floor: Severity = Severity.INFO) -> str:
    """The whole page; `verbose` also lists files that are not models, `floor` hides lesser findings."""
    body = ["<h1>modelshield scan report</h1>", _summary(report)]
    graph = report.dependencies
    if graph is not None and graph.edges:
        body += ["<h2>Dependencies</h2>", _graph_svg(graph)]
    body.append("<h2>Findings by model</h2>")
    groups = _groups(report)
    for model, results in groups:
        body.append(f'<div class="model"><h2 class="model-name">{_text(model)}</h2>')
        body += [_file_section(r, floor) for r in results]
        body.append("</div>")
    if not groups:
        body.append('<p class="muted">No model files were found.</p>')
    if verbose:
        others = [r for r in report.files if not (r.is_model or r.findings or r.suppressed)]
        items = "".join(f"<li><code>{_text(r.path)}</code> ({escape(r.format)})</li>" for r in others)
        body.append(f"<h2>Other files</h2><ul>{items}</ul>")
    rules = {f.rule.id: f.rule for r in report.files for f in r.findings if f.level >= floor}
    if rules:
        body.append("<h2>Threat pages</h2>")
        body += [_threat_page(rules[k]) for k in sorted(rules)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>modelshield report</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
