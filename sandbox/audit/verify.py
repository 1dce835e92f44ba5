"""Check an audit log end to end: records, chain, seals, anchor, signature.

Steps, in order; the first failure stops the walk and names the first bad
sequence number (``first_bad``):

1. Read the anchor (before the database: a writer moves the anchor only
   after its commit, so every record the anchor names is visible below).
2. Walk the rows in ``seq`` order. For row ``n`` (expected ``1, 2, ...``):
   a. a row with a larger ``seq`` means record ``n`` is missing;
   b. SHA-256 of the body must equal the stored hash (an edited record);
   c. the body must be a canonical record whose ``seq`` is ``n`` (a
      reordered or renumbered record);
   d. its ``prev`` must equal the hash of record ``n - 1`` (an inserted,
      removed or rebuilt record);
   e. with the private key readable, its seal must match (a record made
      without the host key, even with a rebuilt chain);
   f. it must not be an ``audit.gap`` record: a writer found the database
      no longer ending where the anchor said (records deleted, the anchor
      removed) and recorded that before going on, rather than hide it.
   A database SQLite cannot read past some point (a truncated file) fails at
   the first record it could not read.
3. The anchor: its seal (with the key), then its head. An anchor naming
   ``seq`` beyond the database means records were deleted from the end; a
   different hash at that ``seq`` means the head was rewritten. Sealed
   records past the anchor are accepted and named (a writer stopped between
   its commit and its anchor update).
4. The signature over the signed head, with ``--public-key`` or the host's
   public key. With ``--public-key`` every record must be covered: signed,
   or (on the host) sealed and then signed by this verification (step 5).
5. On success, with the private key at hand, the head is signed, so a copy
   of the log can later be checked offline to its last record.

The result is a `VerifyResult` value; the CLI turns a failure into
`CheckFailed` with `VerifyResult.message` as its one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import _keys
from ._canon import GENESIS, sha256_hex


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of `verify_log`.

    ``records``: rows read; ``head``: last record that checked out (0 when
    none); ``first_bad``: first bad sequence number, or None (for a failure
    not tied to one record, such as a missing anchor); ``reason``: one line;
    ``anchored``/``signed``: sequence numbers the anchor's seal and its
    signature cover; ``key``: fingerprint of the key that checked the
    signature; ``notes``: remarks that are not failures.
    """

    ok: bool
    records: int
    head: int
    first_bad: int | None = None
    reason: str | None = None
    anchored: int | None = None
    signed: int | None = None
    key: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def message(self) -> str:
        if self.ok:
            parts = [f"audit log intact: {self.records} record(s)"]
            if self.signed:
                parts.append(f"signed to seq {self.signed}")
            if self.key:
                parts.append(f"by key {self.key}")
            return ", ".join(parts)
        if self.first_bad is None:
            return f"audit log broken: {self.reason}"
        return f"audit log broken at record {self.first_bad}: {self.reason}"

    def to_dict(self) -> dict:
        return {"ok": self.ok, "records": self.records, "head": self.head,
                "first_bad": self.first_bad, "reason": self.reason,
                "anchored": self.anchored, "signed": self.signed, "key": self.key,
                "notes": list(self.notes)}


class _Unreadable(Exception):
    def __init__(self, seq: int, error: Exception):
        super().__init__(str(error))
        self.seq = seq


def _rows(log):
    """``log.rows()``; when SQLite fails part-way (a truncated or damaged
    file), go on record by record with point lookups, which still reach
    rows on intact pages, and raise `_Unreadable` at the first that fails."""
    import sqlite3
    last = 0
    try:
        for row in log.rows():
            last = row[0]
            yield row
        return
    except sqlite3.DatabaseError as e:
        first_error = e
    seq = last + 1
    while True:
        try:
            con = log._connect(write=False)
            row = con.execute("SELECT seq, hash, mac, body FROM records WHERE seq=?",
                              (seq,)).fetchone()
        except sqlite3.DatabaseError as e:
            raise _Unreadable(seq, e) from None
        if row is None:
            raise _Unreadable(seq, first_error)
        s, h, mac, body = row
        yield s, h, mac, body.encode("utf-8") if isinstance(body, str) else body
        seq += 1


def _fail(n_rows, head, first_bad, reason, **kw) -> VerifyResult:
    return VerifyResult(False, n_rows, head, first_bad, reason, **kw)


def _check_hwm(log, hwm, head: int, hashes: dict, pub_raw, mac_key) -> str | None:
    """Step 3b: the key's high-water mark (`log.HWM_NAME`). None when it
    holds, else the reason. On the host (``mac_key``) a missing mark with
    records present is only a note for logs older than the mark (it is made
    at the next signature); a missing log under a key that has signed is a
    failure."""
    from .log import HWM_NAME, hwm_message
    if hwm is None:
        return None
    if "damaged" in hwm:
        return f"the high-water mark {HWM_NAME} is damaged ({hwm['damaged']})"
    try:
        w_seq, w_hash = int(hwm["seq"]), str(hwm["hash"])
        good = pub_raw is not None and hwm.get("key") == _keys.fingerprint(pub_raw) and \
            _keys.check_signature(pub_raw, hwm_message(hwm), str(hwm["sig"]))
    except (KeyError, TypeError, ValueError):
        good, w_seq, w_hash = False, 0, ""
    if not good and w_seq == 0 and head == 0 and not log.key_path.exists() \
            and not log.public_key_path.exists():
        return None     # a key's creation was interrupted after its mark: nothing signed yet
    if not good:
        return f"the high-water mark {HWM_NAME} is not signed by this host's audit key"
    if w_seq > 0 and head == 0:
        return (f"the audit log is missing: the host key has signed up to record {w_seq} "
                f"({hwm.get('time')}); the log was removed")
    if w_seq > head:
        return (f"the log ends at record {head} but the host key has signed up to record "
                f"{w_seq}: records were removed")
    if w_seq > 0 and hashes.get(w_seq) != w_hash:
        return (f"record {w_seq} is not the one the host key signed: the log was "
                "restarted or rewritten under the same key")
    return None


def _check_witnesses(witnesses, head: int, hashes: dict, pub_raw) -> str | None:
    """Step 3c: each witness (a signed head exported with ``audit anchor
    export``) must be signed by the key and lie on this log."""
    from .log import anchor_message
    for name, doc in witnesses:
        try:
            w_seq, w_hash = int(doc["seq"]), str(doc["hash"])
            good = pub_raw is not None and doc.get("key") == _keys.fingerprint(pub_raw) and \
                _keys.check_signature(pub_raw, anchor_message(doc), str(doc["sig"]))
        except (KeyError, TypeError, ValueError):
            good, w_seq, w_hash = False, 0, ""
        if not good:
            return f"witness {name} is not signed by this log's key"
        if w_seq > head:
            return (f"the log is behind witness {name}: it signed record {w_seq} "
                    f"({doc.get('time')}) but the log ends at record {head}")
        if w_seq > 0 and hashes.get(w_seq) != w_hash:
            return f"the log forks from witness {name} at record {w_seq}"
    return None


def load_witness(path) -> tuple[str, dict]:
    """``(name, dict)`` of a witness file; `NotFound` when unreadable."""
    import json
    from ..errors import NotFound
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise NotFound(f"witness {str(path)!r} cannot be read: {e}",
                       hint="give a file written by 'sandbox audit anchor export'") from None
    return str(path), doc


def verify_log(log, public_key: str | Path | None = None, *,
               sign_head: bool = True, witnesses=()) -> VerifyResult:
    """Verify ``log`` (an `AuditLog`). ``public_key``: a PEM Ed25519 public
    key file held apart from the host; default the one beside the database.
    ``sign_head``: after success, sign the head when the private key is
    readable (step 5). ``witnesses``: ``(name, dict)`` pairs, signed heads
    kept elsewhere (step 3c). Never raises for a damaged log; raises
    `NotFound` when ``public_key`` does not exist or is not an Ed25519 key."""
    import sqlite3

    from ..errors import NotFound
    from .log import GAP_KIND, anchor_message, anchor_seal_ok, canonical_body, parse_body

    explicit = public_key is not None
    pub_raw = None
    if explicit:
        try:
            pub_raw = _keys.public_raw(Path(public_key).read_bytes())
        except (OSError, _keys.KeyError_) as e:
            raise NotFound(f"public key {str(public_key)!r} cannot be used: {e}",
                           hint="give the PEM file 'audit-key.pub' from the host's state folder") from None
    mac_key = _keys.mac_key(log.state)

    # Step 1: the anchor first (and the key's high-water mark).
    hwm = log.read_hwm()
    try:
        anchor = log.read_anchor()
    except (ValueError, UnicodeDecodeError) as e:
        return _fail(0, 0, None, f"the anchor {log.anchor_path} is damaged ({e})")

    # Step 2: the chain.
    hashes: dict[int, str] = {}
    n_rows = 0
    expected = 1
    prev = GENESIS
    try:
        for seq, h, mac, body in _rows(log):
            n_rows += 1
            if seq != expected:  # 2a
                return _fail(n_rows, expected - 1, expected,
                             f"record {expected} is missing (the next one stored is {seq})")
            if sha256_hex(body) != h:  # 2b
                return _fail(n_rows, seq - 1, seq, "its content does not match its hash (edited)")
            try:  # 2c
                doc = parse_body(body)
                canon_ok = canonical_body(doc) == body
            except (ValueError, UnicodeDecodeError, TypeError):
                return _fail(n_rows, seq - 1, seq, "it is not a valid record")
            if not canon_ok:
                return _fail(n_rows, seq - 1, seq, "it is not in canonical form")
            if doc["seq"] != seq:
                return _fail(n_rows, seq - 1, seq,
                             f"it carries sequence number {doc['seq']} (records reordered or renumbered)")
            if doc["prev"] != prev:  # 2d
                return _fail(n_rows, seq - 1, seq,
                             f"it does not follow record {seq - 1} (a record was inserted, "
                             "removed or changed before it)")
            if mac_key is not None and mac != _keys.seal(mac_key, b"record", h.encode()):  # 2e
                return _fail(n_rows, seq - 1, seq,
                             "its seal does not match this host's audit key (forged or inserted)")
            if doc["kind"] == GAP_KIND:
                d = doc["data"] if isinstance(doc["data"], dict) else {}
                return _fail(n_rows, seq - 1, seq,
                             f"a writer found the log damaged before this record: "
                             f"{d.get('reason', '?')}")
            hashes[seq] = h
            prev = h
            expected += 1
    except (_Unreadable, sqlite3.DatabaseError) as e:
        bad = e.seq if isinstance(e, _Unreadable) else expected
        return _fail(n_rows, bad - 1, bad,
                     f"the database cannot be read from here on ({e}; truncated or damaged)")
    head = expected - 1

    # Step 3: the anchor.
    notes: list[str] = []
    if pub_raw is None and (hwm is not None or witnesses):
        try:
            pub_raw = _keys.public_raw(log.public_key_path.read_bytes())
        except (OSError, _keys.KeyError_):
            pub_raw = None
    def beyond_anchor():    # 3b and 3c: what the key and the witnesses know
        if witnesses:
            why = _check_witnesses(witnesses, head, hashes, pub_raw)
            if why:
                return _fail(n_rows, head, None, why)
        if hwm is None and mac_key is not None:
            if head == 0 and not explicit:
                return _fail(n_rows, 0, None, "the audit log is missing, and so is the host "
                             "key's high-water mark (audit-key.hwm): the log was removed")
            if head > 0:
                notes.append("the key has no high-water mark yet (made at the next signature)")
        # the mark is the host's own: checked with the host's public key
        # (a key held apart is for the anchor's signature, step 4)
        host_pub = pub_raw
        if explicit or host_pub is None:
            try:
                host_pub = _keys.public_raw(log.public_key_path.read_bytes())
            except (OSError, _keys.KeyError_):
                host_pub = None
        if host_pub is None and mac_key is not None:
            try:        # the public key file was not written yet (a crash): derive it
                host_pub = _keys.derive_public(_keys.private_seed(log.key_path.read_bytes()))
            except (OSError, _keys.KeyError_, ValueError):
                host_pub = None
        why = _check_hwm(log, hwm, head, hashes, host_pub, mac_key)
        return _fail(n_rows, head, None, why) if why else None

    if anchor is None:
        if head == 0:
            return beyond_anchor() or VerifyResult(True, 0, 0, notes=("the log is empty",))
        return _fail(n_rows, head, None, f"the anchor {log.anchor_path} is missing; "
                     "the end of the log cannot be checked")
    try:
        a_seq, a_hash = int(anchor["seq"]), str(anchor["hash"])
    except (KeyError, TypeError, ValueError):
        return _fail(n_rows, head, None, "the anchor has no valid head")
    if mac_key is not None and not anchor_seal_ok(mac_key, anchor):
        return _fail(n_rows, head, None, "the anchor's seal does not match this host's audit key")
    if a_seq > head:
        missing = f"{head + 1}" if a_seq == head + 1 else f"{head + 1}..{a_seq}"
        return _fail(n_rows, head, head + 1,
                     f"record(s) {missing} are missing: the anchor names seq {a_seq} "
                     f"but the log ends at {head}")
    if a_seq > 0 and hashes.get(a_seq) != a_hash:
        return _fail(n_rows, head, a_seq, "it does not match the hash the anchor holds")
    failed = beyond_anchor()
    if failed is not None:
        return failed
    if a_seq < head:
        notes.append(f"record(s) {a_seq + 1}..{head} were written after the anchor "
                     "(an interrupted write); their seals are valid" if mac_key is not None
                     else f"record(s) {a_seq + 1}..{head} are not covered by the anchor")

    # Step 5 first when we can: sign the head now that the chain checked out,
    # so step 4 covers every record.
    if sign_head and mac_key is not None and head > 0:
        signed0 = anchor.get("signed") if isinstance(anchor.get("signed"), dict) else None
        if not signed0 or signed0.get("seq") != head or a_seq != head:
            try:
                log.sign((head, hashes[head]))
                anchor = log.read_anchor() or anchor
            except (OSError, ValueError) as e:
                notes.append(f"could not sign the head: {e}")

    # Step 4: the signature.
    signed = anchor.get("signed")
    key_fp = None
    s_seq = None
    if not isinstance(signed, dict):
        if explicit and head > 0:
            return _fail(n_rows, head, 1, "no record is covered by a signature "
                         "(run 'sandbox audit verify' on the host to sign the head)")
        if head > 0:
            notes.append("the head has never been signed")
    else:
        if pub_raw is None:
            try:
                pub_raw = _keys.public_raw(log.public_key_path.read_bytes())
            except (OSError, _keys.KeyError_):
                return _fail(n_rows, head, None,
                             f"the public key {log.public_key_path} is missing or damaged")
        key_fp = _keys.fingerprint(pub_raw)
        try:
            s_seq, s_hash = int(signed["seq"]), str(signed["hash"])
            good = (signed.get("key") == key_fp and
                    _keys.check_signature(pub_raw, anchor_message(signed), str(signed["sig"])))
        except (KeyError, TypeError, ValueError):
            good = False
            s_seq = s_hash = None
        if not good:
            return _fail(n_rows, head, None,
                         f"the anchor's signature does not verify with key {key_fp}")
        if s_seq > head:
            return _fail(n_rows, head, head + 1,
                         f"record(s) {head + 1}..{s_seq} are missing: the signed anchor "
                         f"names seq {s_seq}")
        if hashes.get(s_seq) != s_hash:
            return _fail(n_rows, head, s_seq, "it does not match the signed anchor")
        if s_seq < head:
            if explicit and mac_key is None:
                return _fail(n_rows, head, s_seq + 1,
                             f"record(s) {s_seq + 1}..{head} are not covered by the signature "
                             "(run 'sandbox audit verify' on the host to sign the head)")
            notes.append(f"record(s) {s_seq + 1}..{head} are sealed but not yet signed")
    return VerifyResult(True, n_rows, head, None, None, anchored=a_seq, signed=s_seq,
                        key=key_fp, notes=tuple(notes))
