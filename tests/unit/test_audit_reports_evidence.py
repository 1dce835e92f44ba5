"""Reports an auditor and code scanning can rely on (issue 14, deliverables 5
and 7): a scope block first, evidence lines that say when, who, what and on
which image, SARIF that GitHub code scanning ingests (checked against the
2.1.0 schema and against its ingestion rules), and markup in any value
rendered as text in every format (Jinja2 with autoescape)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sandbox.audit import AuditLog, record_event, render, samples
from sandbox.audit.controls import load_controls
from sandbox.audit.report import build_report, evaluate
from sandbox.paths import Paths

SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"
EVIL = "<script>alert(1)</script>"
CALLER = {"uid": 1000, "euid": 0, "user": "alice", "login_uid": 1000, "login_user": "alice",
          "pid": 4242, "ppid": 4000, "parent_command": ["bash"], "cwd": "/home/alice",
          "sudo_user": "bob", "sudo_uid": "1001"}


def _log(tmp: Path) -> Paths:
    p = Paths.resolve(tmp)
    record_event(p, "launch", dict(samples.launch("default", "sb-a"), caller=CALLER))
    record_event(p, "exit", samples.exit_("sb-a"))
    bad = samples.launch("unconfined", f"sb-{EVIL}", command=["/bin/sh", "-c", EVIL],
                         name=EVIL)
    record_event(p, "launch", dict(bad, caller=CALLER))
    record_event(p, "exit", samples.exit_(f"sb-{EVIL}"))
    record_event(p, "refusal", samples.refusal("sb-c"))
    return p


@pytest.fixture(scope="module")
def evil_controls(tmp_path_factory):
    d = tmp_path_factory.mktemp("ctl")
    (d / "evil.toml").write_text(f'''
[[control]]
id = "SITE-EVIL-01"
title = "{EVIL} title"
severity = "high"
rationale = "{EVIL} rationale"
remediation = "{EVIL} fix"
references = ["NIST 800-190 4.4.3"]
applies_to = ["launch", "profile"]
[control.check]
name = "empty"
field = "insecure_options"
[[control]]
id = "SITE-EVIL-02"
title = "{EVIL} always fails"
severity = "low"
rationale = "r"
references = ["CIS-DI 5.1"]
[control.check]
name = "equals"
field = "namespaces.user"
value = false
''')
    return load_controls(d)


@pytest.fixture(scope="module")
def report(tmp_path_factory, evil_controls):
    p = _log(tmp_path_factory.mktemp("rep"))
    log = AuditLog(p)
    try:
        return build_report(log, controls=evil_controls)
    finally:
        log.close()


def _sarif(report) -> dict:
    return json.loads(render(report, "sarif"))


# -- GitHub code scanning's ingestion rules, as a checker ---------------------------

def github_ingestion_problems(doc: dict) -> list[str]:
    """What GitHub code scanning's SARIF upload would reject or mishandle:
    version 2.1.0, a driver name, unique rule ids with helpUri, and on every
    result a ruleId naming a rule, a message text, a location with
    physicalLocation.artifactLocation.uri, and partialFingerprints."""
    out = []
    if doc.get("version") != "2.1.0":
        out.append("version is not 2.1.0")
    for run in doc.get("runs", []):
        drv = run.get("tool", {}).get("driver", {})
        if not drv.get("name"):
            out.append("run without tool.driver.name")
        ids = [r.get("id") for r in drv.get("rules", [])]
        if len(ids) != len(set(ids)):
            out.append("duplicate rule ids")
        for r in drv.get("rules", []):
            if not str(r.get("helpUri", "")).startswith("https://"):
                out.append(f"rule {r.get('id')} has no https helpUri")
        for i, res in enumerate(run.get("results", [])):
            if res.get("ruleId") not in ids:
                out.append(f"result {i}: ruleId {res.get('ruleId')} names no rule")
            if not res.get("message", {}).get("text"):
                out.append(f"result {i}: no message text")
            locs = res.get("locations") or []
            if not locs or not all(l.get("physicalLocation", {}).get("artifactLocation", {})
                                   .get("uri") for l in locs):
                out.append(f"result {i}: no physicalLocation.artifactLocation.uri")
            if not res.get("partialFingerprints"):
                out.append(f"result {i}: no partialFingerprints")
    return out


def test_sarif_is_schema_valid_and_meets_github_ingestion_rules(report):
    import jsonschema
    schema = json.loads(SCHEMA.read_text())
    doc = _sarif(report)
    cls = jsonschema.validators.validator_for(schema)
    errors = list(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(doc))
    assert not errors, errors[0].message
    assert github_ingestion_problems(doc) == []


def test_the_ingestion_checker_catches_a_logical_only_result(report):
    doc = _sarif(report)
    res = doc["runs"][0]["results"][0]
    res["locations"] = [{"logicalLocations": [{"name": "record 3"}]}]
    del res["partialFingerprints"]
    probs = github_ingestion_problems(doc)
    assert any("physicalLocation" in p for p in probs)
    assert any("partialFingerprints" in p for p in probs)


def test_sarif_uris_name_the_sandbox_or_the_profile_file(tmp_path, report):
    doc = _sarif(report)
    fails = [r for r in doc["runs"][0]["results"] if r["kind"] == "fail"]
    uris = {r["ruleId"]: r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in fails}
    assert uris["SBX-PRIV-01"].startswith("sandbox-audit/SBX-PRIV-01/sb-")
    # profile-derived: the profile file
    from sandbox.profile import load
    prof = load("unconfined")
    rep = evaluate(load_controls(), records=None, profiles=[prof])
    pdoc = json.loads(render(rep, "sarif"))
    pf = [r for r in pdoc["runs"][0]["results"] if r["kind"] == "fail"]
    assert pf and all(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                      == "file://" + prof.source for r in pf)


def test_two_reports_of_the_same_log_give_the_same_fingerprints(tmp_path, evil_controls):
    p = _log(tmp_path)

    def fps():
        log = AuditLog(p)
        try:
            doc = _sarif(build_report(log, controls=evil_controls))
        finally:
            log.close()
        return [(r["ruleId"], r["partialFingerprints"]) for r in doc["runs"][0]["results"]]
    a, b = fps(), fps()
    assert a == b
    fails = [f for f in a]
    assert len({json.dumps(f[1]) for f in fails}) == len(fails)    # distinct per result


# -- scope, evidence ----------------------------------------------------------------

def test_every_format_shows_the_scope_first(report):
    sc = report.scope
    assert sc["host"] and sc["key"].startswith("sha256:")
    assert sc["records"]["first"] == 1 and sc["records"]["last"] == 5
    assert sc["verification"]["ok"] is True
    for fmt in ("table", "markdown", "html"):
        text = render(report, fmt)
        first_control = text.find("SBX-")
        for label in ("Host", "Time window", "Records", "Audit key", "Log verification"):
            i = text.find(label)
            assert 0 <= i < first_control, (fmt, label)
    assert json.loads(render(report, "json"))["scope"]["key"] == sc["key"]
    assert _sarif(report)["runs"][0]["properties"]["scope"]["host"] == sc["host"]
    props = {p.get("name") for p in ET.fromstring(render(report, "junit")).iter("property")}
    assert {"host", "key", "window", "record_range", "verification"} <= props


def test_evidence_lines_say_when_who_what_and_which_image(report):
    r = next(x for x in report.results if x.control.id == "SBX-PRIV-01")
    [e] = r.failures
    assert e.time and e.caller == "alice (uid 1000) via sudo from bob"
    assert EVIL in e.command and e.image.startswith("example.com/app/web:1.0@sha256:")
    from sandbox.audit._format import evidence_line
    line = evidence_line(e)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC seq 3: ", line)
    assert "by alice (uid 1000) via sudo from bob" in line and "on example.com/app" in line


def test_html_keeps_control_ids_on_one_line_and_times_readable(report):
    html = render(report, "html")
    assert re.search(r"td\.id \{[^}]*white-space: nowrap", html) or \
        re.search(r"\.nowrap, td\.id \{ white-space: nowrap", html)
    assert '<td class="id">' in html
    assert not re.search(r"\d{2}:\d{2}:\d{2}\.\d{6}Z", html)       # no raw microseconds


# -- markup is text everywhere ------------------------------------------------------

@pytest.mark.parametrize("fmt", ["html", "markdown"])
def test_script_in_title_name_or_argv_renders_as_text(report, fmt):
    text = render(report, fmt)
    assert "<script" not in text.lower()
    assert "&lt;script&gt;" in text                 # shown, as text


def test_script_in_values_stays_data_in_json_sarif_junit_table(report):
    assert any(EVIL in c["title"] for c in json.loads(render(report, "json"))["controls"])
    assert any(EVIL in r["shortDescription"]["text"]
               for r in _sarif(report)["runs"][0]["tool"]["driver"]["rules"])
    root = ET.fromstring(render(report, "junit"))     # parses: escaped by the XML writer
    assert any(EVIL in tc.get("name") for tc in root.iter("testcase"))
    assert "SITE-EVIL-01" in render(report, "table")


def test_jinja2_is_imported_only_by_the_report_path():
    import subprocess
    import sys
    code = ("import sys, sandbox.api, sandbox.audit, sandbox.audit.log, sandbox.audit.verify, "
            "sandbox.audit.report; print('jinja2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
