"""The exit record survives a transient failure (issue 14, deliverable 1):
it is retried; what still cannot be written is kept beside the log and the
next writer appends it inside an ``audit.gap`` record, so `verify` says
what was lost instead of the log losing it quietly."""

from __future__ import annotations

import pytest

from sandbox.audit import AuditLog, evidence, record_event, samples
from sandbox.audit import log as audit_log
from sandbox.errors import SetupError
from sandbox.paths import Paths


@pytest.fixture
def paths(tmp_path):
    p = Paths.resolve(tmp_path)
    record_event(p, "launch", samples.launch("default", "sb-1"))
    yield p
    for log in list(audit_log._open.values()):
        log.close()
    audit_log._open.clear()


def test_exit_record_is_retried_after_a_transient_failure(paths, monkeypatch):
    monkeypatch.setattr(evidence, "EXIT_PAUSE", 0.0)
    log = AuditLog(paths)
    real = AuditLog.append
    calls = []

    def flaky(self, kind, data, **kw):
        calls.append(kind)
        if len(calls) < 3:
            raise SetupError("cannot write the audit log: database is locked", step="audit record")
        return real(self, kind, data, **kw)
    monkeypatch.setattr(AuditLog, "append", flaky)
    seq = evidence.record_exit(log, paths, samples.exit_("sb-1"))
    assert seq == 2 and calls == ["exit"] * 3
    monkeypatch.setattr(AuditLog, "append", real)
    assert log.verify().ok
    log.close()


def test_an_exit_that_cannot_be_written_becomes_a_gap_saying_what_was_lost(paths, monkeypatch):
    monkeypatch.setattr(evidence, "EXIT_PAUSE", 0.0)
    log = AuditLog(paths)
    real = AuditLog.append

    def broken(self, kind, data, **kw):
        raise SetupError("cannot write the audit log: disk full", step="audit record")
    monkeypatch.setattr(AuditLog, "append", broken)
    with pytest.warns(RuntimeWarning, match="exit record of sandbox sb-1 could not be written"):
        assert evidence.record_exit(log, paths, samples.exit_("sb-1")) is None
    monkeypatch.setattr(AuditLog, "append", real)
    assert list((paths.state / "audit.lost").glob("*.json"))
    # the next writer appends the lost exit inside a gap, then its own record
    record_event(paths, "launch", samples.launch("default", "sb-2"))
    recs = list(log.records())
    assert [r.kind for r in recs] == ["launch", "audit.gap", "launch"]
    gap = recs[1].data
    assert gap["lost"]["kind"] == "exit" and gap["lost"]["data"]["sandbox_id"] == "sb-1"
    assert "disk full" in gap["reason"]
    assert list((paths.state / "audit.lost").glob("*.json")) == []
    r = log.verify()
    assert not r.ok and r.first_bad == 2 and "disk full" in r.reason
    log.close()
