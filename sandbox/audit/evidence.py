"""Who, what, where: the evidence a launch path adds to its records (issue 14).

Used by the launch path (`sandbox.api`) and by `sandbox gc`; everything here
is cheap (no imports beyond ``os`` and ``pwd``, a few small ``/proc`` reads).

- `build_caller`: the **caller block** every record carries: uid, effective
  uid, user name, login uid (``/proc/self/loginuid``, the kernel's audit
  login id, unchanged by ``sudo``), pid, the parent's pid and command line,
  the working folder, and ``SUDO_USER``/``SUDO_UID`` when present. Taken
  once, in the process the user started (a detached supervisor is a daemon
  whose parent is init, so it is captured before it forks).
- `supervisor_identity`: ``{"pid", "start"}`` of the process that writes the
  launch record and will write the exit record; ``start`` is the process
  start time in clock ticks (``/proc/<pid>/stat`` field 22), so a reused pid
  is not mistaken for it. `supervisor_alive` checks it; `sandbox gc`
  writes the exit record of a launch whose supervisor is gone.
- `complete_launch` / `complete_refusal`: absolute paths (root file system,
  volume sources, profile file), the profile file's digest, the caller.
- `record_launch`: the launch record, durably, before the payload gets go;
  its failure refuses the launch (`sandbox.runtime.spawn.launch`
  ``on_confined``).
- `record_exit`: the exit record with retries; what still cannot be written
  is kept for the next writer, which appends it as an ``audit.gap``.
- `is_usage_error`: typos (unknown profile, image or path names, bad flags)
  are not launch refusals and are not recorded.
"""

from __future__ import annotations

import os

#: Tries and pause (seconds) for an exit record before it is kept as lost.
EXIT_TRIES = 3
EXIT_PAUSE = 0.5

_NAMES: dict[int, str] = {}


def user_name(uid: int) -> str:
    """The user name of ``uid`` (its number when it has none), looked up
    once per process."""
    name = _NAMES.get(uid)
    if name is None:
        import pwd
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        _NAMES[uid] = name
    return name


def _cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(4096)
    except OSError:
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]] or None


def _start_time(pid: int, *, living: bool = False) -> int | None:
    """Field 22 of ``/proc/<pid>/stat``; with ``living``, None for a zombie
    or dead process (state Z or X: it has ended, only not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # the command name may hold spaces and parentheses: split after the last ')'
        fields = stat[stat.rindex(b")") + 2:].split()
        if living and fields[0] in (b"Z", b"X"):
            return None
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def build_caller() -> dict:
    """The caller block of this process (see the module docstring)."""
    uid, euid = os.getuid(), os.geteuid()
    ppid = os.getppid()
    try:
        with open("/proc/self/loginuid", "rb") as f:
            login = int(f.read().strip())
        login = None if login == 4294967295 else login   # (uid_t)-1: not set
    except (OSError, ValueError):
        login = None
    caller = {"uid": uid, "euid": euid, "user": user_name(uid),
              "login_uid": login, "login_user": user_name(login) if login is not None else None,
              "pid": os.getpid(), "ppid": ppid, "parent_command": _cmdline(ppid)}
    try:
        caller["cwd"] = os.getcwd()
    except OSError:
        caller["cwd"] = None
    sudo = os.environ.get("SUDO_USER")
    if sudo:
        caller["sudo_user"] = sudo
        caller["sudo_uid"] = os.environ.get("SUDO_UID")
    return caller


def supervisor_identity() -> dict:
    """``{"pid", "start"}`` of this process (the supervisor)."""
    pid = os.getpid()
    return {"pid": pid, "start": _start_time(pid)}


def supervisor_alive(ident) -> bool | None:
    """Whether the supervisor named by ``ident`` still runs: None when the
    record does not say (older records)."""
    if not isinstance(ident, dict) or not isinstance(ident.get("pid"), int):
        return None
    start = _start_time(ident["pid"], living=True)
    return start is not None and start == ident.get("start")


def _absolute(path, cwd) -> str | None:
    if path is None:
        return None
    path = os.fspath(path)
    if not os.path.isabs(path) and cwd:
        path = os.path.join(cwd, path)
    return os.path.normpath(os.path.abspath(path))


def _file_digest(path) -> str | None:
    if not path or not os.path.isfile(path):
        return None
    from .._hash import sha256
    try:
        with open(path, "rb") as f:
            return "sha256:" + sha256(f.read()).hexdigest()
    except OSError:
        return None


def complete_launch(data: dict, caller: dict | None) -> dict:
    """``data`` (a launch record) with the caller, the supervisor, absolute
    paths and the profile file's digest; returns a new dict."""
    out = dict(data)
    cwd = (caller or {}).get("cwd")
    out["caller"] = caller
    out["supervisor"] = supervisor_identity()
    root = out.get("root")
    if isinstance(root, dict) and root.get("path") is not None:
        out["root"] = dict(root, path=_absolute(root["path"], cwd))
    vols = out.get("volumes")
    if isinstance(vols, list):
        out["volumes"] = [dict(v, source=_absolute(v.get("source"), cwd))
                          if isinstance(v, dict) else v for v in vols]
    prof = out.get("profile")
    if isinstance(prof, dict) and prof.get("source"):
        src = _absolute(prof["source"], cwd)
        out["profile"] = dict(prof, source=src, file_digest=_file_digest(src))
    return out


def complete_refusal(data: dict, caller: dict | None, argv) -> dict:
    """A refusal record with the caller and the command that was refused."""
    out = dict(data)
    out["caller"] = caller
    if out.get("command") is None and argv is not None:
        out["command"] = [str(a) for a in argv]
    return out


def is_usage_error(err) -> bool:
    """True for a typo rather than a refusal: bad flags, an unknown profile,
    image or path (`UsageError`, `NotFound`). These are not recorded: a
    refusal is a decision the sandbox made about a launch it understood."""
    from ..errors import NotFound, UsageError
    return isinstance(err, (UsageError, NotFound))


def record_launch(log, paths, data: dict) -> int:
    """Append the launch record and return its sequence number; raises
    `SetupError` when it cannot be written within the log's bounded wait
    (the caller then refuses the launch: no go without the record). The
    record is committed when this returns: a crash after it cannot undo it
    (WAL commit), and the only loss left is a power cut within
    ``synchronous=NORMAL``'s window, which `verify` detects."""
    from ..errors import SandboxError, SetupError
    try:
        if log is None:
            from . import prepare
            log = prepare(paths)
        # never signed on a launch (issue 10): the seal protects the head
        # until `audit verify`/`export` or another kind of record signs it
        return log.append("launch", data, sign=False)
    except SandboxError as e:
        raise SetupError(f"launch refused before the payload ran: its audit record could not "
                         f"be written ({e.message})", step="audit record",
                         errno=getattr(e, "errno", None),
                         hint="free space in the state folder, or stop what holds the audit "
                              "log locked, then run again") from e


def record_exit(log, paths, data: dict, *, kind: str = "exit") -> int | None:
    """Append an exit record, retrying `EXIT_TRIES` times `EXIT_PAUSE`
    apart: the payload has run, so its end must be recorded even after a
    transient failure (disk full for a moment, a lock held too long). When
    it still fails, the record is kept beside the log for the next writer,
    which appends it inside an ``audit.gap`` record (so `verify` says what
    was lost), and a warning names it. Returns the sequence number, or None
    when it was kept for later."""
    import time
    from ..errors import SandboxError
    from .log import AuditLog
    if log is None:
        from . import log as _logmod
        state = str(getattr(paths, "state", paths))
        log = _logmod._open.get(state) or _logmod._open.setdefault(state, AuditLog(paths))
    err = None
    for i in range(EXIT_TRIES):
        try:
            return log.append(kind, data, sign=False)     # as the launch record
        except SandboxError as e:
            err = e
            if i + 1 < EXIT_TRIES:
                time.sleep(EXIT_PAUSE)
    kept = log.save_lost(kind, data, str(err.message if err else "?"))
    import warnings
    warnings.warn(f"the {kind} record of sandbox {data.get('sandbox_id')} could not be written "
                  f"({err.message if err else '?'}); "
                  + (f"kept in {kept} for the next writer" if kept else "it is lost")
                  + f": {data}", RuntimeWarning, stacklevel=2)
    return None


def open_launches(log) -> dict[str, dict]:
    """Launch records with no exit record yet: sandbox id -> launch data
    (with its ``seq``)."""
    out: dict[str, dict] = {}
    for rec in log.records(kinds={"launch", "exit"}):
        sid = rec.sandbox_id
        if sid is None:
            continue
        if rec.kind == "launch":
            out[sid] = dict(rec.data, seq=rec.seq)
        else:
            out.pop(sid, None)
    return out


def record_crashed_exits(paths) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """For `sandbox gc`: write an exit record ("supervisor died", status
    unknown) for every launch whose supervisor is gone without one.
    Returns ``(written, deferred)``: ``(sandbox id, seq)`` pairs, and
    ``(sandbox id, why)`` for launches left open (the supervisor still
    runs, or an older record does not name it). Nothing when there is no
    log or it cannot be read."""
    from .log import AuditLog
    log = AuditLog(paths)
    written: list[tuple[str, int]] = []
    deferred: list[tuple[str, str]] = []
    try:
        if not log.db_path.exists():
            return written, deferred
        for sid, launch in open_launches(log).items():
            alive = supervisor_alive(launch.get("supervisor"))
            if alive:
                continue
            if alive is None:
                deferred.append((sid, "its launch record (older) does not name the supervisor"))
                continue
            seq = log.append("exit", {
                "sandbox_id": sid, "status": None, "signal": None,
                "reason": "supervisor died", "status_known": False,
                "launch_seq": launch["seq"], "recorded_by": {"command": "gc", **build_caller()}})
            written.append((sid, seq))
    finally:
        log.close()
    return written, deferred
