"""Detached sandboxes after their start (issue 6): list, inspect, stop,
remove, read logs, enter, and collect what crashed supervisors left.

    >>> from sandbox import Sandbox
    >>> h = Sandbox(profile="default").start(["/bin/sh", "-c", "echo hi; sleep 60"])
    >>> h.status()["state"]
    'running'
    >>> h.stop(grace=5)
    143

The records are those of `sandbox.runtime.state`. A sandbox is named by its
full id, a unique prefix of it, or its name (unique among live sandboxes; a
name that only exited sandboxes carry names the most recent one).

States: ``created`` (supervisor setting up), ``running``, ``exited`` (with
the payload's status; ``null`` when its supervisor died and `gc` cleaned
up), ``refused`` (setup failed or refused; the status `run` would have
returned), and ``dead``: the record says created/running but the
supervisor is gone; `gc` (or `stop`/`rm`) undoes what it left.
"""

from __future__ import annotations

import builtins
import errno
import glob
import os
import re
import shutil
import signal
import time
from pathlib import Path

from ..errors import NotFound, SandboxError
from ..paths import Paths
from ..runtime import state as st

DEFAULT_GRACE = 30 * 60       # gc keeps exited records this long (as rkt did)
ORPHAN_AGE = 60               # stateless leftovers younger than this are left alone
_CG_RE = re.compile(r"^/sys/fs/cgroup/(?:[^/]+/)?sandbox/([0-9a-f]{12})$")


def _paths(root) -> Paths:
    return root if isinstance(root, Paths) else Paths.resolve(root)


# ------------------------------------------------------------------ lookups

def resolve(paths: Paths, ref: str) -> dict:
    """The record named by ``ref``: id, unique id prefix, or name.
    `NotFound` (unknown), `SandboxError` (ambiguous)."""
    recs = st.load_all(paths)
    for r in recs:
        if r["id"] == ref:
            return r
    named = [r for r in recs if r.get("name") == ref]
    if named:
        live = [r for r in named if st.effective_state(paths, r) in st.LIVE]
        return (live or named)[-1]
    if re.fullmatch(r"[0-9a-f]{1,12}", ref):
        hits = [r for r in recs if r["id"].startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise SandboxError(f"sandbox id prefix {ref!r} is ambiguous: it matches "
                               + ", ".join(r["id"] for r in hits[:5])
                               + (" ..." if len(hits) > 5 else ""))
    raise NotFound(f"no sandbox {ref!r} (see 'sandbox ps --all')")


def _when(t) -> str | None:
    if not t:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def info(paths: Paths, rec: dict) -> dict:
    """What `ps` shows for one record."""
    eff = st.effective_state(paths, rec)
    return {
        "id": rec["id"], "name": rec.get("name"), "profile": rec.get("profile"),
        "image": rec.get("image"),
        "root": rec.get("rootfs") or ("image" if rec.get("image") else "host"),
        "state": eff, "status": rec.get("status"), "signal": rec.get("signal"),
        "created": _when(rec.get("created_at")), "started": _when(rec.get("started_at")),
        "finished": _when(rec.get("finished_at")),
        "label": rec.get("label"), "network": rec.get("network"), "error": rec.get("error"),
    }


def describe_state(i: dict) -> str:
    s = i["state"]
    if s in ("exited", "refused"):
        return f"{s} ({i['status'] if i['status'] is not None else '?'})"
    return s


def list(root=None, *, all: bool = False) -> builtins.list[dict]:  # noqa: A001
    """The sandboxes as `info` dicts, oldest first; live (and dead) ones,
    or every record with ``all``."""
    paths = _paths(root)
    out = [info(paths, r) for r in st.load_all(paths)]
    return out if all else [i for i in out if i["state"] not in ("exited", "refused")]


def get(ref: str, root=None) -> "SandboxHandle":
    """The handle of the sandbox named by ``ref`` (id, prefix or name)."""
    paths = _paths(root)
    return SandboxHandle(resolve(paths, ref)["id"], paths)


def status(paths: Paths, rec: dict) -> dict:
    """`info` plus pids and the effective kernel state read back now."""
    from ..runtime.spawn import read_effective
    out = info(paths, rec)
    payload, pid1 = rec.get("payload"), rec.get("pid1")
    alive = out["state"] == "running" and st.same_process(payload)
    out.update({
        "pid": payload.get("pid") if payload else None,
        "pid1": pid1.get("pid") if pid1 else None,
        "supervisor_pid": (rec.get("supervisor") or {}).get("pid"),
        "payload_alive": alive,
        "effective": read_effective(payload["pid"]) if alive else None,
        "effective_at_start": rec.get("effective"),
        "command": rec.get("argv"), "log": rec.get("log"),
        "resources": rec.get("resources"), "duration_ms": rec.get("duration_ms"),
    })
    if alive and str(out.get("network") or "").startswith("allow"):
        # --net allow: the proxy's running counts (not a scan of the audit log)
        from ..net.egress import read_counts
        out["egress"] = read_counts(Path(paths.runtime) / rec["id"])
    return out


# ------------------------------------------------------------------ stop

def _wait_gone(paths: Paths, rec: dict, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while st.supervisor_alive(paths, rec):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _kill(ref: dict | None, sig: int) -> bool:
    if st.same_process(ref):
        try:
            os.kill(ref["pid"], sig)
            return True
        except ProcessLookupError:
            pass
    return False


def stop(paths: Paths, rec: dict, grace: float = 10.0) -> dict:
    """SIGTERM to the payload (through the supervisor, which forwards it to
    PID 1, which forwards it to the payload), SIGKILL to PID 1 (the whole pid
    namespace) after ``grace`` seconds; the supervisor tears down. The
    record afterwards. `SandboxError` when it is not running."""
    eff = st.effective_state(paths, rec)
    if eff not in st.LIVE and eff != "dead":
        raise SandboxError(f"sandbox {rec['id']} is not running: "
                           f"{describe_state(info(paths, rec))}")
    if eff in st.LIVE:
        _kill(rec.get("supervisor"), signal.SIGTERM)
        if not _wait_gone(paths, rec, grace):
            cur = st.load(paths, rec["id"]) or rec
            if not _kill(cur.get("pid1"), signal.SIGKILL):
                _kill(cur.get("supervisor"), signal.SIGKILL)
            if not _wait_gone(paths, rec, 5.0):
                _kill(cur.get("supervisor"), signal.SIGKILL)
                _wait_gone(paths, rec, 5.0)
    cur = st.load(paths, rec["id"]) or rec
    if cur.get("state") in st.LIVE:          # the supervisor died: undo for it
        cleanup(paths, cur)
        cur = st.load(paths, rec["id"]) or cur
    return cur


# ------------------------------------------------------------------ cleanup

def _host_mounts_under(prefixes) -> builtins.list[str]:
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].replace("\\040", " ")
                if any(mp == p or mp.startswith(p.rstrip("/") + "/") for p in prefixes):
                    out.append(mp)
    except OSError:
        pass
    return sorted(out, key=len, reverse=True)


def _umount(mp: str) -> str | None:
    from ..runtime import kernel as k
    try:
        k.umount2(mp, k.MNT_DETACH | k.UMOUNT_NOFOLLOW)
        return None
    except OSError as e:
        return f"mount {mp}: {e.strerror}"


def _cgroup_dirs(sid: str, recorded) -> builtins.list[str]:
    dirs = {d for d in (recorded or ()) if _CG_RE.match(d) and _CG_RE.match(d).group(1) == sid}
    dirs |= set(glob.glob(f"/sys/fs/cgroup/*/sandbox/{sid}"))
    dirs |= set(glob.glob(f"/sys/fs/cgroup/sandbox/{sid}"))
    return sorted(dirs)


def cleanup(paths: Paths, rec: dict) -> builtins.list[str]:
    """Undo what the (dead) supervisor of ``rec`` left: processes, network,
    cgroups, host mounts, the runtime folder, label lease; the record becomes
    ``exited`` with an unknown status. Returns what could not be undone."""
    from ..runtime import cgroups
    from ..runtime.spawn import remove_base
    sid = rec["id"]
    left: builtins.list[str] = []
    for key in ("supervisor", "first_child", "pid1", "payload"):   # normally dead already
        _kill(rec.get(key), signal.SIGKILL)                          # (parent-death signal)
    for d in _cgroup_dirs(sid, (rec.get("resources") or {}).get("cgroups")):
        cgroups._kill_all(d)
    deadline = time.monotonic() + 5.0
    while st.anything_left(paths, rec) and time.monotonic() < deadline:
        time.sleep(0.02)
    res = rec.get("resources") or {}
    if res.get("net") is not None:
        left += _net_gc(paths)[1]
    dirs = _cgroup_dirs(sid, res.get("cgroups"))
    if dirs:
        left += cgroups.remove(cgroups.CgroupPlan(tuple(dirs), (), ()))
    base = os.path.join(str(paths.runtime), sid)
    for mp in _host_mounts_under([base]):
        err = _umount(mp)
        if err:
            left.append(err)
    left += remove_base(base)
    try:
        from ..labels.alloc import gc_labels
        gc_labels(paths)
    except Exception as e:  # noqa: BLE001
        left.append(f"labels: {e}")
    with st.records_lock(paths):
        cur = st.load(paths, sid) or rec
        if cur.get("state") in st.LIVE:
            cur.update(state="exited", finished_at=time.time(), status=None,
                       error="the supervisor died; cleaned up by gc", leftovers=left or None)
            st.save(paths, cur)
    return left


def _net_gc(paths: Paths) -> tuple[builtins.list[str], builtins.list[str]]:
    """`sandbox.net.gc` when that module exists: (removed, errors)."""
    try:
        from .. import net
        fn = net.gc
    except (ImportError, AttributeError):
        return [], []
    try:
        return [f"network: {x}" for x in (fn(paths) or ())], []
    except Exception as e:  # noqa: BLE001
        return [], [f"network: {e}"]


def remove_record(paths: Paths, rec: dict) -> None:
    sid = rec["id"]
    with st.records_lock(paths):
        rd = st.run_dir(paths, sid)
        if st.lock_held(rd / "supervisor.lock"):
            raise SandboxError(f"sandbox {sid} is still running")
        shutil.rmtree(rd, ignore_errors=True)
        try:
            os.unlink(st.record_path(paths, sid))
        except FileNotFoundError:
            pass


def rm(paths: Paths, rec: dict, force: bool = False, grace: float = 10.0) -> None:
    """Remove an exited sandbox's record and logs; ``force`` stops it first."""
    eff = st.effective_state(paths, rec)
    if eff in st.LIVE:
        if not force:
            raise SandboxError(f"sandbox {rec['id']} is {eff}: stop it first, or use --force")
        rec = stop(paths, rec, grace)
    elif eff == "dead":
        cleanup(paths, rec)
    remove_record(paths, rec)


def gc(root=None, grace: float = DEFAULT_GRACE) -> dict:
    """Clean up after dead supervisors, remove records of sandboxes exited
    more than ``grace`` seconds ago, and sweep what no record names: label
    lock files nobody holds, run folders, runtime folders, empty cgroups
    and host mounts under the runtime folder left by foreground runs."""
    paths = _paths(root)
    report = {"cleaned": [], "removed": [], "orphans": [], "leftovers": [],
              "deferred": [], "exits": []}     # issue 14: what was deferred and why
    now = time.time()
    known = set()
    for rec in st.load_all(paths):
        sid = rec["id"]
        known.add(sid)
        eff = st.effective_state(paths, rec)
        if eff in st.LIVE:
            continue
        if eff == "dead":
            report["leftovers"] += cleanup(paths, rec)
            report["cleaned"].append(sid)
            rec = st.load(paths, sid) or rec
        else:   # exited or refused: anything a teardown could not remove
            dirs = _cgroup_dirs(sid, (rec.get("resources") or {}).get("cgroups"))
            base = os.path.join(str(paths.runtime), sid)
            if dirs or os.path.lexists(base):
                from ..runtime import cgroups
                from ..runtime.spawn import remove_base
                report["leftovers"] += cgroups.remove(cgroups.CgroupPlan(tuple(dirs), (), ()))
                report["leftovers"] += remove_base(base)
        if (rec.get("finished_at") or now) + grace <= now:
            try:
                remove_record(paths, rec)
                report["removed"].append(sid)
            except SandboxError:
                pass
    report["orphans"] += _sweep_orphans(paths, known, report["deferred"])
    if any((r.get("resources") or {}).get("net") for r in st.load_all(paths)) or \
            (Path(paths.state) / "network.db").exists():     # sandbox.net's leases
        removed, errs = _net_gc(paths)
        report["orphans"] += removed
        report["leftovers"] += errs
    try:
        from ..labels.alloc import gc_labels
        gc_labels(paths)
    except Exception as e:  # noqa: BLE001
        report["leftovers"].append(f"labels: {e}")
    from ..runtime.idmap import remove_free_locks      # issue 14: idle id-range locks
    # the host-wide folder (issue 13 item 2), and the per-root one older
    # versions used
    report["orphans"] += remove_free_locks() + remove_free_locks(paths.runtime / "idmap")
    try:                                                # issue 14: every launch ends
        from ..audit.evidence import record_crashed_exits
        written, waiting = record_crashed_exits(paths)
        report["exits"] += [{"sandbox": sid, "seq": seq} for sid, seq in written]
        report["deferred"] += [{"what": f"exit record of {sid}", "why": why}
                               for sid, why in waiting]
    except SandboxError as e:
        report["leftovers"].append(f"audit: {e.message}")
    return report


def _cwd_users(prefix: str) -> bool:
    """Whether any process has its cwd or root under ``prefix``."""
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        for what in ("cwd", "root"):
            try:
                t = os.readlink(f"/proc/{p}/{what}")
            except OSError:
                continue
            if t == prefix or t.startswith(prefix + "/"):
                return True
    return False


def _old(path: str) -> bool:
    try:
        return time.time() - os.lstat(path).st_mtime > ORPHAN_AGE
    except OSError:
        return False


#: where sandbox cgroups live on the host (v1 controllers, then v2)
CGROUP_GLOBS = ("/sys/fs/cgroup/*/sandbox/*", "/sys/fs/cgroup/sandbox/*")


def _cgroup_dirs_on_host() -> builtins.list[str]:
    return [d for g in CGROUP_GLOBS for d in glob.glob(g)]


def _sweep_orphans(paths: Paths, known: set, deferred=None) -> builtins.list[str]:
    """Leftovers no record names: a foreground supervisor killed, or a
    detached one killed before its first record. Only what is provably
    unused (no holder of its lock, no process inside, an empty cgroup) and
    older than `ORPHAN_AGE`; cgroups (host-wide) only for ids this root
    knows (a record or a runtime folder), never another root's."""
    out = []
    young = f"younger than {ORPHAN_AGE} s (it may be a launch still starting); run gc again later"

    def defer(path):        # issue 14: say what was left and why
        if deferred is not None:
            deferred.append({"what": path, "why": young})
    live = {r["id"] for r in st.load_all(paths) if st.effective_state(paths, r) in st.LIVE}
    rt = str(paths.runtime)
    ours = set(known)          # cgroups are host-wide: touch only this root's ids
    runs = os.path.join(rt, "sandboxes")
    for sid in (os.listdir(runs) if os.path.isdir(runs) else ()):
        d = os.path.join(runs, sid)
        if st.ID_RE.match(sid) and sid not in known and \
                not st.lock_held(Path(d) / "supervisor.lock"):
            if not _old(d):
                defer(d)
                continue
            shutil.rmtree(d, ignore_errors=True)
            out.append(d)
    rt_ids = [sid for sid in (os.listdir(rt) if os.path.isdir(rt) else ())
              if st.ID_RE.match(sid)]
    ours.update(rt_ids)
    # Cgroups first: the runtime folder is what makes a cgroup "ours" when no
    # record names it, so it stays while any of its cgroups does. Removed in
    # one sweep while a cgroup was deferred as young, the cgroup was no
    # longer ours at the next gc and stayed on the host for good.
    cgroups_left = set()
    for d in _cgroup_dirs_on_host():
        sid = os.path.basename(d)
        if sid in ours and sid not in live and not _old(d):
            defer(d)
            cgroups_left.add(sid)
        elif sid in ours and sid not in live and _old(d):
            try:
                os.rmdir(d)              # fails (EBUSY) while any process is in it
                out.append(d)
            except OSError as e:
                if e.errno not in (errno.EBUSY, errno.ENOENT, errno.ENOTEMPTY):
                    raise
                if e.errno != errno.ENOENT:
                    cgroups_left.add(sid)
    for sid in rt_ids:
        d = os.path.join(rt, sid)
        if sid in live:
            continue
        if not _old(d):
            if os.path.isdir(d):
                defer(d)
        elif sid in cgroups_left:
            if deferred is not None:
                deferred.append({"what": d, "why": "its cgroups are still there; "
                                 "run gc again later"})
        elif not _cwd_users(d):
            for mp in _host_mounts_under([d]):
                _umount(mp)
            from ..runtime.spawn import remove_base
            if not remove_base(d):
                out.append(d)
    return out


# ------------------------------------------------------------------ logs

def log_files(paths: Paths, rec: dict) -> builtins.list[Path]:
    """The payload's log files, oldest first."""
    from ..runtime.supervise import LOG_KEEP, LOG_NAME
    rd = st.run_dir(paths, rec["id"])
    files = [rd / f"{LOG_NAME}.{i}" for i in range(LOG_KEEP, 0, -1)] + [rd / LOG_NAME]
    return [f for f in files if f.exists()]


def read_logs(paths: Paths, rec: dict) -> bytes:
    out = []
    for f in log_files(paths, rec):
        try:
            out.append(f.read_bytes())
        except FileNotFoundError:
            pass            # rotated away meanwhile
    return b"".join(out)


def follow_logs(paths: Paths, rec: dict, write, poll: float = 0.1) -> None:
    """Write the log so far, then what the payload writes, until the
    supervisor has ended; follows rotations."""
    from ..runtime.supervise import LOG_NAME
    for f in log_files(paths, rec)[:-1]:
        try:
            write(f.read_bytes())
        except FileNotFoundError:
            pass
    path = st.run_dir(paths, rec["id"]) / LOG_NAME
    fd = None
    while True:
        alive = st.supervisor_alive(paths, rec)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                if not alive:
                    return
                time.sleep(poll)
                continue
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            write(data)
        try:
            rotated = os.stat(path).st_ino != os.fstat(fd).st_ino
        except FileNotFoundError:
            rotated = True
        if rotated:
            while True:                 # the rest of the old file, then the new one
                data = os.read(fd, 65536)
                if not data:
                    break
                write(data)
            os.close(fd)
            fd = None
            continue
        if not alive:
            os.close(fd)
            return
        time.sleep(poll)


# ------------------------------------------------------------------ the handle

class SandboxHandle:
    """A detached sandbox: ``id``, `status`, `wait`, `stop`, `logs`, `rm`."""

    def __init__(self, sandbox_id: str, paths: Paths | None = None):
        self.id = sandbox_id
        self.paths = paths or Paths.resolve()

    def __repr__(self) -> str:  # pragma: no cover
        return f"<SandboxHandle {self.id}>"

    def record(self) -> dict:
        rec = st.load(self.paths, self.id)
        if rec is None:
            raise NotFound(f"no sandbox {self.id!r} (removed?)")
        return rec

    def status(self) -> dict:
        """`status` dict: state, status, pids, effective kernel state..."""
        return status(self.paths, self.record())

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the sandbox to end; its exit status (None: still running
        after ``timeout``, or unknown because its supervisor died)."""
        rec = self.record()
        if not _wait_gone(self.paths, rec, float("inf") if timeout is None else timeout):
            return None
        return (st.load(self.paths, self.id) or rec).get("status")

    def stop(self, grace: float = 10.0) -> int | None:
        """Stop it (SIGTERM, SIGKILL after ``grace`` s); the exit status."""
        return stop(self.paths, self.record(), grace).get("status")

    def logs(self) -> bytes:
        return read_logs(self.paths, self.record())

    def enter(self, argv=("/bin/sh",)) -> int:
        """Run ``argv`` inside the running sandbox (see `sandbox.lifecycle._enter`)."""
        from ._enter import enter
        return enter(self.paths, self.record(), builtins.list(argv))

    def rm(self, force: bool = False) -> None:
        rm(self.paths, self.record(), force)


def enter_sandbox(paths, rec: dict, argv: list[str]) -> int:
    """Run ``argv`` in the running sandbox ``rec`` (`sandbox.lifecycle._enter`);
    its exit status. The public name for the CLI."""
    from ._enter import enter
    return enter(paths, rec, argv)
