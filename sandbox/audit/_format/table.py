"""Terminal table: one line per control, failures first."""

from __future__ import annotations

from . import STATUS_LABEL, ReportFormat, evidence_line, scope_lines

_ORDER = {"fail": 0, "pass": 1, "not-applicable": 2}


def sort_results(report):
    return sorted(report.results, key=lambda r: (_ORDER[r.status], -r.control.rank, r.control.id))


class TableFormat(ReportFormat):
    name = "table"
    suffix = ".txt"

    def render(self, report) -> str:
        rows = [("STATUS", "SEVERITY", "CONTROL", "TITLE", "EVIDENCE")]
        for r in sort_results(report):
            ev = r.summary if r.status != "fail" else evidence_line(r.failures[0]) + (
                f" (+{len(r.failures) - 1} more)" if len(r.failures) > 1 else "")
            rows.append((STATUS_LABEL[r.status], r.control.severity, r.control.id,
                         r.control.title, ev))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        scope = scope_lines(report)      # issue 14: what the report covers, first
        w = max(len(k) for k, _ in scope)
        lines = [f"{k + ':':<{w + 1}} {v}" for k, v in scope] + [""]
        for row in rows:
            cells = [row[i].ljust(widths[i]) for i in range(4)]
            lines.append("  ".join(cells) + "  " + row[4])
        c = report.counts()
        lines.append("")
        lines.append(f"{c['fail']} failed, {c['pass']} passed, {c['not-applicable']} not applicable; "
                     f"{report.launches} launch(es) in {report.records} record(s)"
                     + (f" since {report.since}" if report.since else "")
                     + (f"; profiles: {', '.join(report.profiles)}" if report.profiles else ""))
        return "\n".join(lines) + "\n"
