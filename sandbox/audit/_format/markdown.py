"""Markdown: the scope, a summary, a table of every control, then the
evidence per failure. Rendered from the Jinja2 template
``audit/templates/report.md`` with autoescape on: a value holding markup
(``<script>``) renders as text wherever the Markdown is shown; table cells
also escape ``|`` and line breaks."""

from __future__ import annotations

from . import ReportFormat, scope_lines, template_env
from .table import sort_results


def _cell(text) -> object:
    from markupsafe import Markup, escape
    return Markup(str(escape(str(text))).replace("|", "\\|").replace("\n", " "))


class MarkdownFormat(ReportFormat):
    name = "markdown"
    suffix = ".md"

    def render(self, report) -> str:
        env = template_env()
        env.filters["cell"] = _cell
        results = sort_results(report)
        return env.get_template("report.md").render(
            scope=scope_lines(report), generated=report.generated,
            version=report.tool_version, counts=report.counts(), launches=report.launches,
            records=report.records, results=results,
            fails=[r for r in results if r.status == "fail"])
