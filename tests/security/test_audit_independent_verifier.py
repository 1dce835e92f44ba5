"""A verifier written from docs/audit-format.md alone agrees with
`sandbox audit verify` (issue 14, deliverable 6): on an exported
1000-record log, and on every tampering case of test_audit_tamper.py
(plus the removed log and the truncation behind a witness).

The auditor's view: the export (JSON Lines), the public key kept apart, a
witness exported before the tampering; on the host also the key file, the
anchor and the key's high-water mark.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import independent_verifier as iv  # noqa: E402

from sandbox.audit import AuditLog, record_event, samples  # noqa: E402
from sandbox.audit import log as audit_log  # noqa: E402
from sandbox.audit._canon import canonical  # noqa: E402
from sandbox.audit.verify import verify_log  # noqa: E402
from sandbox.paths import Paths  # noqa: E402

N = 8


def _close_all():
    for log in list(audit_log._open.values()):
        log.close()
    audit_log._open.clear()


def _export_lines(state: Path) -> list[str]:
    """What `sandbox audit export` writes, read as far as the database lets."""
    log = AuditLog(state)
    out = []
    try:
        for r in log.records():
            out.append(canonical(r.to_dict()).decode())
    except sqlite3.DatabaseError:
        pass
    finally:
        log.close()
    return out


def _both(state: Path, witness, public: Path | None = None, sign_head=False):
    """``(audit verify ok, independent ok, independent reason)``."""
    pub = public or state / "audit-key.pub"
    log = AuditLog(state)
    try:
        ours = verify_log(log, public if public else None, sign_head=sign_head,
                          witnesses=[("w.json", witness)] if witness else [])
    finally:
        log.close()
    _close_all()
    key = state / "audit-key"
    anchor = state / "audit.anchor"
    hwm = state / "audit-key.hwm"
    ok, why = iv.verify(
        _export_lines(state), pub.read_bytes(),
        private_key_file=key.read_bytes() if key.exists() else None,
        anchor=anchor.read_bytes() if anchor.exists() else None,
        hwm=json.loads(hwm.read_bytes()) if hwm.exists() else None,
        witnesses=[("w.json", witness)] if witness else ())
    return ours.ok, ok, why, ours.message


@pytest.fixture
def log8(tmp_path):
    p = Paths.resolve(tmp_path)
    for i in range(1, N // 2 + 1):
        sid = f"sb-{i:04d}"
        record_event(p, "launch", samples.launch("default", sid))
        record_event(p, "exit", samples.exit_(sid))
    _close_all()
    log = AuditLog(p)
    witness = log.witness()           # exported before the tampering, kept elsewhere
    log.close()
    return p.state, witness


def _db(state):
    con = sqlite3.connect(state / "audit.db", isolation_level=None)
    con.execute("DROP TRIGGER IF EXISTS records_no_update")
    con.execute("DROP TRIGGER IF EXISTS records_no_delete")
    return con


# -- the tampering cases of test_audit_tamper.py -------------------------------------

def edit_byte(state, seq=3):
    con = _db(state)
    body = bytearray(con.execute("SELECT body FROM records WHERE seq=?", (seq,)).fetchone()[0])
    i = body.index(b'"sandbox_id":"sb-') + len(b'"sandbox_id":"sb-')
    body[i] ^= 0x01
    con.execute("UPDATE records SET body=? WHERE seq=?", (bytes(body), seq))
    con.close()


def rewrite_with_hash(state):
    import rfc8785
    con = _db(state)
    prev = None
    for seq, body in con.execute("SELECT seq, body FROM records ORDER BY seq").fetchall():
        doc = json.loads(body)
        if seq == 3:
            doc["data"]["command"] = ["/bin/true"]
        if prev is not None and seq > 3:
            doc["prev"] = prev
        new = rfc8785.dumps(doc)
        h = hashlib.sha256(new).hexdigest()
        con.execute("UPDATE records SET body=?, hash=? WHERE seq=?", (new, h, seq))
        prev = h
    con.close()


def swap(state, a=2, b=5):
    con = _db(state)
    ra = con.execute("SELECT hash, mac, body FROM records WHERE seq=?", (a,)).fetchone()
    rb = con.execute("SELECT hash, mac, body FROM records WHERE seq=?", (b,)).fetchone()
    con.execute("UPDATE records SET hash=?, mac=?, body=? WHERE seq=?", (*rb, a))
    con.execute("UPDATE records SET hash=?, mac=?, body=? WHERE seq=?", (*ra, b))
    con.close()


def delete_last(state):
    con = _db(state)
    con.execute("DELETE FROM records WHERE seq=?", (N,))
    con.close()


def delete_last_two_and_anchor(state):
    con = _db(state)
    con.execute("DELETE FROM records WHERE seq>?", (N - 2,))
    con.close()
    (state / "audit.anchor").unlink()


def delete_middle(state, seq=4):
    con = _db(state)
    con.execute("DELETE FROM records WHERE seq=?", (seq,))
    con.close()


def insert_forged(state, after=3):
    import rfc8785
    con = _db(state)
    for seq in range(N, after, -1):
        con.execute("UPDATE records SET seq=? WHERE seq=?", (seq + 1, seq))
    prev = con.execute("SELECT hash FROM records WHERE seq=?", (after,)).fetchone()[0]
    body = rfc8785.dumps({"v": 2, "seq": after + 1, "time": "2026-11-29T00:00:00.000000Z",
                          "kind": "launch", "data": samples.launch("strict", "sb-forged"),
                          "prev": prev})
    con.execute("INSERT INTO records (seq, hash, mac, body) VALUES (?, ?, ?, ?)",
                (after + 1, hashlib.sha256(body).hexdigest(), "00" * 32, body))
    con.close()


def _checkpoint(state):
    con = sqlite3.connect(state / "audit.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def truncate_db_half(state):
    _checkpoint(state)
    db = state / "audit.db"
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size // 2)


def truncate_wal(state):
    wal = state / "audit.db-wal"
    with open(wal, "r+b") as f:
        f.truncate(wal.stat().st_size // 2)


def truncate_db_to_nothing(state):
    _checkpoint(state)
    with open(state / "audit.db", "r+b") as f:
        f.truncate(0)


def remove_db(state):
    for name in ("audit.db", "audit.db-wal", "audit.db-shm"):
        try:
            (state / name).unlink()
        except FileNotFoundError:
            pass


def remove_log_and_anchor(state):           # issue 14: rm -f audit.db* audit.anchor
    remove_db(state)
    (state / "audit.anchor").unlink()


def forge_anchor_signature(state):
    path = state / "audit.anchor"
    raw = bytearray(path.read_bytes())
    doc = max(audit_log.unpack_anchor(bytes(raw)), key=lambda d: d["gen"])
    doc["signed"]["sig"] = "00" + doc["signed"]["sig"][2:]
    off = (doc["gen"] % 2) * audit_log.ANCHOR_SLOT
    raw[off:off + audit_log.ANCHOR_SLOT] = audit_log.pack_anchor_slot(doc)
    path.write_bytes(bytes(raw))


def truncate_everything_behind_the_witness(state):
    # root on the host: deletes the last records and the key's mark, and
    # reseals an anchor at the new end with the host key: nothing local can
    # tell, only the witness held elsewhere
    con = _db(state)
    con.execute("DELETE FROM records WHERE seq>?", (N - 3,))
    h = con.execute("SELECT hash FROM records WHERE seq=?", (N - 3,)).fetchone()[0]
    con.close()
    (state / "audit-key.hwm").unlink()
    key = audit_log._keys.mac_key(state)
    (state / "audit.anchor").write_bytes(
        audit_log.pack_anchor_slot(audit_log.make_anchor(key, N - 3, h, 0, None)) +
        audit_log.pack_anchor_slot(audit_log.make_anchor(key, N - 3, h, 1, None)))


CASES = [edit_byte, rewrite_with_hash, swap, delete_last, delete_last_two_and_anchor,
         delete_middle, insert_forged, truncate_db_half, truncate_wal, truncate_db_to_nothing,
         remove_db, remove_log_and_anchor, forge_anchor_signature]


def test_both_verifiers_pass_the_untouched_log(log8):
    state, witness = log8
    ours, theirs, why, msg = _both(state, witness)
    assert ours and theirs, (msg, why)


@pytest.mark.parametrize("tamper", CASES, ids=lambda f: f.__name__)
def test_the_independent_verifier_detects_what_audit_verify_detects(log8, tamper):
    state, witness = log8
    tamper(state)
    for w in (None, witness):       # with and without the witness
        ours, theirs, why, msg = _both(state, w)
        assert not ours, (tamper.__name__, msg)
        assert not theirs, (tamper.__name__, why)


def test_truncation_with_the_anchor_rebuilt_is_caught_by_the_witness(log8):
    state, witness = log8
    truncate_everything_behind_the_witness(state)
    ours, theirs, why, msg = _both(state, None)
    assert ours, msg                       # without a witness nothing can tell ...
    ours, theirs, why, msg = _both(state, witness)
    assert not ours and "witness w.json" in msg     # ... with one, both can
    assert not theirs and "witness w.json" in why


def _cli(state_root, *args):
    import subprocess
    return subprocess.run([sys.executable, "-m", "sandbox", "--root", str(state_root), *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_removed_log_exits_1_saying_the_log_is_missing(log8):
    state, _ = log8
    for f in state.glob("audit.db*"):
        f.unlink()
    (state / "audit.anchor").unlink()
    r = _cli(state.parent, "audit", "verify")
    assert r.returncode == 1
    assert r.stderr.splitlines()[0].startswith("sandbox: audit log broken: the audit log is missing")
    assert "Traceback" not in r.stderr


def test_cli_truncation_behind_an_exported_witness_exits_1_naming_it(log8, tmp_path):
    state, _ = log8
    w = tmp_path / "witness.json"
    assert _cli(state.parent, "audit", "anchor", "export", "-o", str(w)).returncode == 0
    truncate_everything_behind_the_witness(state)
    assert _cli(state.parent, "audit", "verify").returncode == 0
    r = _cli(state.parent, "audit", "verify", "--witness", str(w))
    assert r.returncode == 1
    assert f"behind witness {w}" in r.stderr.splitlines()[0]


def test_replacing_the_host_key_is_caught_by_both_with_the_key_held_apart(log8, tmp_path):
    state, _ = log8
    kept = tmp_path / "kept.pub"
    kept.write_bytes((state / "audit-key.pub").read_bytes())
    con = _db(state)
    rows = con.execute("SELECT seq, body FROM records ORDER BY seq").fetchall()
    con.execute("DELETE FROM records")
    con.close()
    for name in ("audit-key", "audit-key.pub", "audit.anchor"):
        (state / name).unlink()
    log = AuditLog(state)
    for _seq, body in rows:
        doc = json.loads(body)
        log.append(doc["kind"], doc["data"])
    log.sign()
    log.close()
    ours, theirs, why, msg = _both(state, None, public=kept)
    assert not ours and not theirs, (msg, why)


def test_independent_verifier_agrees_on_an_exported_1000_record_log(tmp_path):
    """1000 records appended through the log API (not 1000 launches), then
    exported with the CLI as an auditor would receive them."""
    import subprocess
    p = Paths.resolve(tmp_path / "root")
    log = AuditLog(p)
    for i in range(500):
        sid = f"sb-{i:05d}"
        log.append("launch", samples.launch("default", sid))
        log.append("exit", samples.exit_(sid))
    log.close()
    sbx = [sys.executable, "-m", "sandbox", "--root", str(tmp_path / "root")]
    out = tmp_path / "export.jsonl"
    w = tmp_path / "w.json"
    for args in (["audit", "export", "-o", str(out)], ["audit", "anchor", "export", "-o", str(w)]):
        r = subprocess.run(sbx + args, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 1000
    witness = json.loads(w.read_text())
    pub = (p.state / "audit-key.pub").read_bytes()
    # off the host: the export, the public key and the witness only
    ok, why = iv.verify(lines, pub, witnesses=[("w.json", witness)])
    assert ok, why
    r = subprocess.run(sbx + ["audit", "verify", "--witness", str(w)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "1000 record(s)" in r.stdout, r.stderr
    # one edited record in the export: the independent verifier names it
    doc = json.loads(lines[499])
    doc["data"]["status"] = 1
    bad = lines[:499] + [json.dumps(doc)] + lines[500:]
    ok, why = iv.verify(bad, pub, witnesses=[("w.json", witness)])
    assert not ok and why.startswith("record 500:")
    # a shortened export: behind the witness
    ok, why = iv.verify(lines[:990], pub, witnesses=[("w.json", witness)])
    assert not ok and "behind witness" in why


def test_a_log_restarted_under_the_same_key_fails_verify(log8):
    # rm -f audit.db* audit.anchor, then a new launch starts a fresh chain:
    # the key's high-water mark knows it had signed further
    state, witness = log8
    remove_log_and_anchor(state)
    record_event(Paths.resolve(state.parent), "launch", samples.launch("default", "sb-new"))
    _close_all()
    ours, theirs, why, msg = _both(state, None)
    assert not ours and "the audit key had signed up to record" in msg
    assert not theirs and "gap" in why
    ours, theirs, why, msg = _both(state, witness)
    assert not ours and not theirs
