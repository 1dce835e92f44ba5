"""SARIF 2.1.0 (OASIS Static Analysis Results Interchange Format).

One run; the driver ``sandbox`` has one rule per control (``defaultConfiguration
.level`` from the severity, ``properties.security-severity`` as GitHub code
scanning reads it). Each failing subject is a result of kind ``fail``; a
passing or not-applicable control is one result of kind ``pass`` or
``notApplicable`` with level ``none``. Results point at records through
``logicalLocations`` (``audit.db#seq=12``), since an audit record is not a
source file.
"""

from __future__ import annotations

import json

from . import ReportFormat

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
_SCORE = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}
_KIND = {"pass": "pass", "not-applicable": "notApplicable"}


class SarifFormat(ReportFormat):
    name = "sarif"
    suffix = ".sarif"

    def render(self, report) -> str:
        rules, results = [], []
        for i, r in enumerate(report.results):
            c = r.control
            rules.append({
                "id": c.id,
                "name": "".join(w.capitalize() for w in c.id.split("-")),
                "shortDescription": {"text": c.title},
                "fullDescription": {"text": c.rationale},
                "help": {"text": c.remediation or c.rationale},
                "defaultConfiguration": {"level": _LEVEL[c.severity]},
                "properties": {"tags": ["security", "compliance", *c.references],
                               "security-severity": _SCORE[c.severity],
                               "severity": c.severity,
                               "references": list(c.references)},
            })
            if r.status == "fail":
                for e in r.failures:
                    results.append(self._result(c, i, "fail", _LEVEL[c.severity], e))
            else:
                e = r.evidence[0] if r.evidence else None
                results.append(self._result(c, i, _KIND[r.status], "none", e, r.summary))
        v = report.verification
        doc = {
            "$schema": SCHEMA_URI,
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {"name": "sandbox", "version": report.tool_version or "0",
                                    "semanticVersion": report.tool_version or "0.0.0",
                                    "rules": rules}},
                "invocations": [{"executionSuccessful": True,
                                 "endTimeUtc": report.generated,
                                 "properties": {"since": report.since,
                                                "records": report.records,
                                                "launches": report.launches,
                                                "profiles": list(report.profiles),
                                                "chain": v.message if v is not None else None}}],
                "results": results,
            }],
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    @staticmethod
    def _result(c, index, kind, level, e, text=None) -> dict:
        res = {"ruleId": c.id, "ruleIndex": index, "kind": kind, "level": level,
               "message": {"text": text or (e.message if e else c.title)}}
        if e is not None:
            loc = {"name": e.subject, "kind": "resource"}
            if e.seq is not None and e.subject.startswith("record"):
                loc["fullyQualifiedName"] = f"audit.db#seq={e.seq}"
            elif e.subject.startswith("profile"):
                loc["fullyQualifiedName"] = e.subject.replace(" ", ":", 1)
            res["locations"] = [{"logicalLocations": [loc]}]
            props = {"subject": e.subject}
            if e.seq is not None:
                props["seq"] = e.seq
            if e.sandbox_id:
                props["sandbox_id"] = e.sandbox_id
            res["properties"] = props
        return res
