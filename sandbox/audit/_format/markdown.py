"""Markdown: summary, a table of every control, then evidence per failure."""

from __future__ import annotations

from . import STATUS_LABEL, ReportFormat, evidence_line
from .table import sort_results


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class MarkdownFormat(ReportFormat):
    name = "markdown"
    suffix = ".md"

    def render(self, report) -> str:
        c = report.counts()
        out = ["# Sandbox compliance report", "",
               f"Generated {report.generated}"
               + (f", records since {report.since}" if report.since else "") + ".", "",
               f"- **{c['fail']} failed**, {c['pass']} passed, {c['not-applicable']} not applicable",
               f"- {report.launches} launch(es) in {report.records} record(s); log head seq {report.head}"]
        if report.profiles:
            out.append(f"- profiles judged: {', '.join(report.profiles)}")
        if report.verification is not None:
            out.append(f"- audit chain: {report.verification.message}")
        out += ["", "| status | severity | control | title | references |",
                "| --- | --- | --- | --- | --- |"]
        for r in sort_results(report):
            out.append(f"| {STATUS_LABEL[r.status]} | {r.control.severity} | {r.control.id} | "
                       f"{_cell(r.control.title)} | {_cell(', '.join(r.control.references))} |")
        fails = [r for r in sort_results(report) if r.status == "fail"]
        if fails:
            out += ["", "## Failed controls"]
            for r in fails:
                out += ["", f"### {r.control.id}: {r.control.title} ({r.control.severity})", "",
                        r.control.rationale, ""]
                if r.control.remediation:
                    out += [f"Remediation: {r.control.remediation}", ""]
                out += [f"- {_cell(evidence_line(e))}" for e in r.failures]
        return "\n".join(out) + "\n"
