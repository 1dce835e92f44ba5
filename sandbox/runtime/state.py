"""Per-sandbox state of detached sandboxes (issue 6): what `ps`, `status`,
`stop`, `enter`, `rm` and `gc` read, written atomically by the supervisor.

Layout (``<state>`` and ``<runtime>`` as in `sandbox.paths`):

``<state>/sandboxes/<id>.json``
    The record: one JSON object, mode 0600, replaced atomically (write a
    temporary file, fsync-free ``rename``). It outlives the sandbox (exited
    status for ``ps --all``) until ``rm`` or ``gc`` removes it, and names
    every host resource the sandbox took (cgroup folders, runtime folder,
    label lease file, network handle), so ``gc`` undoes exactly that after
    a supervisor died, without guessing.
``<state>/sandboxes/.lock``
    flock held for the few milliseconds of a create (names are unique
    among live sandboxes) and of a removal.
``<runtime>/sandboxes/<id>/``
    The sandbox's run folder (0700, the caller's, never the sandbox's ids):
    ``supervisor.lock`` (flock held by the supervisor for its whole life:
    the liveness test that pid reuse cannot fool), ``confine.json`` (0600:
    the payload's capabilities, ids, env, Landlock rules and seccomp BPF, for
    ``enter``), ``payload.log`` and its rotations. Removed by ``rm``/``gc``,
    not by the launch's teardown, so logs stay readable after the exit.

The sandbox's own working folder ``<runtime>/<id>`` (``LaunchPlan.base``)
is owned by the sandbox's root and removed by the teardown; nothing here
lives in it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import time
from pathlib import Path

VERSION = 1
ID_RE = re.compile(r"^[0-9a-f]{12}$")
LIVE = ("created", "running")


def records_dir(paths) -> Path:
    return Path(paths.state) / "sandboxes"


def record_path(paths, sid: str) -> Path:
    return records_dir(paths) / f"{sid}.json"


def run_dir(paths, sid: str) -> Path:
    return Path(paths.runtime) / "sandboxes" / sid


def ensure_dirs(paths, sid: str) -> Path:
    """Create the records folder and the sandbox's run folder (0700)."""
    paths.ensure("state")
    paths.ensure("runtime")
    records_dir(paths).mkdir(mode=0o700, exist_ok=True)
    rd = run_dir(paths, sid)
    rd.parent.mkdir(mode=0o700, exist_ok=True)
    rd.mkdir(mode=0o700, exist_ok=True)
    return rd


def write_json(path: Path, data: dict, mode: int = 0o600) -> None:
    """Atomically replace ``path`` with ``data`` as JSON (mode ``mode``)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    try:
        os.write(fd, json.dumps(data, sort_keys=True, indent=1).encode() + b"\n")
    finally:
        os.close(fd)
    os.rename(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        with open(path, "rb") as f:
            d = json.loads(f.read())
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def save(paths, rec: dict) -> None:
    rec["updated_at"] = time.time()
    write_json(record_path(paths, rec["id"]), rec)


def load(paths, sid: str) -> dict | None:
    return read_json(record_path(paths, sid))


def load_all(paths) -> list[dict]:
    d = records_dir(paths)
    out = []
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return out
    for n in names:
        if n.endswith(".json") and ID_RE.match(n[:-5]):
            r = read_json(d / n)
            if r is not None and r.get("id") == n[:-5]:
                out.append(r)
    out.sort(key=lambda r: r.get("created_at") or 0)
    return out


class records_lock:
    """``with records_lock(paths):`` holds ``<state>/sandboxes/.lock``."""

    def __init__(self, paths):
        self.paths = paths
        self.fd = -1

    def __enter__(self):
        self.paths.ensure("state")
        records_dir(self.paths).mkdir(mode=0o700, exist_ok=True)
        self.fd = os.open(records_dir(self.paths) / ".lock",
                          os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


# ----------------------------------------------------------------- liveness

def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot), or None when
    the process is gone (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        fields = raw.rsplit(b")", 1)[1].split()
        if fields[0] in (b"Z", b"X"):
            return None
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def proc_ref(pid: int | None) -> dict | None:
    """``{"pid", "start_time"}`` for a live pid (None if gone)."""
    if not pid:
        return None
    st = start_time(pid)
    return None if st is None else {"pid": pid, "start_time": st}


def same_process(ref: dict | None) -> bool:
    """Whether ``ref`` (as `proc_ref` made it) still names the same process."""
    if not ref or not ref.get("pid"):
        return False
    st = start_time(ref["pid"])
    return st is not None and st == ref.get("start_time")


def hold_lock(path: Path) -> int:
    """Open ``path`` (O_CLOEXEC) and flock it exclusively; the fd."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def lock_held(path: Path) -> bool:
    """Whether someone holds an flock on ``path`` (False if it is absent)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError as e:
        return e.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)


def supervisor_alive(paths, rec: dict) -> bool:
    """The supervisor process still runs (pid and start time, so a reused
    pid does not count; before they are recorded, its lock)."""
    sup = rec.get("supervisor")
    if sup and sup.get("pid"):
        return same_process(sup)
    return lock_held(run_dir(paths, rec["id"]) / "supervisor.lock")


def anything_left(paths, rec: dict) -> bool:
    """The supervisor, or a process it forked (which inherits its lock), runs."""
    return same_process(rec.get("supervisor")) or \
        lock_held(run_dir(paths, rec["id"]) / "supervisor.lock")


def effective_state(paths, rec: dict) -> str:
    """``created``/``running`` only while the supervisor lives; ``dead`` when
    it died without recording an end (``sandbox gc`` cleans up)."""
    s = rec.get("state")
    if s in LIVE and not supervisor_alive(paths, rec):
        return "dead"
    return s or "unknown"
