"""User and group id maps for the sandbox's user namespace (user_namespaces(7)).

Run by root: a free range of 65536 ids taken from root's entries in
``/etc/subuid`` and ``/etc/subgid`` (subuid(5)); each running sandbox holds
its range with an ``flock`` on ``/run/sandbox/idmap/<start>.lock`` for as
long as its supervisor lives, so the kernel releases it even after a crash.
The lock folder is the host's, whatever ``--root`` says: two state roots
are still one host, and two sandboxes sharing a range share an owner for
their files and processes. A range is also skipped while any live user
namespace on the host (another state root of an older version, podman, a
crashed supervisor's orphans) maps ids in it, read from ``/proc/*/uid_map``
and ``gid_map`` under the lock. Run
by another user: that user's own id maps to the sandbox's uid, and nothing
else, which needs no helper binary (``setgroups`` is denied first, as the
kernel requires).
"""

from __future__ import annotations

import fcntl
import os
import pwd
from pathlib import Path
from typing import NamedTuple

from ..errors import HostSupportError

RANGE = 65536
#: Host-wide, for every state root (as root only; see the module docstring).
HOST_LOCK_DIR = Path("/run/sandbox/idmap")


class IdMap(NamedTuple):
    """``uid_map``/``gid_map`` lines (``inside outside count``) and whether
    ``setgroups`` must be denied first."""

    uid_map: str
    gid_map: str
    deny_setgroups: bool
    host_uid: int       # the host id the sandbox's root (or uid) appears as
    host_gid: int

    def to_dict(self) -> dict:
        return {"uid_map": self.uid_map.strip(), "gid_map": self.gid_map.strip(),
                "deny_setgroups": self.deny_setgroups}


def _sub_ranges(path: str, user: str, uid: int) -> list[tuple[int, int]]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) != 3 or parts[0] not in (user, str(uid)):
                    continue
                try:
                    out.append((int(parts[1]), int(parts[2])))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return out


def _slots(ranges: list[tuple[int, int]]) -> list[int]:
    return [start + i * RANGE for start, count in ranges for i in range(count // RANGE)]


class Reservation:
    """A held id range; `release` (or process exit) frees it."""

    def __init__(self, idmap: IdMap, fd: int | None):
        self.idmap = idmap
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def identity(uid: int, gid: int, inside_uid: int = 0, inside_gid: int = 0) -> IdMap:
    """The caller's own ids map to ``inside_uid``/``inside_gid``; nothing else."""
    return IdMap(f"{inside_uid} {uid} 1\n", f"{inside_gid} {gid} 1\n", True, uid, gid)


def _outside_ranges(map_text: str) -> list[tuple[int, int]]:
    out = []
    for line in map_text.strip().splitlines():
        _inside, outside, count = (int(x) for x in line.split())
        out.append((outside, count))
    return out


def build_privileged_host_ids(idm: IdMap, euid: int | None = None) -> str | None:
    """Why ``idm`` gives the sandbox a privileged host id, or None.

    A sandbox whose ids are host uid 0 (or any host id below the
    subordinate ranges: a system account, a real user) owns that id's files
    on the host: through a writable volume it can leave a setuid-root
    program there. Run by root, every outside range must therefore lie in
    root's subordinate ranges; run by another user, the kernel lets only
    the caller's own id be mapped, which gives the sandbox nothing the
    caller lacks, so only host id 0 is flagged. Pure but for reading
    /etc/subuid and /etc/subgid."""
    euid = os.geteuid() if euid is None else euid
    name = None
    for kind, text, sub in (("uid", idm.uid_map, "/etc/subuid"),
                            ("gid", idm.gid_map, "/etc/subgid")):
        ranges = None
        for outside, count in _outside_ranges(text):
            if outside == 0:
                return f"maps the sandbox to host {kind} 0 (host root)"
            if euid != 0:
                continue
            if ranges is None:
                if name is None:
                    name = pwd.getpwuid(euid).pw_name
                ranges = _sub_ranges(sub, name, euid)
            if not any(s <= outside and outside + count <= s + n for s, n in ranges):
                return (f"maps the sandbox to host {kind}s {outside}-{outside + count - 1}, "
                        f"outside root's subordinate ranges ({sub})")
    return None


def build_ranges_in_use(proc: str = "/proc") -> tuple[list[tuple[int, int]],
                                                     list[tuple[int, int]]]:
    """(uid ranges, gid ranges) that live user namespaces on the host map
    to (outside first id, count), the initial namespace's identity map
    left out. Each namespace is read once (by its ``ns/user`` link), and
    ours is skipped: about 2 ms for 200 processes, against 20 ms for
    reading every process's maps. Processes that vanish are skipped."""
    uids: set[tuple[int, int]] = set()
    gids: set[tuple[int, int]] = set()
    try:
        seen = {os.readlink(f"{proc}/self/ns/user")}
    except OSError:
        seen = set()
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            ns = os.readlink(f"{proc}/{name}/ns/user")
        except OSError:
            ns = None       # gone, or a test's fake /proc: read its maps
        if ns is not None:
            if ns in seen:
                continue
            seen.add(ns)
        for fname, out in (("uid_map", uids), ("gid_map", gids)):
            try:
                fd = os.open(f"{proc}/{name}/{fname}", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    text = os.read(fd, 65536).decode("ascii", "replace")
                finally:
                    os.close(fd)
            except OSError:
                break
            for line in text.splitlines():
                parts = line.split()
                if len(parts) != 3 or not all(p.isdigit() for p in parts):
                    continue
                _inside, outside, count = (int(x) for x in parts)
                if outside == 0 and count >= 4294967295:
                    continue        # the initial user namespace
                out.add((outside, count))
    return sorted(uids), sorted(gids)


def _overlaps(ranges: list[tuple[int, int]], start: int) -> bool:
    return any(o < start + RANGE and start < o + n for o, n in ranges)


def reserve(mode: str, runtime_dir: Path, *, inside_uid: int = 0,
            inside_gid: int = 0, hold: bool = True) -> Reservation:
    """Choose and hold the id maps for one sandbox.

    ``mode`` is the profile's ``user.map``: ``auto`` (a free subordinate range
    when run by root, else identity) or ``identity``. Raises
    `HostSupportError` when root has no subordinate range of 65536 ids free.
    """
    euid, egid = os.geteuid(), os.getegid()
    if mode == "identity" or euid != 0:
        return Reservation(identity(euid, egid, inside_uid, inside_gid), None)
    name = pwd.getpwuid(euid).pw_name
    uids = _slots(_sub_ranges("/etc/subuid", name, euid))
    gids = _slots(_sub_ranges("/etc/subgid", name, euid))
    if not uids or not gids:
        raise HostSupportError(
            "root has no subordinate id range of 65536 in /etc/subuid and /etc/subgid",
            hint="add one: usermod --add-subuids 100000-6653599 --add-subgids 100000-6653599 root")
    if not hold:
        return Reservation(IdMap(f"0 {uids[0]} {RANGE}\n", f"0 {gids[0]} {RANGE}\n", False,
                                 uids[0] + inside_uid, gids[0] + inside_gid), None)
    # ``runtime_dir`` (the state root's) is deliberately not used: see HOST_LOCK_DIR.
    lockdir = HOST_LOCK_DIR
    lockdir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lockdir.mkdir(exist_ok=True, mode=0o700)
    in_use = None
    for ustart, gstart in zip(uids, gids):
        fd = os.open(lockdir / f"{ustart}.lock",
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        if not _still_linked(fd, lockdir / f"{ustart}.lock"):
            os.close(fd)            # issue 14: gc removed it meanwhile; a later slot
            continue
        if in_use is None:      # read once, after the first lock is ours
            in_use = build_ranges_in_use()
        if _overlaps(in_use[0], ustart) or _overlaps(in_use[1], gstart):
            os.close(fd)
            continue
        m = IdMap(f"0 {ustart} {RANGE}\n", f"0 {gstart} {RANGE}\n", False,
                  ustart + inside_uid, gstart + inside_gid)
        return Reservation(m, fd)
    raise HostSupportError(
        f"all {len(uids)} subordinate id ranges of root are in use by running sandboxes",
        hint="give root a larger range in /etc/subuid and /etc/subgid, or stop a sandbox")


# -- issue 14: free lock files are removed by `sandbox gc` -------------------

def _still_linked(fd: int, path: Path) -> bool:
    """Whether the locked ``fd`` is still the file at ``path``: `gc` unlinks
    a free lock file while holding its lock, so a reserver that opened it
    just before must not keep a lock on a file no one else can see."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def remove_free_locks(lockdir: Path = HOST_LOCK_DIR) -> list[str]:
    """Remove the ``*.lock`` files in ``lockdir`` (the host-wide folder by
    default) that no running sandbox holds; return their paths. Each is locked first and unlinked while locked, so a
    reserver racing with us either got it first (and it stays) or sees it
    gone (`_still_linked`) and moves on."""
    out = []
    lockdir = Path(lockdir)
    try:
        names = sorted(os.listdir(lockdir))
    except OSError:
        return out
    for name in names:
        if not name.endswith(".lock"):
            continue
        path = lockdir / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _still_linked(fd, path):
                os.unlink(path)
                out.append(str(path))
        except OSError:
            pass        # held by a running sandbox (or gone): leave it
        finally:
            os.close(fd)
    return out
