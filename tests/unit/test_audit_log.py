"""The audit log: record format, chain, anchor, signing policy, cheap import."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from sandbox.audit import AuditLog, record_event, samples
from sandbox.audit import log as audit_log
from sandbox.audit._canon import GENESIS, canonical
from sandbox.errors import UsageError
from sandbox.paths import Paths


@pytest.fixture
def paths(tmp_path):
    yield Paths.resolve(tmp_path)
    for log in list(audit_log._open.values()):
        log.close()
    audit_log._open.clear()


def test_record_event_returns_sequence_numbers(paths):
    assert record_event(paths, "launch", samples.launch()) == 1
    assert record_event(paths, "exit", samples.exit_()) == 2
    assert record_event(paths, "trust.add", {"fingerprint": "ABCD", "prefix": "example.com"}) == 3


def test_records_are_canonical_json_chained_by_sha256(paths):
    for i in range(3):
        record_event(paths, "launch", samples.launch(sandbox_id=f"sb-{i}", name="é ü"))
    log = AuditLog(paths)
    prev = GENESIS
    for seq, h, mac, body in log.rows():
        doc = json.loads(body)
        assert canonical(doc) == body                      # sorted keys, no spaces
        assert b", " not in body and b": " not in body
        assert "é ü".encode() in body                      # UTF-8, not \\u escapes
        assert set(doc) == {"v", "seq", "time", "kind", "data", "prev"}
        assert doc["seq"] == seq and doc["prev"] == prev
        assert hashlib.sha256(body).hexdigest() == h
        assert mac and len(mac) == 64
        prev = h
    log.close()


def test_anchor_names_the_head_and_is_signed(paths):
    for i in range(3):
        record_event(paths, "launch", samples.launch())
    log = AuditLog(paths)
    a = log.read_anchor()
    assert (a["seq"], a["hash"]) == log.head()
    assert a["signed"]["seq"] == 1    # signed at first use, then batched
    r = log.verify()
    assert r.ok and r.signed == 3     # a successful verify signs the head
    assert log.read_anchor()["signed"]["seq"] == 3
    log.close()


def test_hot_kinds_are_signed_in_batches_others_at_once(paths, monkeypatch):
    monkeypatch.setattr(audit_log, "SIGN_EVERY", 4)
    log = AuditLog(paths)
    signed = []
    for i in range(9):
        log.append("launch", {"i": i})
        signed.append(log.read_anchor()["signed"]["seq"])
    assert signed == [1, 1, 1, 1, 5, 5, 5, 5, 9]
    log.append("trust.add", {"fingerprint": "F"})
    assert log.read_anchor()["signed"]["seq"] == 10
    log.append("launch", {}, sign=True)
    assert log.read_anchor()["signed"]["seq"] == 11
    log.close()


def test_the_signature_is_a_real_ed25519_signature(paths):
    from cryptography.hazmat.primitives import serialization

    from sandbox.audit.log import anchor_message
    record_event(paths, "refusal", samples.refusal())
    pub = serialization.load_pem_public_key((paths.state / "audit-key.pub").read_bytes())
    priv = serialization.load_pem_private_key((paths.state / "audit-key").read_bytes(), None)
    assert priv.public_key().public_bytes(serialization.Encoding.Raw,
                                          serialization.PublicFormat.Raw) == \
        pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    signed = AuditLog(paths).read_anchor()["signed"]
    pub.verify(bytes.fromhex(signed["sig"]), anchor_message(signed))   # raises if bad


def test_a_record_past_the_anchor_is_accepted_and_named(paths):
    # A writer killed between its commit and its anchor update.
    record_event(paths, "launch", samples.launch())
    anchor = (paths.state / "audit.anchor").read_bytes()
    record_event(paths, "exit", samples.exit_())
    (paths.state / "audit.anchor").write_bytes(anchor)
    log = AuditLog(paths)
    r = log.verify(sign_head=False)
    assert r.ok and r.anchored == 1 and r.head == 2
    assert any("after the anchor" in n for n in r.notes)
    log.close()


def test_offline_verify_needs_every_record_signed(paths, monkeypatch):
    for _ in range(3):
        record_event(paths, "launch", samples.launch())
    pub = paths.state / "audit-key.pub"
    # An auditor without the private key (simulated: it cannot be read).
    from sandbox.audit import _keys
    monkeypatch.setattr(_keys, "mac_key", lambda state: None)
    log = AuditLog(paths)
    r = log.verify(public_key=pub)
    assert not r.ok and r.first_bad == 2 and "not covered by the signature" in r.reason
    monkeypatch.undo()
    assert log.verify().ok          # on the host: verifies, then signs the head
    monkeypatch.setattr(_keys, "mac_key", lambda state: None)
    assert log.verify(public_key=pub).ok
    log.close()


def test_bad_kinds_and_data_are_refused(paths):
    for kind in ("", "Launch", "launch!", "1x", "a b"):
        with pytest.raises(UsageError):
            record_event(paths, kind, {})
    with pytest.raises(UsageError):
        record_event(paths, "launch", ["not", "a", "dict"])
    with pytest.raises(UsageError):
        record_event(paths, "launch", {"x": object()})
    with pytest.raises(UsageError):
        record_event(paths, "launch", {"x": float("nan")})
    assert not (paths.state / "audit.db").exists() or AuditLog(paths).head()[0] == 0


def test_paths_and_sets_are_recorded_as_json(paths, tmp_path):
    record_event(paths, "image.import", {"path": tmp_path, "tags": {"b", "a"}})
    rec = next(AuditLog(paths).records())
    assert rec.data == {"path": str(tmp_path), "tags": ["a", "b"]}


def test_records_filters(paths):
    record_event(paths, "launch", samples.launch(sandbox_id="abc-1"))
    record_event(paths, "exit", samples.exit_("abc-1"))
    record_event(paths, "launch", samples.launch(sandbox_id="xyz-2"))
    log = AuditLog(paths)
    assert [r.seq for r in log.records(kinds={"launch"})] == [1, 3]
    assert [r.seq for r in log.records(sandbox="abc")] == [1, 2]
    t = list(log.records())[1].time
    assert [r.seq for r in log.records(since=t)] == [2, 3]
    assert [r.seq for r in log.records(until=t)] == [1]


def test_the_log_refuses_update_and_delete(paths):
    import sqlite3
    record_event(paths, "launch", samples.launch())
    con = sqlite3.connect(paths.state / "audit.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE records SET body = x'00'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM records")
    con.close()


def test_empty_log_verifies(paths):
    r = AuditLog(paths).verify()
    assert r.ok and r.records == 0


def test_reading_creates_nothing(paths):
    log = AuditLog(paths)
    assert list(log.records()) == [] and log.head() == (0, GENESIS)
    assert not paths.state.exists()


def test_importing_sandbox_audit_is_cheap():
    code = ("import sys, sandbox.audit; "
            "print(sorted(m for m in ('sqlite3', 'cryptography', 'click', 'tomllib', "
            "'sandbox.audit.report', 'sandbox.audit.verify', 'xml') if m in sys.modules))")
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.strip()
    assert out == "[]"


def test_parse_when():
    from datetime import datetime, timezone

    from sandbox.audit import parse_when
    now = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
    assert parse_when("24h", now=now) == "2026-11-28T12:00:00.000000Z"
    assert parse_when("7d", now=now) == "2026-11-22T12:00:00.000000Z"
    assert parse_when("30m", now=now) == "2026-11-29T11:30:00.000000Z"
    assert parse_when("2026-11-01") == "2026-11-01T00:00:00.000000Z"
    assert parse_when("2026-11-01T10:00:00+01:00") == "2026-11-01T09:00:00.000000Z"
    with pytest.raises(UsageError):
        parse_when("last tuesday")


def test_a_forked_child_writes_with_its_own_connection(paths):
    record_event(paths, "launch", samples.launch())     # parent holds a connection
    pid = os.fork()
    if pid == 0:  # child: write, then leave without closing anything
        code = 0
        try:
            record_event(paths, "exit", samples.exit_())
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    record_event(paths, "launch", samples.launch(sandbox_id="sb-2"))
    log = AuditLog(paths)
    assert [r.kind for r in log.records()] == ["launch", "exit", "launch"]
    assert log.verify().ok
    log.close()
