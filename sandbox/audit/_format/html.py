"""One self-contained HTML page: inline CSS, no script, no external asset.

The page layout is the template ``audit/templates/report.html`` (a
`string.Template`); every value put into it is HTML-escaped here.
"""

from __future__ import annotations

from html import escape
from string import Template

from . import STATUS_LABEL, ReportFormat, evidence_line
from .table import sort_results

_CLS = {"pass": "pass", "fail": "fail", "not-applicable": "na"}


def _template() -> Template:
    from ..._resources import data_dir
    return Template((data_dir("audit") / "templates" / "report.html").read_text(encoding="utf-8"))


class HtmlFormat(ReportFormat):
    name = "html"
    suffix = ".html"

    def render(self, report) -> str:
        c = report.counts()
        rows, details = [], []
        for r in sort_results(report):
            cls = _CLS[r.status]
            sev = escape(r.control.severity)
            rows.append(
                f'<tr><td class="st {cls}">{STATUS_LABEL[r.status]}</td>'
                f'<td><span class="sev {sev}">{sev}</span></td>'
                f'<td><a href="#{escape(r.control.id)}">{escape(r.control.id)}</a></td>'
                f"<td>{escape(r.control.title)}</td><td>{escape(r.summary)}</td></tr>")
            items = "".join(f"<li>{escape(evidence_line(e))}</li>" for e in r.evidence)
            if r.omitted:
                items += f"<li>... and {r.omitted} more</li>"
            rem = (f"<p><b>Remediation:</b> {escape(r.control.remediation)}</p>"
                   if r.control.remediation else "")
            details.append(
                f'<details id="{escape(r.control.id)}" class="{cls}"'
                f'{" open" if r.status == "fail" else ""}>'
                f"<summary>{STATUS_LABEL[r.status]} {escape(r.control.id)}: "
                f"{escape(r.control.title)}</summary>"
                f"<p>{escape(r.control.rationale)}</p>{rem}"
                f'<p class="refs">{escape(", ".join(r.control.references))} '
                f"&middot; check <code>{escape(r.control.check)}</code></p>"
                f'<ul class="ev">{items}</ul></details>')
        meta = (f"Generated {report.generated} by sandbox {report.tool_version}; "
                f"{report.records} record(s)"
                + (f" since {report.since}" if report.since else "")
                + f"; log head seq {report.head}"
                + (f"; profiles: {', '.join(report.profiles)}" if report.profiles else ""))
        chain = (f"Audit chain: {report.verification.message}"
                 if report.verification is not None else "Audit chain: not verified")
        return _template().substitute(
            title="Sandbox compliance report", meta=escape(meta), chain=escape(chain),
            failed=c["fail"], passed=c["pass"], na=c["not-applicable"],
            launches=report.launches, rows="\n".join(rows), details="\n".join(details))
