"""Report formats: SARIF against the OASIS 2.1.0 schema, JUnit that CI tools
parse, self-contained HTML, Markdown, JSON, table."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sandbox.audit import AuditLog, record_event, render, samples
from sandbox.audit.report import build_report
from sandbox.paths import Paths

SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    p = Paths.resolve(tmp_path_factory.mktemp("fmt"))
    record_event(p, "launch", samples.launch("default", "sb-a"))
    record_event(p, "exit", samples.exit_("sb-a"))
    record_event(p, "launch", samples.launch("unconfined", "sb-<b>&"))
    record_event(p, "exit", samples.exit_("sb-<b>&"))
    record_event(p, "refusal", samples.refusal("sb-c"))
    log = AuditLog(p)
    rep = build_report(log)
    log.close()
    return rep


def test_sarif_validates_against_the_2_1_0_schema(report):
    import jsonschema
    schema = json.loads(SCHEMA.read_text())
    doc = json.loads(render(report, "sarif"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
    run = doc["runs"][0]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert len(rule_ids) == len(report.results) == len(set(rule_ids))
    fails = [r for r in run["results"] if r["kind"] == "fail"]
    assert {r["ruleId"] for r in fails} == {r.control.id for r in report.results
                                           if r.status == "fail"}
    priv = [r for r in fails if r["ruleId"] == "SBX-PRIV-01"][0]
    assert priv["level"] == "error"
    assert priv["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == "audit.db#seq=3"
    for r in run["results"]:
        assert 0 <= r["ruleIndex"] < len(rule_ids) and rule_ids[r["ruleIndex"]] == r["ruleId"]


def test_the_schema_rejects_a_broken_sarif_log(report):
    # The vendored schema must actually constrain: a wrong level is refused.
    import jsonschema
    schema = json.loads(SCHEMA.read_text())
    doc = json.loads(render(report, "sarif"))
    doc["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
    del doc["version"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def test_junit_parses_and_counts(report):
    root = ET.fromstring(render(report, "junit").encode())
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    c = report.counts()
    assert len(cases) == len(report.results) == int(suite.get("tests"))
    assert len([t for t in cases if t.find("failure") is not None]) == c["fail"] == \
        int(suite.get("failures"))
    assert len([t for t in cases if t.find("skipped") is not None]) == c["not-applicable"] == \
        int(suite.get("skipped"))
    failing = [t for t in cases if t.find("failure") is not None]
    assert all(t.get("classname").startswith("sandbox.audit.") for t in cases)
    f = [t for t in failing if t.get("name").startswith("SBX-PRIV-01")][0].find("failure")
    assert f.get("type") == "critical" and "seq 3" in f.text


def test_html_is_self_contained_and_escaped(report):
    html = render(report, "html")
    assert html.startswith("<!DOCTYPE html>")
    assert "<style>" in html
    # no external asset of any kind
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html, re.I)
    assert "<link" not in html and "<script" not in html and "@import" not in html
    assert "url(" not in html
    # data from records is escaped
    assert "sb-<b>&" not in html and "sb-&lt;b&gt;&amp;" in html
    # summary and evidence per control
    for r in report.results:
        assert f'id="{r.control.id}"' in html
    assert "seq 3:" in html


def test_markdown_json_and_table(report):
    md = render(report, "markdown")
    assert md.startswith("# Sandbox compliance report")
    assert "## Failed controls" in md and "SBX-PRIV-01" in md
    doc = json.loads(render(report, "json"))
    assert doc["summary"] == report.counts()
    assert {c["id"] for c in doc["controls"]} == {r.control.id for r in report.results}
    table = render(report, "table")
    lines = table.splitlines()     # the scope block first (issue 14), then the table
    first = lines[next(i for i, x in enumerate(lines) if x.startswith("STATUS")) + 1]
    assert first.startswith("FAIL") and "critical" in first


def test_unknown_format_is_a_usage_error(report):
    from sandbox.errors import UsageError
    with pytest.raises(UsageError):
        render(report, "pdf")
