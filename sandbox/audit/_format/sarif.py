"""SARIF 2.1.0 (OASIS Static Analysis Results Interchange Format).

One run; the driver ``sandbox`` has one rule per control (``defaultConfiguration
.level`` from the severity, ``properties.security-severity`` as GitHub code
scanning reads it). Each failing subject is a result of kind ``fail``; a
passing or not-applicable control is one result of kind ``pass`` or
``notApplicable`` with level ``none``.

GitHub code scanning's ingestion rules (issue 14): every result has a
``physicalLocation.artifactLocation.uri``: the profile file for a
profile-derived finding, otherwise the stable, repository-relative
``sandbox-audit/<control>/<sandbox-id>`` (``.../log`` for a finding about
the log as a whole); ``partialFingerprints`` (a digest of control, subject
and sandbox, with no time or report-run value in it) so alerts do not
duplicate across uploads; every rule has a ``helpUri``. The records the
results come from are named in ``logicalLocations`` (``audit.db#seq=12``).
The run's ``properties.scope`` is the report's scope block.
"""

from __future__ import annotations

import json

from . import ReportFormat

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
#: helpUri when a control names none: the reference it cites first
NIST_800_190 = "https://doi.org/10.6028/NIST.SP.800-190"
CIS_DOCKER = "https://www.cisecurity.org/benchmark/docker"
FINGERPRINT = "sandboxAuditFinding/v1"


def help_uri(control) -> str:
    uri = getattr(control, "help_uri", None)
    if uri:
        return uri
    for ref in control.references:
        if ref.startswith("NIST"):
            return NIST_800_190
    return CIS_DOCKER


def artifact_uri(control_id: str, e) -> str:
    """Where a result points: the profile file, or a stable URI per control
    and sandbox (or per control for a finding about the log)."""
    from urllib.parse import quote
    uri = getattr(e, "uri", None) if e is not None else None
    if uri:
        return ("file://" + quote(uri)) if uri.startswith("/") else quote(uri)
    tail = (e.sandbox_id if e is not None and e.sandbox_id else
            "log" if e is None or e.subject in ("audit log", "-") or e.subject.startswith("record")
            else e.subject)
    return f"sandbox-audit/{quote(control_id, safe='')}/{quote(str(tail), safe='')}"


def fingerprint(control_id: str, kind: str, e) -> str:
    from hashlib import sha256
    parts = [control_id, kind, artifact_uri(control_id, e)]
    if e is not None:
        parts += [e.subject if not e.subject.startswith("record") else f"seq={e.seq}",
                  e.sandbox_id or ""]
    return sha256("\0".join(parts).encode()).hexdigest()
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
                "helpUri": help_uri(c),
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
                "properties": {"scope": report.scope},
            }],
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    @staticmethod
    def _result(c, index, kind, level, e, text=None) -> dict:
        res = {"ruleId": c.id, "ruleIndex": index, "kind": kind, "level": level,
               "message": {"text": text or (e.message if e else c.title)}}
        physical = {"artifactLocation": {"uri": artifact_uri(c.id, e)},
                    "region": {"startLine": 1}}
        res["locations"] = [{"physicalLocation": physical}]
        res["partialFingerprints"] = {FINGERPRINT: fingerprint(c.id, kind, e)}
        if e is not None:
            loc = {"name": e.subject, "kind": "resource"}
            if e.seq is not None and e.subject.startswith("record"):
                loc["fullyQualifiedName"] = f"audit.db#seq={e.seq}"
            elif e.subject.startswith("profile"):
                loc["fullyQualifiedName"] = e.subject.replace(" ", ":", 1)
            res["locations"][0]["logicalLocations"] = [loc]
            props = {"subject": e.subject}
            if e.seq is not None:
                props["seq"] = e.seq
            if e.sandbox_id:
                props["sandbox_id"] = e.sandbox_id
            for k in ("time", "caller", "command", "image"):
                if getattr(e, k, None):
                    props[k] = getattr(e, k)
            res["properties"] = props
        return res
