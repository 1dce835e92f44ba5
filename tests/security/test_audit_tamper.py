"""Attacks on the audit log: each must fail `audit verify`, naming the first
bad sequence number (issue 4 acceptance).

The attacker here can write the database and the anchor (root on the host,
or a stolen backup being passed off as genuine). Where the attacker also
replaces the host key, only a public key held apart catches it; that case
is tested with ``--public-key``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest

from sandbox.audit import AuditLog, record_event, samples
from sandbox.audit import log as audit_log
from sandbox.audit._canon import canonical
from sandbox.paths import Paths

N = 8


def _close_all():
    for log in list(audit_log._open.values()):
        log.close()
    audit_log._open.clear()


@pytest.fixture
def paths(tmp_path):
    p = Paths.resolve(tmp_path)
    for i in range(1, N // 2 + 1):
        sid = f"sb-{i:04d}"
        record_event(p, "launch", samples.launch("default", sid))
        record_event(p, "exit", samples.exit_(sid))
    _close_all()
    yield p
    _close_all()


def _db(paths) -> sqlite3.Connection:
    con = sqlite3.connect(paths.state / "audit.db", isolation_level=None)
    con.execute("DROP TRIGGER IF EXISTS records_no_update")
    con.execute("DROP TRIGGER IF EXISTS records_no_delete")
    return con


def _verify(paths, **kw):
    log = AuditLog(paths)
    try:
        return log.verify(**kw)
    finally:
        log.close()


def test_untouched_log_verifies(paths):
    r = _verify(paths)
    assert r.ok, r.message
    assert r.records == N and r.head == N and r.signed == N


@pytest.mark.parametrize("seq", range(1, N + 1))
def test_changing_one_byte_of_any_record_is_detected(paths, seq):
    con = _db(paths)
    body = bytearray(con.execute("SELECT body FROM records WHERE seq=?", (seq,)).fetchone()[0])
    i = body.index(b'"sandbox_id":"sb-') + len(b'"sandbox_id":"sb-')
    body[i] ^= 0x01  # "0" -> "1": still valid JSON, another sandbox
    con.execute("UPDATE records SET body=? WHERE seq=?", (bytes(body), seq))
    con.close()
    r = _verify(paths)
    assert not r.ok
    assert r.first_bad == seq
    assert "edited" in r.reason


def test_rewriting_a_record_with_its_hash_is_caught_by_the_seal(paths):
    # The attacker edits record 3 and recomputes its hash and every later
    # link, and the anchor's head, but has no key for the seals.
    con = _db(paths)
    rows = con.execute("SELECT seq, body FROM records ORDER BY seq").fetchall()
    prev = None
    for seq, body in rows:
        doc = __import__("json").loads(body)
        if seq == 3:
            doc["data"]["command"] = ["/bin/true"]
        if prev is not None and seq > 3:
            doc["prev"] = prev
        new = canonical(doc)
        h = hashlib.sha256(new).hexdigest()
        con.execute("UPDATE records SET body=?, hash=? WHERE seq=?", (new, h, seq))
        prev = h
    con.close()
    r = _verify(paths)
    assert not r.ok and r.first_bad == 3
    assert "seal" in r.reason


@pytest.mark.parametrize("a,b", [(1, 2), (2, 5), (7, 8)])
def test_swapping_two_records_is_detected(paths, a, b):
    con = _db(paths)
    ra = con.execute("SELECT hash, mac, body FROM records WHERE seq=?", (a,)).fetchone()
    rb = con.execute("SELECT hash, mac, body FROM records WHERE seq=?", (b,)).fetchone()
    con.execute("UPDATE records SET hash=?, mac=?, body=? WHERE seq=?", (*rb, a))
    con.execute("UPDATE records SET hash=?, mac=?, body=? WHERE seq=?", (*ra, b))
    con.close()
    r = _verify(paths)
    assert not r.ok and r.first_bad == a
    assert "reordered" in r.reason


def test_deleting_the_last_record_is_detected_by_the_anchor(paths):
    con = _db(paths)
    con.execute("DELETE FROM records WHERE seq=?", (N,))
    con.close()
    r = _verify(paths)
    assert not r.ok and r.first_bad == N
    assert "missing" in r.reason and "anchor" in r.reason


def test_deleting_the_last_records_and_the_anchor_is_detected(paths):
    con = _db(paths)
    con.execute("DELETE FROM records WHERE seq>?", (N - 2,))
    con.close()
    (paths.state / "audit.anchor").unlink()
    r = _verify(paths)
    assert not r.ok
    assert "anchor" in r.reason and "missing" in r.reason


@pytest.mark.parametrize("seq", [1, 4, N - 1])
def test_deleting_a_record_in_the_middle_is_detected(paths, seq):
    con = _db(paths)
    con.execute("DELETE FROM records WHERE seq=?", (seq,))
    con.close()
    r = _verify(paths)
    assert not r.ok and r.first_bad == seq


@pytest.mark.parametrize("after", [0, 3, N - 1])
def test_inserting_a_forged_record_is_detected(paths, after):
    # Renumber the rows after the insertion point and put in a record that
    # links correctly to its predecessor: only the seal can tell.
    con = _db(paths)
    for seq in range(N, after, -1):
        con.execute("UPDATE records SET seq=? WHERE seq=?", (seq + 1, seq))
    prev = (con.execute("SELECT hash FROM records WHERE seq=?", (after,)).fetchone()[0]
            if after else "0" * 64)
    body = canonical({"v": 1, "seq": after + 1, "time": "2026-11-29T00:00:00.000000Z",
                      "kind": "launch", "data": samples.launch("strict", "sb-forged"),
                      "prev": prev})
    con.execute("INSERT INTO records (seq, hash, mac, body) VALUES (?, ?, ?, ?)",
                (after + 1, hashlib.sha256(body).hexdigest(), "00" * 32, body))
    con.close()
    r = _verify(paths)
    assert not r.ok and r.first_bad == after + 1


def _checkpoint(paths):
    con = sqlite3.connect(paths.state / "audit.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    wal = paths.state / "audit.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_truncating_the_database_file_is_detected(paths):
    _checkpoint(paths)   # every record in the main file, as after a checkpoint
    db = paths.state / "audit.db"
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.truncate(size // 2)
    r = _verify(paths)
    assert not r.ok
    assert r.first_bad == r.head + 1
    assert r.head < N


@pytest.mark.parametrize("keep", [0, 0.5])
def test_truncating_the_write_ahead_log_is_detected(paths, keep):
    # Records not yet checkpointed live in audit.db-wal: cutting it loses them.
    wal = paths.state / "audit.db-wal"
    size = wal.stat().st_size
    assert size > 0
    with open(wal, "r+b") as f:
        f.truncate(int(size * keep))
    r = _verify(paths)
    assert not r.ok and r.first_bad is not None and r.first_bad <= N


def test_truncating_the_database_to_nothing_is_detected(paths):
    _checkpoint(paths)
    with open(paths.state / "audit.db", "r+b") as f:
        f.truncate(0)
    r = _verify(paths)
    assert not r.ok and r.first_bad == 1


def test_removing_the_database_is_detected(paths):
    for name in ("audit.db", "audit.db-wal", "audit.db-shm"):
        try:
            (paths.state / name).unlink()
        except FileNotFoundError:
            pass
    r = _verify(paths)
    assert not r.ok and r.first_bad == 1


def _edit_anchor(paths, change):
    """Apply ``change`` to the current slot of the anchor, in place."""
    path = paths.state / "audit.anchor"
    raw = bytearray(path.read_bytes())
    slots = audit_log.unpack_anchor(bytes(raw))
    doc = max(slots, key=lambda d: d["gen"])
    change(doc)
    off = (doc["gen"] % 2) * audit_log.ANCHOR_SLOT
    raw[off:off + audit_log.ANCHOR_SLOT] = audit_log.pack_anchor_slot(doc)
    path.write_bytes(bytes(raw))


def test_a_forged_anchor_signature_is_detected(paths):
    def forge(a):
        a["signed"]["sig"] = "00" + a["signed"]["sig"][2:]
    _edit_anchor(paths, forge)
    r = _verify(paths, sign_head=False)
    assert not r.ok and "signature" in r.reason


def test_replacing_the_host_key_is_caught_by_a_public_key_held_apart(paths, tmp_path):
    # The attacker with root rewrites a record, then makes a new host key
    # and re-seals and re-signs everything: the local check passes, but not
    # the check against the public key the auditor kept.
    kept = tmp_path / "kept.pub"
    kept.write_bytes((paths.state / "audit-key.pub").read_bytes())
    con = _db(paths)
    rows = con.execute("SELECT seq, body FROM records ORDER BY seq").fetchall()
    con.execute("DELETE FROM records")
    con.close()
    for name in ("audit-key", "audit-key.pub", "audit.anchor"):
        (paths.state / name).unlink()
    log = AuditLog(paths)
    import json
    for seq, body in rows:
        doc = json.loads(body)
        if seq == 2:
            doc["data"]["status"] = 0
        log.append(doc["kind"], doc["data"])
    log.close()
    assert _verify(paths).ok  # nothing on the host can tell
    r = _verify(paths, public_key=kept)
    assert not r.ok and "signature" in r.reason


def test_cli_verify_exits_1_with_one_line(paths):
    from click.testing import CliRunner

    from sandbox.cli import cli
    con = _db(paths)
    con.execute("DELETE FROM records WHERE seq=?", (N,))
    con.close()
    res = CliRunner().invoke(cli, ["--root", str(paths.state.parent), "audit", "verify"])
    assert res.exit_code == 1
    from sandbox.errors import CheckFailed
    assert isinstance(res.exception, CheckFailed)
    assert f"record {N}" in res.exception.message
    assert "\n" not in res.exception.message


def test_audit_files_are_private(paths):
    st = paths.state.stat()
    assert st.st_mode & 0o777 == 0o700
    for name in ("audit.db", "audit.anchor", "audit-key", "audit.lock"):
        mode = (paths.state / name).stat().st_mode & 0o777
        assert mode == 0o600, (name, oct(mode))
    for name in os.listdir(paths.state):
        if name.startswith("audit.db-"):
            assert (paths.state / name).stat().st_mode & 0o077 == 0, name


def test_deleting_the_last_record_is_not_hidden_by_the_next_launch(paths):
    con = _db(paths)
    con.execute("DELETE FROM records WHERE seq=?", (N,))
    con.close()
    seq = record_event(paths, "launch", samples.launch("default", "sb-next"))
    assert seq == N + 1           # the gap record took seq N
    r = _verify(paths)
    assert not r.ok and r.first_bad == N
    assert "damaged" in r.reason and f"records {N}..{N}" in r.reason
    recs = list(AuditLog(paths).records())
    assert recs[N - 1].kind == "audit.gap"
    assert recs[N - 1].data["anchor"]["seq"] == N
    _close_all()


@pytest.mark.parametrize("damage", ["remove", "garble", "reseal", "replay"])
def test_a_removed_or_forged_anchor_is_recorded_by_the_next_writer(paths, damage):
    anchor = paths.state / "audit.anchor"
    con = _db(paths)
    con.execute("DELETE FROM records WHERE seq>?", (N - 2,))
    con.close()
    if damage == "remove":
        anchor.unlink()
    elif damage == "garble":
        anchor.write_bytes(b"{not json")
    elif damage == "replay":   # both slots set to one older generation
        raw = anchor.read_bytes()
        half = audit_log.ANCHOR_SLOT
        anchor.write_bytes(raw[:half] + raw[:half])
    else:  # point the anchor at the new head, without the key for its seal
        log = AuditLog(paths)
        head = log.head()
        log.close()

        def repoint(a):
            a["seq"], a["hash"] = head
        _edit_anchor(paths, repoint)
    record_event(paths, "exit", samples.exit_("sb-next"))
    r = _verify(paths)
    assert not r.ok and r.first_bad == N - 1
    _close_all()


def test_the_gap_kind_is_reserved(paths):
    from sandbox.errors import UsageError
    with pytest.raises(UsageError):
        record_event(paths, "audit.gap", {"reason": "forged"})


def test_an_interrupted_write_is_not_mistaken_for_damage(paths):
    anchor = paths.state / "audit.anchor"
    old = anchor.read_bytes()
    record_event(paths, "launch", samples.launch("default", "sb-x"))
    anchor.write_bytes(old)   # as if killed between commit and anchor update
    record_event(paths, "exit", samples.exit_("sb-x"))
    r = _verify(paths)
    assert r.ok, r.message
    assert [x.kind for x in AuditLog(paths).records()][-2:] == ["launch", "exit"]
    _close_all()
