"""Address leases: ``<state>/network.db`` (SQLite).

A row of ``leases`` says which sandbox holds which address on which bridge
(with its host-side veth and the port forwards it asked for). It is
allocated in one ``BEGIN IMMEDIATE`` transaction, so concurrent launches
never draw the same address: SQLite serialises the writers and each one
sees the rows committed before it.

A lease is *live* while its owner runs: the row records the supervisor's
pid and its start time (field 22 of ``/proc/<pid>/stat``, so a recycled
pid does not count). Not an flock: the sandbox's first child is forked
from the supervisor and would inherit the lock's file description, keeping
a crashed supervisor's lease alive for as long as the orphaned sandbox
runs. When the owner is gone the row and everything the sandbox made are
garbage for `sandbox.net.gc`.

Addresses of dead leases are not reused until `gc` has removed the row
(with the sandbox's nftables rules), so a stale port forward can never
point at a new sandbox.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import sqlite3
import time
from pathlib import Path

from ..errors import SetupError

DB_NAME = "network.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    bridge      TEXT NOT NULL,
    address     TEXT NOT NULL,
    sandbox_id  TEXT NOT NULL UNIQUE,
    pid         INTEGER NOT NULL,
    starttime   INTEGER NOT NULL,
    host_if     TEXT NOT NULL,
    ports       TEXT NOT NULL DEFAULT '[]',
    created     REAL NOT NULL,
    PRIMARY KEY (bridge, address)
)
"""


def db_path(paths) -> Path:
    return Path(paths.state) / DB_NAME


def state_tag(paths) -> str:
    """A short name for this state folder, written into the comments of its
    nftables rules and the aliases of its links, so that `gc` of one state
    folder never touches another's."""
    real = os.path.realpath(db_path(paths))
    return hashlib.sha256(real.encode()).hexdigest()[:8]


def connect(paths, *, create: bool = True) -> sqlite3.Connection | None:
    """The lease database of ``paths`` (or of a database file path)."""
    p = Path(paths) if isinstance(paths, (str, Path)) else db_path(paths)
    if not create and not p.exists():
        return None
    if create:
        paths.ensure("state")
    db = sqlite3.connect(str(p), timeout=30.0, isolation_level=None)
    if create:
        try:
            os.chmod(p, 0o600)
        except OSError:
            pass
    db.execute(_SCHEMA)
    return db


def starttime(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks after boot, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def owner_alive(pid: int, start: int) -> bool:
    return pid > 0 and starttime(pid) == start


class Lease:
    """One held address. `release` (idempotent) deletes the row."""

    __slots__ = ("paths", "sandbox_id", "bridge", "address", "host_if", "held")

    def __init__(self, paths, sandbox_id, bridge, address, host_if):
        self.paths, self.sandbox_id, self.bridge = paths, sandbox_id, bridge
        self.address, self.host_if, self.held = address, host_if, True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            delete_row(self.paths, self.sandbox_id)
        except sqlite3.Error:
            pass            # the row stays; gc removes it once the owner is gone


def allocate(paths, sandbox_id: str, bridge: str, subnet: ipaddress.IPv4Network,
             gateway: str, host_if: str, ports: list[dict]) -> Lease:
    """Lease the lowest free address of ``subnet`` (not the gateway) on
    ``bridge`` for ``sandbox_id``, owned by this process."""
    pid = os.getpid()
    start = starttime(pid)
    try:
        db = connect(paths)
    except (OSError, sqlite3.Error) as e:
        raise SetupError(f"network lease database {db_path(paths)}: {e}",
                         step="network lease") from None
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            used = {r[0] for r in db.execute(
                "SELECT address FROM leases WHERE bridge = ?", (bridge,))}
            used.add(gateway)
            address = next((str(h) for h in subnet.hosts() if str(h) not in used), None)
            if address is None:
                raise SetupError(f"no free address left in {subnet} on bridge {bridge} "
                                 f"({len(used) - 1} leased): run `sandbox gc`",
                                 step="network lease")
            db.execute("INSERT INTO leases (bridge, address, sandbox_id, pid, starttime, "
                       "host_if, ports, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (bridge, address, sandbox_id, pid, start or 0, host_if,
                        json.dumps(ports), time.time()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    except sqlite3.Error as e:
        raise SetupError(f"network lease database {db_path(paths)}: {e}",
                         step="network lease") from None
    finally:
        db.close()
    return Lease(paths, sandbox_id, bridge, address, host_if)


def peek(paths, bridge: str, subnet: ipaddress.IPv4Network, gateway: str) -> str | None:
    """The address `allocate` would draw now (for ``--dry-run``; holds nothing)."""
    db = connect(paths, create=False)
    used = {gateway}
    if db is not None:
        used |= {r[0] for r in db.execute("SELECT address FROM leases WHERE bridge = ?",
                                         (bridge,))}
        db.close()
    return next((str(h) for h in subnet.hosts() if str(h) not in used), None)


def rows(paths) -> list[dict]:
    db = connect(paths, create=False)
    if db is None:
        return []
    try:
        cur = db.execute("SELECT bridge, address, sandbox_id, pid, starttime, host_if, ports, "
                         "created FROM leases ORDER BY bridge, address")
        keys = ("bridge", "address", "sandbox_id", "pid", "starttime", "host_if", "ports",
                "created")
        out = []
        for r in cur:
            d = dict(zip(keys, r))
            try:
                d["ports"] = json.loads(d["ports"])
            except ValueError:
                d["ports"] = []
            d["live"] = owner_alive(d["pid"], d["starttime"])
            out.append(d)
        return out
    finally:
        db.close()


def delete_row(paths, sandbox_id: str) -> None:
    db = connect(paths, create=False)
    if db is None:
        return
    try:
        with db:
            db.execute("DELETE FROM leases WHERE sandbox_id = ?", (sandbox_id,))
    finally:
        db.close()


def list_leases(paths) -> list[dict]:
    """Every lease row, with ``live`` (its owner still runs)."""
    return rows(paths)
