"""The security team's page (`GET /ui`): recent decisions, blocked revisions with their findings and
threat pages, and the audit log, as one self-contained HTML page.

Like the HTML report (whose style and threat pages it reuses) it fetches nothing: no script, font or
image, and a Content-Security-Policy that forbids them. Repository names, file names, evidence and
reasons come from upstream content or clients, so every one of them is escaped.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

from modelshield.core.rules import CATALOGUE
from modelshield.reports.html import _STYLE, _anchor, _text, _threat_page

#: the page's only policy: inline style, forms posted back to the gateway, nothing else (in the page too,
#: should it be saved; frame-ancestors only counts in the header)
_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
CSP = _CSP + "; frame-ancestors 'none'"
_MORE = ".block{color:#8b0000;font-weight:600}.allow{color:#1b5e20}.error{color:#d35400;font-weight:600}"


def _when(at: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def _page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{escape(title)}</title><style>{_STYLE}{_MORE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def login(message: str = "") -> str:
    """The token form: the token is posted once and kept in an HttpOnly cookie, never in a URL."""
    note = f'<p class="error" id="login-error">{escape(message)}</p>' if message else ""
    form = (
        '<form method="post" action="/ui/login"><label>Gateway token of a security team '
        '<input type="password" name="token" id="token" autocomplete="off"></label> '
        '<button type="submit" id="sign-in">Sign in</button></form>'
    )
    return _page("modelshield gateway", ["<h1>modelshield gateway</h1>", note, form])


def _audit_rows(entries: list[dict[str, Any]]) -> str:
    rows = [
        f'<tr class="decision"><td>{_when(int(e["at"]))}</td><td>{_text(e["who"])}</td><td>{_text(e["action"])}</td>'
        f"<td><code>{_text(e['repo'])}</code></td><td><code>{_text(e['revision'][:12])}</code></td>"
        f"<td><code>{_text(e['path'])}</code></td>"
        f'<td class="{escape(e["decision"])}">{_text(e["decision"])}</td><td>{_text(e["reason"])}</td></tr>'
        for e in entries
    ]
    head = "<tr><th>when</th><th>who</th><th>action</th><th>repository</th><th>commit</th><th>file</th>"
    return "<table>" + head + "<th>decision</th><th>why</th></tr>" + "".join(rows) + "</table>"


def _rule_cell(rule_id: str) -> str:
    if CATALOGUE.get(rule_id) is None:
        return f"<code>{_text(rule_id)}</code>"
    return f'<a href="#{_anchor(rule_id)}"><code>{escape(rule_id)}</code></a>'


def _blocked_section(item: dict[str, Any]) -> str:
    rows = [
        f'<tr class="finding"><td>{_text(r["severity"])}</td><td>{_rule_cell(r["rule"])}</td>'
        f"<td><code>{_text(r['file'])}{'!' + _text(r['member']) if r.get('member') else ''}</code></td>"
        f"<td>{_text(r['title'])}</td><td><code>{_text(r.get('evidence', ''))}</code></td></tr>"
        for r in item["reasons"]
    ]
    return (
        f'<section class="blocked"><h3><code>{_text(item["repo"])}</code> @ <code>{_text(item["commit"][:12])}</code>'
        f'</h3><p class="muted">judged {_when(int(item["created"]))} · policy '
        f"<code>{_text(item['policy'][:12])}</code></p>"
        "<table><tr><th>severity</th><th>rule</th><th>where</th><th>what</th><th>evidence</th></tr>"
        + "".join(rows)
        + "</table></section>"
    )


def dashboard(team: str, decisions: list[dict[str, Any]], blocked: list[dict[str, Any]], audit_size: int) -> str:
    """Recent decisions (serve and block, what developers met), blocked revisions, the whole audit log."""
    served = [e for e in decisions if e["action"] in ("serve", "upload")]
    body = [
        "<h1>modelshield gateway</h1>",
        f'<p class="muted">signed in as <strong>{_text(team)}</strong> · '
        f"{len(blocked)} blocked revisions · last {len(decisions)} of {audit_size} audited decisions</p>",
        '<h2 id="recent">Recent decisions</h2>',
        _audit_rows(served[:50]) if served else '<p class="muted">No file served or refused yet.</p>',
        '<h2 id="blocked">Blocked revisions</h2>',
    ]
    body += [_blocked_section(item) for item in blocked] or ['<p class="muted">Nothing blocked.</p>']
    body += ['<h2 id="audit">Audit log</h2>', _audit_rows(decisions)]
    rules = sorted({r["rule"] for item in blocked for r in item["reasons"] if CATALOGUE.get(r["rule"])})
    if rules:
        body.append('<h2 id="threats">Threat pages</h2>')
        body += [_threat_page(rule) for rule in (CATALOGUE.get(rule_id) for rule_id in rules) if rule is not None]
    return _page("modelshield gateway", body)


def rule_page(rule_id: str) -> str | None:
    """One rule's threat page, on its own (what a refused download links to)."""
    rule = CATALOGUE.get(rule_id.upper())
    if rule is None:
        return None
    return _page(f"{rule.id}: {rule.title}", ["<h1>modelshield threat page</h1>", _threat_page(rule)])
