"""JUnit XML as Jenkins, GitLab, GitHub test reporters and Azure read it:
``<testsuites><testsuite><testcase classname name time>`` with
``<failure message type>`` for a failed control and ``<skipped>`` for a
not-applicable one. One testcase per control."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from . import ReportFormat, evidence_line


class JUnitFormat(ReportFormat):
    name = "junit"
    suffix = ".xml"

    def render(self, report) -> str:
        c = report.counts()
        total = len(report.results)
        attrs = {"tests": str(total), "failures": str(c["fail"]), "errors": "0",
                 "skipped": str(c["not-applicable"]), "time": "0"}
        root = ET.Element("testsuites", {"name": "sandbox audit", **attrs})
        suite = ET.SubElement(root, "testsuite", {"name": "sandbox audit report",
                                                   "timestamp": report.generated.rstrip("Z")[:19],
                                                   "hostname": (report.scope or {}).get("host") or "localhost",
                                                   **attrs})
        props = ET.SubElement(suite, "properties")
        sc = report.scope or {}
        win, rec, ver = sc.get("window") or {}, sc.get("records") or {}, sc.get("verification")
        scope = (("host", sc.get("host") or ""), ("key", sc.get("key") or ""),   # issue 14
                 ("window", f"{win.get('from') or ''}/{win.get('to') or ''}"),
                 ("record_range", f"{rec.get('first') or ''}-{rec.get('last') or ''}"),
                 ("verification", ver["result"] if ver else "not verified"))
        for k, v in scope + (("since", report.since or ""), ("records", report.records),
                             ("launches", report.launches),
                             ("profiles", ",".join(report.profiles))):
            ET.SubElement(props, "property", {"name": k, "value": str(v)})
        for r in report.results:
            ctl = r.control
            area = ctl.id.split("-")[1].lower() if "-" in ctl.id else "misc"
            tc = ET.SubElement(suite, "testcase", {
                "classname": f"sandbox.audit.{area}", "name": f"{ctl.id} {ctl.title}",
                "time": "0"})
            if r.status == "fail":
                f = ET.SubElement(tc, "failure", {"message": f"[{ctl.severity}] {r.summary}",
                                                  "type": ctl.severity})
                f.text = "\n".join(evidence_line(e) for e in r.failures)
            elif r.status == "not-applicable":
                ET.SubElement(tc, "skipped", {"message": r.summary})
            else:
                out = ET.SubElement(tc, "system-out")
                out.text = "\n".join(evidence_line(e) for e in r.evidence)
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
