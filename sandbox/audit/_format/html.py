"""One self-contained HTML page: inline CSS, no script, no external asset.

The page is the Jinja2 template ``audit/templates/report.html``, rendered
with autoescape on (`template_env`): no value is escaped by hand, and none
can reach the page unescaped. The scope block comes first; times are shown
as ``2026-11-29 08:18:09 UTC``; the control id column does not wrap.
"""

from __future__ import annotations

from . import ReportFormat, scope_lines, template_env
from .table import sort_results

_CLS = {"pass": "pass", "fail": "fail", "not-applicable": "na"}


class HtmlFormat(ReportFormat):
    name = "html"
    suffix = ".html"

    def render(self, report) -> str:
        v = report.verification
        return template_env().get_template("report.html").render(
            title="Sandbox compliance report", scope=scope_lines(report),
            verified_ok=bool(v is not None and v.ok), generated=report.generated,
            version=report.tool_version, counts=report.counts(), launches=report.launches,
            results=sort_results(report), cls=_CLS)
