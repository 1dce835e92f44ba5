"""The append-only, hash-chained audit log (DESIGN §6).

Files, all in the state folder (mode 0700; the files 0600):

==================  ==========================================================
``audit.db``        SQLite (WAL, ``synchronous=NORMAL``): table ``records``
``audit.anchor``    the chain head, sealed and signed (two alternating slots)
``audit.lock``      ``flock`` serialising writers (and anchor updates)
``audit-key[.pub]`` the host Ed25519 key pair (`sandbox.audit._keys`)
==================  ==========================================================

**Record.** One row per event: ``seq`` (1, 2, ...), ``hash``, ``mac``,
``body``. ``body`` is canonical JSON (`sandbox.audit._canon`) of
``{"v": 1, "seq", "time", "kind", "data", "prev"}``, where ``prev`` is the
``hash`` of record ``seq - 1`` (64 zeros for the first) and ``hash`` is
SHA-256 of ``body``. So the hash covers the sequence number, the time, the
kind, the data and the previous record. ``mac`` is a keyed BLAKE2b seal of
``hash`` under the host key: a record someone inserted without the key is
caught even where the chain around it was rebuilt. Triggers refuse UPDATE
and DELETE, so the log is append-only by design (a tamperer can drop them;
`sandbox.audit.verify` is what detects tampering).

**Anchor.** After every append, still holding the lock, the writer updates
``audit.anchor`` with the head ``(seq, hash)`` and its seal (two slots
written alternately in place, see `ANCHOR_SLOT`). Deleting the last record(s) leaves the database
shorter than the anchor: that is how truncation is detected.

**Writers do not paper over damage.** Before appending, the writer checks
(under the lock, at no cost in the normal case) that the database still ends
where the anchor says. If records were deleted from the end, the anchor was
removed or forged, or a power loss undid commits, it first appends an
``audit.gap`` record saying so; `verify` fails at that record from then on.
Without this, deleting the last record and waiting for the next launch would
hide the deletion.

**Where signing happens, and why.** The anchor also carries an Ed25519
signature over a head, checkable with only the public key
(``audit verify --public-key``). Importing `cryptography` costs about
13 ms, far above the launch path's 2 ms budget, so ``launch``, ``exit`` and
``insecure-option`` records (`HOT_KINDS`) are only sealed (microseconds,
BLAKE2b), and the signature is brought up to the head:

1. at once, for every other kind (trust and image changes, refusals: rare,
   and never waiting on a payload);
2. in batches on the hot path: when the signed head lags the real head by
   `SIGN_EVERY` records or is older than `SIGN_AFTER` seconds (one append
   in 32 pays ~15 ms; the median pays nothing). The sealed anchor is
   written first and the signature after, so a writer killed while signing
   leaves the anchor current;
3. after every fully successful local `verify`, and on ``audit export``
   and `AuditLog.sign` (a log shipped off the host is signed to its head).

Between signatures the head is still protected locally by the seal: it
cannot be moved without the private key.

**Crash safety.** A record is one SQLite transaction (``BEGIN IMMEDIATE``
... ``COMMIT``): a writer killed at any point leaves it either absent or
whole. The anchor is written only after the commit; a writer killed between
the two leaves a committed, sealed record just past the anchor, which
`verify` accepts and names (``records N..M were written after the anchor``)
and the next append covers. With ``synchronous=NORMAL`` a power loss may
lose the last commits; the anchor may then name records that are gone, and
`verify` fails (it never accepts a log it cannot vouch for).

**Cost.** SQLite's default checkpoint-on-close would cost each
``sandbox run`` process about 20 ms of fsyncs; it is switched off
(`_no_checkpoint_on_close`) and checkpoints run every `WAL_AUTOCHECKPOINT`
pages instead. The anchor is written in place, not renamed (`ANCHOR_SLOT`).
`prepare` opens the log ahead of the first record. ``benchmarks/
audit_cost.py`` measures it all.

**Concurrency.** Writers take ``audit.lock`` with ``flock(LOCK_EX)`` and then
``BEGIN IMMEDIATE``; the lock also orders the anchor updates. Readers hold
the lock shared only while reading the anchor, which they read first, then
the database, so the anchor they
hold never names a record they cannot see.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple
from collections.abc import Iterable, Iterator

from . import _keys
from ._canon import GENESIS, canonical, sha256_hex, utc_now

DB_NAME = "audit.db"
ANCHOR_NAME = "audit.anchor"
LOCK_NAME = "audit.lock"

#: Kinds the rest of the toolkit records. Others are accepted if they match
#: ``[a-z][a-z0-9.-]*`` (for future events).
KINDS = ("launch", "exit", "refusal", "trust.add", "trust.remove",
         "image.import", "image.remove", "insecure-option")
#: Written by the log itself when a writer finds the database no longer
#: ending where the anchor says (see `AuditLog._find_gap`).
GAP_KIND = "audit.gap"
#: Written by the log itself when a new host key replaced another.
KEY_KIND = "audit.key"
#: Kinds written on the launch path: sealed at once, signed in batches.
HOT_KINDS = frozenset({"launch", "exit", "insecure-option"})
#: Sign on the hot path when the signature lags by this many records ...
SIGN_EVERY = 32
#: ... or is older than this many seconds.
SIGN_AFTER = 600

#: Version 2 bodies are RFC 8785 (JCS) canonical JSON; version 1 bodies
#: (older logs, and values outside JCS's integer range) are `canonical`.
RECORD_VERSION = 2
ANCHOR_VERSION = 1
#: Seconds a writer waits for ``audit.lock`` (and SQLite for its own lock)
#: before giving up: a launch whose record cannot be written in this time
#: is refused (issue 14), never run unrecorded.
LOCK_WAIT = 10.0
try:        # tests shorten it; a caller can only make refusals sooner, never skip a record
    LOCK_WAIT = min(max(float(os.environ["SANDBOX_AUDIT_LOCK_WAIT"]), 0.1), 300.0)
except (KeyError, ValueError):
    pass
#: The signed high-water mark beside the key: how far the key has signed.
HWM_NAME = "audit-key.hwm"
HWM_DOMAIN = b"sandbox audit high-water v1\n"
#: Folder of records a writer could not append (an exit after a transient
#: failure); the next writer appends each as an ``audit.gap`` record.
LOST_NAME = "audit.lost"
SIGN_DOMAIN = b"sandbox audit anchor v1\n"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records ("
    " seq INTEGER PRIMARY KEY,"
    " hash TEXT NOT NULL,"
    " mac TEXT,"
    " body BLOB NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records"
    " BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records"
    " BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END",
)


#: WAL pages after which a commit checkpoints (SQLite's default is 1000).
#: Smaller keeps the WAL that each new process must scan on open short.
WAL_AUTOCHECKPOINT = 256
_SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE = 1006


def _no_checkpoint_on_close(con, path: Path) -> bool:
    """Ask SQLite not to checkpoint (and delete) the WAL when this, the last,
    connection closes. Why: every ``sandbox run`` is a new process with one
    connection; by default its exit checkpoints with two fsyncs and deletes
    the WAL, and the next process's first commit syncs a new WAL header:
    about 20 ms per launch on a VM disk, ten times the budget. Without it,
    a commit costs ~0.1 ms and checkpoints happen every
    `WAL_AUTOCHECKPOINT` pages inside some commit (amortised). Durability
    is unchanged (``synchronous=NORMAL``, WAL never corrupted by a crash).

    Python 3.12+ has ``Connection.setconfig``. On CPython 3.11 the option is
    set through ctypes on the connection's ``sqlite3*`` (the first field
    after ``PyObject_HEAD`` of ``pysqlite_Connection`` in 3.11), checked by
    asking SQLite for the database file name first. Anything unexpected:
    leave SQLite's default. Returns True when the option is set."""
    import sys
    setconfig = getattr(con, "setconfig", None)
    if setconfig is not None:
        try:
            setconfig(_SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, True)
            return True
        except Exception:
            return False
    if (sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11)
            or hasattr(sys, "gettotalrefcount")):
        return False
    try:
        import ctypes
        import sqlite3
        lib = ctypes.CDLL("libsqlite3.so.0")   # the copy _sqlite3 already loaded
        lib.sqlite3_libversion.restype = ctypes.c_char_p
        if lib.sqlite3_libversion().decode() != sqlite3.sqlite_version:
            return False
        handle = ctypes.c_void_p.from_address(id(con) + ctypes.sizeof(ctypes.c_void_p) * 2).value
        if not handle:
            return False
        lib.sqlite3_db_filename.restype = ctypes.c_char_p
        lib.sqlite3_db_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        name = lib.sqlite3_db_filename(handle, b"main")
        if name is None or os.path.realpath(name.decode()) != os.path.realpath(path):
            return False
        out = ctypes.c_int(-1)
        rc = lib.sqlite3_db_config(ctypes.c_void_p(handle),
                                   ctypes.c_int(_SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE),
                                   ctypes.c_int(1), ctypes.byref(out))
        return rc == 0 and out.value == 1
    except (OSError, AttributeError, ValueError):
        return False


#: The anchor file holds two slots of this many bytes. Each update writes
#: the *other* slot in place (``pwrite``), with a generation one higher;
#: readers take the higher generation. Why not a temporary file and
#: ``rename``: on ext4 a rename must join the file system journal, and
#: behind other processes' fsyncs it waits milliseconds (9% of updates over
#: 2 ms, measured under load), while an in-place write of an allocated block
#: costs microseconds. A slot write is one ``pwrite`` within one page: a
#: killed writer cannot leave it half done, and the slot it did not touch
#: still holds the previous head.
ANCHOR_SLOT = 2048


class _Expired(Exception):
    pass


def _on_alarm(_signum, _frame):
    raise _Expired


def _flock_within(fd: int, timeout: float) -> bool:
    """``flock(LOCK_EX)`` on ``fd``, giving up after ``timeout`` seconds.

    Where it can (the main thread, SIGALRM unused), a blocking ``flock``
    under a one-shot ``ITIMER_REAL``: the kernel hands the lock to waiters
    as it is released, so 50 concurrent writers all get their turn. (Polling
    with ``LOCK_NB`` starves: a sleeping poller misses every release.)
    Elsewhere it polls every few milliseconds."""
    import fcntl
    import signal
    import threading
    import time
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)
            and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)):
        got = False
        old = signal.signal(signal.SIGALRM, _on_alarm)
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, timeout)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    got = True
                except _Expired:
                    pass
                signal.setitimer(signal.ITIMER_REAL, 0)
            except _Expired:        # fired just after the lock was won: keep it
                signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            signal.signal(signal.SIGALRM, old)
        return got
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.002)
    return False


def make_anchor(key: bytes, seq: int, h: str, gen: int, signed) -> dict:
    """One anchor slot: the head ``(seq, hash)``, its generation, its seal
    (keyed BLAKE2b over seq, hash and generation) and the signed head."""
    return {"v": ANCHOR_VERSION, "seq": seq, "hash": h, "gen": gen, "time": utc_now(),
            "seal": _keys.seal(key, b"anchor", canonical({"seq": seq, "hash": h, "gen": gen})),
            "signed": signed}


def anchor_seal_ok(key: bytes, doc: dict) -> bool:
    """True when the slot ``doc`` carries a valid seal under ``key``."""
    try:
        msg = canonical({"seq": int(doc["seq"]), "hash": str(doc["hash"]),
                         "gen": int(doc["gen"])})
    except (KeyError, TypeError, ValueError):
        return False
    return doc.get("seal") == _keys.seal(key, b"anchor", msg)


def pack_anchor_slot(doc: dict) -> bytes:
    data = canonical(doc) + b"\n"
    if len(data) > ANCHOR_SLOT:
        raise ValueError("anchor slot overflow")
    return data.ljust(ANCHOR_SLOT, b" ")


def unpack_anchor(raw: bytes) -> list[dict]:
    """The two slots of an anchor file; ``ValueError`` when damaged."""
    import json
    if len(raw) != 2 * ANCHOR_SLOT:
        raise ValueError(f"the anchor has {len(raw)} bytes, not {2 * ANCHOR_SLOT}")
    slots = []
    for i in (0, 1):
        doc = json.loads(raw[i * ANCHOR_SLOT:(i + 1) * ANCHOR_SLOT].decode("utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("gen"), int) \
                or doc["gen"] % 2 != i:
            raise ValueError(f"anchor slot {i} is not valid")
        slots.append(doc)
    if abs(slots[0]["gen"] - slots[1]["gen"]) != 1:
        raise ValueError("the anchor slots are out of step")
    return slots


class Record(NamedTuple):
    """One audit record as read back. ``time`` is ISO 8601 UTC
    (``2026-11-29T08:18:09.123456Z``); ``prev`` and ``hash`` are hex SHA-256."""

    seq: int
    time: str
    kind: str
    data: dict
    prev: str
    hash: str
    v: int = 1                       # the body's version (issue 14: 2 is RFC 8785)
    mac: str | None = None           # the record's seal, as stored

    @property
    def sandbox_id(self) -> str | None:
        v = self.data.get("sandbox_id") if isinstance(self.data, dict) else None
        return v if isinstance(v, str) else None

    def to_dict(self) -> dict:
        """The export form (docs/audit-format.md): the body's fields, then
        ``hash`` and ``mac``."""
        return {"v": self.v, "seq": self.seq, "time": self.time, "kind": self.kind,
                "data": self.data, "prev": self.prev, "hash": self.hash, "mac": self.mac}


def _check_kind(kind: str) -> None:
    ok = bool(kind) and kind[0].isascii() and kind[0].islower() and all(
        c.isascii() and (c.islower() or c.isdigit() or c in ".-") for c in kind)
    if not ok or kind == GAP_KIND:
        from ..errors import UsageError
        raise UsageError(f"audit event kind {kind!r} is not valid"
                         + (" (reserved for the log itself)" if ok else ""),
                         hint="use lower-case letters, digits, '.' and '-', e.g. 'launch'")


def anchor_message(signed: dict) -> bytes:
    """The bytes an anchor signature covers: a domain line, then canonical
    ``{"seq", "hash", "time", "unix", "key"}``."""
    return SIGN_DOMAIN + canonical({k: signed[k] for k in
                                    ("seq", "hash", "time", "unix", "key")})


def hwm_message(doc: dict) -> bytes:
    """The bytes a high-water mark signature covers: a domain line, then
    canonical ``{"seq", "hash", "time", "key"}``."""
    return HWM_DOMAIN + canonical({k: doc[k] for k in ("seq", "hash", "time", "key")})


def parse_body(body: bytes) -> dict:
    """A record body as a dict; ``ValueError`` if it is not a valid record."""
    import json
    doc = json.loads(body.decode("utf-8"))
    if not isinstance(doc, dict) or set(doc) != {"v", "seq", "time", "kind", "data", "prev"} \
            or doc["v"] not in (1, 2):
        raise ValueError("not an audit record")
    return doc


def canonical_body(doc: dict) -> bytes:
    """The canonical bytes of a parsed record body, by its version: RFC 8785
    (JCS) for version 2, `canonical` for version 1."""
    if doc.get("v") == 2:
        if _jcs_as_json(doc):
            return canonical(doc)
        import rfc8785
        return rfc8785.dumps(doc)
    return canonical(doc)


_SAFE_INT = 2 ** 53 - 1


def _jcs_as_json(value) -> bool:
    """True when `canonical` (Python's sorted, compact JSON) gives exactly
    the RFC 8785 bytes of ``value``: no floats (their text differs:
    ``100.0``/``100``, ``1e-07``/``1e-7``), integers within JCS's range,
    keys in ASCII (JCS sorts by UTF-16 units, Python by code points; the
    same for ASCII). String escapes are the same in both (``\\n``,
    ``\\u001f``, ``\\"``, non-ASCII as UTF-8)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and k.isascii() and _jcs_as_json(v)
                   for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_jcs_as_json(v) for v in value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return -_SAFE_INT <= value <= _SAFE_INT
    return False


def build_body(seq: int, time: str, kind: str, data: dict, prev: str) -> bytes:
    """A new record's body: version 2 (RFC 8785) when the data fits JCS's
    value domain (integers within +-2**53-1, finite floats), else version 1.

    Cost: a launch record has no float, so its JCS bytes are the standard
    library's sorted compact JSON (`_jcs_as_json` checks, ~20 us); the pure
    Python canonicalizer (~1 ms for a launch record) runs only for records
    with floats (an exit's duration: small)."""
    import json
    plain = json.loads(canonical(data))       # paths, sets, bytes as JSON values
    doc = {"v": RECORD_VERSION, "seq": seq, "time": time, "kind": kind, "data": plain,
           "prev": prev}
    if _jcs_as_json(doc):
        return canonical(doc)
    import rfc8785
    try:
        body = rfc8785.dumps(doc)
        # a verifier re-canonicalizes the *parsed* body: a float such as
        # 2**53 is written as an integer JCS then refuses; keep those v1
        if rfc8785.dumps(json.loads(body)) == body:
            return body
    except (rfc8785.CanonicalizationError, ValueError, TypeError):
        pass
    doc["v"] = 1
    return canonical(doc)


class AuditLog:
    """The audit log in one state folder.

    ``AuditLog(paths)`` (a `sandbox.paths.Paths`, or the state folder as a
    path) opens nothing: files are made by the first `append`. Not for use
    across ``fork``: a child gets a fresh connection on first use.
    """

    def __init__(self, paths) -> None:
        state = getattr(paths, "state", paths)
        self.state = Path(state)
        self.db_path = self.state / DB_NAME
        self.anchor_path = self.state / ANCHOR_NAME
        self.lock_path = self.state / LOCK_NAME
        self.key_path = self.state / _keys.KEY_NAME
        self.public_key_path = self.state / _keys.PUB_NAME
        self.hwm_path = self.state / HWM_NAME
        self.lost_path = self.state / LOST_NAME
        self._con = None
        self._pid = None
        self._ready = False
        self._key_event = None

    # -- connections -----------------------------------------------------

    def _connect(self, *, write: bool):
        if self._con is not None:
            if self._pid == os.getpid():
                return self._con
            _inherited.append(self._con)  # a parent's: never use nor close it
            self._con = None
        import sqlite3
        if write:
            fd = os.open(self.db_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.close(fd)
        elif not self.db_path.exists():
            return None
        try:
            con = sqlite3.connect(self.db_path, isolation_level=None, timeout=LOCK_WAIT,
                                  check_same_thread=False)
        except sqlite3.OperationalError:
            if write:
                raise
            con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True,
                                  isolation_level=None, timeout=60,
                                  check_same_thread=False)
        con.execute("PRAGMA synchronous=NORMAL")
        if write:
            con.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
        # Readers too (issue 14): a reader that is the last to close would
        # checkpoint and delete the WAL and its index, which the next
        # writer must then make again: on a full disk, a half-made WAL that
        # no reader can open ("disk I/O error") though no record was lost.
        _no_checkpoint_on_close(con, self.db_path)
        self._con, self._pid, self._ready = con, os.getpid(), False
        return con

    def close(self) -> None:
        """Close the database connection (checkpoints the WAL when last).
        In a forked child, a connection of the parent is left alone."""
        if self._con is not None:
            if self._pid == os.getpid():
                self._con.close()
            else:
                _inherited.append(self._con)
        self._con = None
        self._pid = None
        self._ready = False

    def _lock(self) -> int:
        """Take ``audit.lock`` exclusively, waiting at most `LOCK_WAIT`
        seconds (a writer stuck behind a held lock must give up, so the
        launch it records is refused instead of hanging or running
        unrecorded). Raises ``TimeoutError`` then."""
        import errno
        import fcntl
        if not self._ready:
            self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)     # the normal case
                return fd
            except BlockingIOError:
                pass
            if _flock_within(fd, LOCK_WAIT):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        raise TimeoutError(errno.ETIMEDOUT, f"the audit log is locked by another process "
                           f"(waited {LOCK_WAIT:g} s)", str(self.lock_path))

    def _prepare(self):
        """State folder, key pair, database schema; once per connection."""
        if self._ready and self._pid == os.getpid():
            return self._con
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        _tighten_state(self.state)
        # A new key starts at the genesis: from now on the key knows how far
        # it has signed, so a removed or restarted log is caught. The mark
        # is written before the key file appears (a crash between the two
        # leaves no key without its mark). A key that replaces another is
        # itself recorded (``audit.key``) by the next append, naming how far
        # the old one had signed.
        old = self.read_hwm() if not self.key_path.exists() else None
        if _keys.ensure_key(self.state, before_link=lambda seed: self._write_hwm(
                {"seq": 0, "hash": GENESIS, "time": utc_now()}, seed)):
            if old is not None and (old.get("seq") != 0 or self.db_path.exists()):
                self._key_event = {"reason": "a new host audit key was made",
                                   "key": (self.read_hwm() or {}).get("key"),
                                   "previous": {k: old.get(k) for k in
                                                ("key", "seq", "hash", "time", "damaged")
                                                if k in old}}
        con = self._connect(write=True)
        if con.execute("PRAGMA user_version").fetchone()[0] < 1:
            # WAL must be set outside a transaction; it persists in the file.
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _SCHEMA:
                    con.execute(stmt)
                con.execute("PRAGMA user_version=1")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            # An anchor from the start (seq 0): a crash during the very first
            # append then leaves a sealed record past it, not a log without
            # an anchor (which is what deleting the anchor looks like).
            key = _keys.mac_key(self.state)
            hwm = self.read_hwm()
            fresh = isinstance(hwm, dict) and hwm.get("seq") == 0
            # ... but only under a key that has signed nothing yet: a log
            # made afresh under a key that has signed records is a removed
            # log, which the first append records as a gap (`_find_gap`).
            if key is not None and fresh and not self.anchor_path.exists():
                self._create_anchor(key, 0, GENESIS, None)
        self._ready = True
        return con

    # -- writing ---------------------------------------------------------

    def append(self, kind: str, data: dict, *, sign: bool | None = None) -> int:
        """Append one event; return its sequence number.

        ``data`` must be JSON-able (paths and sets are converted). ``sign``:
        True signs the new head with Ed25519 now, False never, None follows
        the policy in the module docstring. Raises `UsageError` for a bad
        kind or data, `SetupError` (step ``audit record``) when the log
        cannot be written.
        """
        _check_kind(kind)
        if not isinstance(data, dict):
            from ..errors import UsageError
            raise UsageError(f"audit data for {kind!r} must be a dict, not {type(data).__name__}")
        try:
            canonical(data)
        except (TypeError, ValueError) as e:
            from ..errors import UsageError
            raise UsageError(f"audit data for {kind!r} is not JSON: {e}") from None
        try:
            return self._append(kind, data, sign)
        except OSError as e:
            from ..errors import SetupError
            raise SetupError(f"cannot write the audit log {self.db_path}: {e.strerror or e}",
                             step="audit record", errno=e.errno,
                             hint="check that the state folder is writable by this user") from e
        except Exception as e:
            import sqlite3
            if isinstance(e, sqlite3.Error):
                from ..errors import SetupError
                raise SetupError(f"cannot write the audit log {self.db_path}: {e}",
                                 step="audit record",
                                 hint="run 'sandbox audit verify' to check the log") from e
            raise

    def _append(self, kind: str, data: dict, sign: bool | None) -> int:
        lock = self._lock()
        try:
            con = self._prepare()
            key = _keys.mac_key(self.state)
            if key is None:
                raise PermissionError(13, "the audit key is not readable", str(self.key_path))
            try:
                anchor, anchor_err = self.read_anchor(locked=True), None
            except (ValueError, UnicodeDecodeError) as e:
                anchor, anchor_err = None, f"the anchor is not readable ({e})"
            con.execute("BEGIN IMMEDIATE")
            try:
                head = con.execute(
                    "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
                gap = self._find_gap(con, key, head, anchor, anchor_err,
                                     self.read_hwm() if anchor is None else None)
                if gap is not None:
                    head = self._insert(con, key, head, "audit.gap", gap)
                if self._key_event is not None:
                    head = self._insert(con, key, head, KEY_KIND, self._key_event)
                lost = self._lost_records()
                for _name, doc in lost:     # records an earlier writer could not append
                    head = self._insert(con, key, head, "audit.gap", doc)
                    gap = gap or doc
                seq, h = self._insert(con, key, head, kind, data)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            self._key_event = None
            for name, _doc in lost:
                try:
                    os.unlink(self.lost_path / name)
                except OSError:
                    pass
            # The record is committed; move the anchor at once (still locked)
            # so the window in which a crash leaves it behind stays tiny ...
            signed = anchor.get("signed") if anchor and gap is None else None
            self._write_anchor(key, seq, h, signed)
            # ... then, when due, sign (slow: imports cryptography) and
            # rewrite it with the signature.
            if sign is None:
                sign = gap is not None or self._sign_due(kind, seq, signed)
            if sign:
                self._write_anchor(key, seq, h, self._make_signature(seq, h))
            return seq
        finally:
            os.close(lock)

    def _lost_records(self) -> list[tuple[str, dict]]:
        """``audit.gap`` data for each record a writer could not append
        (`save_lost`); one failed ``scandir`` in the normal case."""
        try:
            names = sorted(e.name for e in os.scandir(self.lost_path)
                           if e.name.endswith(".json"))
        except OSError:
            return []
        import json
        out = []
        for name in names:
            try:
                lost = json.loads((self.lost_path / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                lost = {"unreadable": name}
            out.append((name, {"reason": "a record could not be written at the time "
                                         f"({lost.get('error', '?') if isinstance(lost, dict) else '?'}); "
                                         "it is kept here as 'lost'",
                               "lost": lost}))
        return out

    def save_lost(self, kind: str, data: dict, error: str) -> Path | None:
        """Keep a record that could not be appended (after retries) for the
        next writer, which appends it inside an ``audit.gap`` record so
        `verify` reports what was lost. Returns the file, or None when even
        that cannot be written (then only the caller's warning remains)."""
        try:
            self.lost_path.mkdir(mode=0o700, exist_ok=True)
            p = self.lost_path / f"{utc_now()}-{os.getpid()}-{kind}.json"
            tmp = p.with_name("." + p.name)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, canonical({"kind": kind, "data": data, "time": utc_now(),
                                        "error": error}))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, p)
            return p
        except OSError:
            return None

    @staticmethod
    def _insert(con, key: bytes, head, kind: str, data: dict) -> tuple[int, str]:
        seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
        body = build_body(seq, utc_now(), kind, data, prev)
        h = sha256_hex(body)
        con.execute("INSERT INTO records (seq, hash, mac, body) VALUES (?, ?, ?, ?)",
                    (seq, h, _keys.seal(key, b"record", h.encode()), body))
        return seq, h

    @staticmethod
    def _find_gap(con, key: bytes, head, anchor, anchor_err, hwm=None) -> dict | None:
        """Before appending: does the database still end where the anchor
        says? If not (records deleted or changed, the anchor removed, or a
        power loss undid commits) the writer must not quietly extend the
        log, which would hide the damage: it first appends an
        ``audit.gap`` record describing it, which `verify` reports.
        Costs nothing in the normal case (anchor == head)."""
        h_seq, h_hash = head if head else (0, GENESIS)
        if anchor_err:
            reason = anchor_err
        elif anchor is None:
            hw = hwm.get("seq") if isinstance(hwm, dict) else None
            if head is None and hw == 0:
                return None          # a new log under a new key
            if head is None and isinstance(hw, int) and hw > 0:
                reason = (f"the log is missing: the audit key had signed up to record {hw} "
                          "(the log was removed or restarted under the same key)")
            elif head is None:
                reason = "the log is missing and so is the key's high-water mark " + HWM_NAME
            else:
                reason = "the anchor is missing"
        else:
            try:
                a_seq, a_hash = int(anchor["seq"]), str(anchor["hash"])
            except (KeyError, TypeError, ValueError):
                a_seq, a_hash = -1, ""
            if a_seq < 0 or not anchor_seal_ok(key, anchor):
                reason = "the anchor's seal does not match the audit key"
            elif a_seq == h_seq and a_hash == h_hash:
                return None          # the normal case
            elif a_seq > h_seq:
                reason = f"records {h_seq + 1}..{a_seq} named by the anchor are missing"
            else:
                row = con.execute("SELECT hash FROM records WHERE seq=?", (a_seq,)).fetchone()
                if a_seq > 0 and (row is None or row[0] != a_hash):
                    reason = f"record {a_seq} no longer matches the anchor"
                else:
                    # Records past the anchor: a writer stopped between its
                    # commit and its anchor update. Fine if they are sealed.
                    bad = [s for s, h, m in con.execute(
                        "SELECT seq, hash, mac FROM records WHERE seq > ?", (a_seq,))
                        if m != _keys.seal(key, b"record", h.encode())]
                    if not bad:
                        return None
                    reason = f"record {bad[0]} past the anchor is not sealed"
        return {"reason": reason,
                "anchor": ({"seq": anchor.get("seq"), "hash": anchor.get("hash")}
                           if isinstance(anchor, dict) else None),
                "head": {"seq": h_seq, "hash": h_hash}}

    @staticmethod
    def _sign_due(kind: str, seq: int, signed) -> bool:
        if kind not in HOT_KINDS or not isinstance(signed, dict):
            return True
        import time
        try:
            return (seq - int(signed["seq"]) >= SIGN_EVERY
                    or time.time() - float(signed["unix"]) >= SIGN_AFTER)
        except (KeyError, TypeError, ValueError):
            return True

    def _make_signature(self, seq: int, h: str) -> dict:
        import time
        t = time.time()
        signed = {"seq": seq, "hash": h, "time": utc_now(), "unix": int(t), "key": ""}
        # The key fingerprint is part of the signed message, so compute it first.
        from ._keys import derive_public, fingerprint, private_seed
        seed = private_seed(self.key_path.read_bytes())
        signed["key"] = fingerprint(derive_public(seed))
        sig, _ = _keys.sign(self.state, anchor_message(signed))
        signed["sig"] = sig
        self._write_hwm(signed)
        return signed

    def _write_hwm(self, signed: dict, seed: bytes | None = None) -> None:
        """Record beside the key how far it has signed (`HWM_NAME`): the
        head ``(seq, hash)`` and time, Ed25519-signed. Only moves forward
        in the normal case; atomic (temporary file, then rename)."""
        from ._keys import derive_public, fingerprint, private_seed
        if seed is None:
            seed = private_seed(self.key_path.read_bytes())
        doc = {"v": 1, "seq": int(signed["seq"]), "hash": str(signed["hash"]),
               "time": str(signed["time"]), "key": fingerprint(derive_public(seed))}
        doc["sig"], _ = _keys.sign(self.state, hwm_message(doc), seed)
        tmp = self.hwm_path.with_name(f".{HWM_NAME}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, canonical(doc) + b"\n")
        finally:
            os.close(fd)
        os.replace(tmp, self.hwm_path)

    def read_hwm(self) -> dict | None:
        """The high-water mark as a dict, None when absent; a damaged file
        reads as ``{"damaged": reason}``."""
        import json
        try:
            doc = json.loads(self.hwm_path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            return {"damaged": str(e)}
        return doc if isinstance(doc, dict) else {"damaged": "not a JSON object"}

    def witness(self) -> dict:
        """The signed head to ship off the host (``audit anchor export``):
        the anchor's signed block (seq, hash, time, unix, key, sig) plus the
        host name. Signs the head first when it is not yet signed."""
        import socket
        self.sign()
        anchor = self.read_anchor() or {}
        signed = anchor.get("signed")
        if not isinstance(signed, dict):
            from ..errors import NotFound
            raise NotFound("the audit log has no signed head yet",
                           hint="record something first, then run 'sandbox audit verify'")
        return {"v": 1, "kind": "sandbox-audit-witness", "host": socket.gethostname(),
                **{k: signed[k] for k in ("seq", "hash", "time", "unix", "key", "sig")}}

    def _write_anchor(self, key: bytes, seq: int, h: str, signed) -> None:
        """Write the anchor's next slot in place (see `ANCHOR_SLOT`). Only
        the lock holder writes. A missing or damaged file (the writer has
        already recorded that as a gap) is replaced whole."""
        fd = None
        try:
            fd = os.open(self.anchor_path, os.O_RDWR | os.O_CLOEXEC)
            slots = unpack_anchor(os.pread(fd, 2 * ANCHOR_SLOT + 1, 0))
            gen = max(d["gen"] for d in slots) + 1
        except (OSError, ValueError):
            if fd is not None:
                os.close(fd)
            fd = None
        if fd is None:
            self._create_anchor(key, seq, h, signed)
            return
        try:
            doc = make_anchor(key, seq, h, gen, signed)
            os.pwrite(fd, pack_anchor_slot(doc), (gen % 2) * ANCHOR_SLOT)
        finally:
            os.close(fd)

    def _create_anchor(self, key: bytes, seq: int, h: str, signed) -> None:
        # Both slots hold the same head (generations 0 and 1); the file is
        # made beside and renamed into place, so it appears whole.
        data = (pack_anchor_slot(make_anchor(key, seq, h, 0, signed)) +
                pack_anchor_slot(make_anchor(key, seq, h, 1, signed)))
        tmp = self.anchor_path.with_name(ANCHOR_NAME + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, self.anchor_path)

    def sign(self, upto: tuple[int, str] | None = None) -> int:
        """Sign a head with the host Ed25519 key and rewrite the anchor;
        return the signed sequence number (0 for an empty log).

        ``upto``: the ``(seq, hash)`` to sign, as `verify` checked it; it
        must be in the database. Default: the current head, unchecked.
        The anchor's own head always moves to the database's last record.
        """
        if not self.db_path.exists():
            return 0
        lock = self._lock()
        try:
            con = self._prepare()
            key = _keys.mac_key(self.state)
            row = con.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
            if row is None or key is None:
                return 0
            seq, h = upto if upto is not None else row
            if upto is not None:
                got = con.execute("SELECT hash FROM records WHERE seq=?", (seq,)).fetchone()
                if got is None or got[0] != h:
                    raise ValueError(f"record {seq} is not the one that was verified")
            try:
                anchor = self.read_anchor(locked=True) or {}
            except ValueError:
                anchor = {}
            signed = anchor.get("signed")
            if not (isinstance(signed, dict) and signed.get("seq") == seq
                    and signed.get("hash") == h):
                signed = self._make_signature(seq, h)
            elif anchor.get("seq") == row[0] and anchor.get("hash") == row[1]:
                return seq
            self._write_anchor(key, row[0], row[1], signed)
            return seq
        finally:
            os.close(lock)

    # -- reading ---------------------------------------------------------

    def read_anchor(self, *, locked: bool = False) -> dict | None:
        """The anchor's current slot (the higher generation) as a dict; None
        when the file is absent; ``ValueError`` when it is damaged (wrong
        size, a slot that is not a JSON object, generations out of step).
        Takes the writers' lock shared for the read unless ``locked`` (the
        caller holds it), so a slot being rewritten is never seen half-way."""
        lock = None
        if not locked:
            try:
                lock = os.open(self.lock_path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                lock = None
            if lock is not None:
                import fcntl
                fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            raw = self.anchor_path.read_bytes()
        except FileNotFoundError:
            return None
        finally:
            if lock is not None:
                os.close(lock)
        slots = unpack_anchor(raw)
        return max(slots, key=lambda d: d["gen"])

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last record in the database; ``(0, GENESIS)``
        when empty."""
        con = self._connect(write=False)
        if con is None:
            return 0, GENESIS
        try:
            row = con.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        except Exception:
            return 0, GENESIS
        return (row[0], row[1]) if row else (0, GENESIS)

    def rows(self) -> Iterator[tuple[int, str, str | None, bytes]]:
        """Raw ``(seq, hash, mac, body)`` rows in order (for `verify`)."""
        con = self._connect(write=False)
        if con is None:
            return
        try:
            cur = con.execute("SELECT seq, hash, mac, body FROM records ORDER BY seq")
        except Exception as e:
            if "no such table" in str(e):
                return
            raise
        for seq, h, mac, body in cur:
            if isinstance(body, str):
                body = body.encode("utf-8")
            yield seq, h, mac, body

    def records(self, *, since: str | None = None, until: str | None = None,
                kinds: Iterable[str] | None = None,
                sandbox: str | None = None) -> Iterator[Record]:
        """Records in order, filtered: ``since``/``until`` are ISO 8601 UTC
        strings as `sandbox.audit.parse_when` returns (inclusive / exclusive);
        ``kinds`` a set of kinds; ``sandbox`` a sandbox id or a prefix of one.
        A record whose body cannot be parsed is yielded with kind
        ``"(unreadable)"`` (``audit verify`` says why)."""
        kinds = set(kinds) if kinds else None
        for seq, h, mac, body in self.rows():
            try:
                doc = parse_body(body)
                rec = Record(seq, str(doc["time"]), str(doc["kind"]),
                             doc["data"] if isinstance(doc["data"], dict) else {},
                             str(doc["prev"]), h, doc["v"], mac)
            except (ValueError, UnicodeDecodeError):
                rec = Record(seq, "", "(unreadable)", {}, "", h, 0, mac)
            if since and rec.time < since:
                continue
            if until and rec.time >= until:
                continue
            if kinds and rec.kind not in kinds:
                continue
            if sandbox and not (rec.sandbox_id or "").startswith(sandbox):
                continue
            yield rec

    def verify(self, public_key=None, *, sign_head: bool = True):
        """Check the whole log; see `sandbox.audit.verify.verify_log`."""
        from .verify import verify_log
        return verify_log(self, public_key=public_key, sign_head=sign_head)


_open: dict[str, AuditLog] = {}
#: Connections a forked child inherited: kept referenced and never closed
#: there, because closing a parent's SQLite connection in a child can
#: checkpoint and delete the WAL under the parent (SQLite: "do not carry an
#: open database connection across a fork"). The child opens its own.
_inherited: list = []


def _after_fork_in_child() -> None:
    for log in _open.values():
        if log._con is not None:
            _inherited.append(log._con)
            log._con, log._pid, log._ready = None, None, False


os.register_at_fork(after_in_child=_after_fork_in_child)


def _tighten_state(state: Path) -> None:
    """Make the state folder 0700 when it is ours and wider.

    It may already exist with the umask's mode: planning a launch creates
    ``state/cache/seccomp`` with ``os.makedirs`` (intermediate folders get
    0755) before the log is first opened. The files are 0600 in any case;
    this keeps their names and sizes from other users too (DESIGN §6: the
    sandbox can never reach the log). One stat per process."""
    try:
        st = os.stat(state)
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.chmod(state, 0o700)
    except OSError:
        pass


def prepare(paths) -> AuditLog:
    """Open the audit log of ``paths`` for this process ahead of its first
    record, and return it: imports `sqlite3` (~2 ms, the largest part of a
    first record), makes the key and database on first use, opens the
    connection and checks the schema. Optional; `record_event` does the same
    on its first call.

    The launch runtime calls it in the parent while the child sets itself up
    (after the fork: the parent's wait for the child's "ready" overlaps it),
    so the records written later cost only their appends (~0.2 ms each).
    Raises `SetupError` when the log cannot be opened for writing.
    """
    state = str(getattr(paths, "state", paths))
    log = _open.get(state)
    if log is None:
        log = _open[state] = AuditLog(paths)
    try:
        lock = log._lock()
        try:
            log._prepare()
        finally:
            os.close(lock)
    except Exception as e:
        import sqlite3
        if isinstance(e, (OSError, sqlite3.Error)):
            from ..errors import SetupError
            raise SetupError(f"cannot open the audit log {log.db_path}: {e}",
                             step="audit record",
                             hint="check that the state folder is writable by this user") from e
        raise
    return log


def close_open() -> None:
    """Close the logs `prepare` and `record_event` opened in this process
    (the CLI calls it before ending with ``os._exit``)."""
    while _open:
        _open.popitem()[1].close()


def record_event(paths, kind: str, data: dict) -> int:
    """Append one event to the audit log of ``paths`` (a `Paths`); return its
    sequence number (1, 2, ...).

    ``kind``: ``launch``, ``exit``, ``refusal``, ``trust.add``,
    ``trust.remove``, ``image.import``, ``image.remove``,
    ``insecure-option`` (or another ``[a-z][a-z0-9.-]*`` name). ``data``: a
    JSON-able dict; for ``launch``, ``exit`` and ``refusal`` the shapes in
    `sandbox.audit.report`.

    Cost (``benchmarks/audit_cost.py``): ~0.2-0.3 ms per call once the log
    is open in this process (one SQLite transaction without fsync, two
    seals, one in-place anchor write); the first call in a process also
    imports `sqlite3` and opens the log (~3 ms): call `prepare` early to
    take that off the critical path. One call in `SIGN_EVERY` also signs
    (~15 ms). Raises `UsageError` (bad kind or data) or `SetupError`
    (cannot write).
    """
    state = str(getattr(paths, "state", paths))
    log = _open.get(state)
    if log is None:
        log = _open[state] = AuditLog(paths)
    return log.append(kind, data)
