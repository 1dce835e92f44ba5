"""The detached supervisor (issue 6): ``sandbox run --detach`` and
`Sandbox.start`.

`start_detached` forks twice: the middle process calls ``setsid`` and exits,
so the supervisor is a daemon (a process, never a thread: a user namespace
needs a single-threaded caller), re-parented to init or the nearest
subreaper, in a session of its own with no controlling terminal, with
stdin, stdout and stderr on /dev/null. It runs the very pipeline of
`Sandbox.run` (plan, label, spawn, audit launch and exit records) with the
hooks in `_Detached`, and reports back to the caller over a pipe once the
payload has been exec'd, or the setup error (re-raised in the caller with
its class and message, so ``run --detach -- /nope`` still exits 127).

Payload output: the payload's stdout and stderr are the write end of a
pipe; the supervisor reads it and writes ``payload.log`` in the sandbox's
run folder, rotating at `LOG_MAX` bytes and keeping `LOG_KEEP` older files
(``payload.log.1``, ``.2``). A pipe rather than the log file itself: the
cap is exact (a payload writing fast cannot fill the disk between two
checks, and no RLIMIT_FSIZE kills it), rotation never races a writer, and
the payload holds no fd of a host file (DESIGN §2: no host fd crosses).

State: `sandbox.runtime.state` (record in the state folder, run folder in
the runtime folder). The record is written before any host resource is
taken, then updated with what was taken, then ``running`` (pids with
their start times), then ``exited``/``refused``.
"""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import sys
import time

from . import state as st

LOG_MAX = 1 << 20          # bytes per log file
LOG_KEEP = 2               # rotated files kept besides payload.log
LOG_NAME = "payload.log"


def crash_point(name: str) -> None:
    """TEST HOOK, see `sandbox.runtime.spawn._crash_point`."""
    if os.environ.get("SANDBOX_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


class RotatingLog:
    """Append-only log capped at ``max_bytes`` per file, ``keep`` rotations."""

    def __init__(self, path: str, max_bytes: int = LOG_MAX, keep: int = LOG_KEEP):
        self.path, self.max, self.keep = path, max_bytes, keep
        self.fd = -1
        self._open()

    def _open(self):
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                          | os.O_NOFOLLOW, 0o600)
        self.size = os.fstat(self.fd).st_size

    def _rotate(self):
        os.close(self.fd)
        for i in range(self.keep, 0, -1):
            src = self.path if i == 1 else f"{self.path}.{i - 1}"
            try:
                os.rename(src, f"{self.path}.{i}")
            except FileNotFoundError:
                pass
        if self.keep == 0:
            os.unlink(self.path)
        self._open()

    def write(self, data: bytes) -> None:
        while data:
            room = self.max - self.size
            if room <= 0:
                self._rotate()
                continue
            chunk, data = data[:room], data[room:]
            os.write(self.fd, chunk)
            self.size += len(chunk)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def confinement(plan) -> dict:
    """What `enter` must apply to match the payload (owner-only file)."""
    return {
        "namespaces": list(plan.namespaces),
        "capabilities": list(plan.capabilities),
        "uid": plan.uid, "gid": plan.gid,
        "may_setgroups": plan.idmap is None or not plan.idmap.deny_setgroups,
        "env": [list(kv) for kv in plan.env],
        "workdir": plan.workdir,
        "no_new_privs": plan.no_new_privs,
        "landlock_abi": plan.landlock_abi,
        "landlock": [{"path": r.path, "access": r.access,
                      "excludes": list(getattr(r, "excludes", ()))} for r in plan.landlock]
        if plan.landlock_abi else [],
        "seccomp": base64.b64encode(plan.seccomp.bpf).decode() if plan.seccomp else None,
        "cgroup_procs": list(plan.cgroup.procs) if plan.cgroup else [],
        "label": plan.label,
        "exec_label": plan.exec_label,
    }


class _Detached:
    """The hooks `Sandbox.run` calls in the detached supervisor."""

    def __init__(self, box, rec: dict, report_fd: int, log_r: int, log_w: int):
        self.box = box
        self.paths = box.paths
        self.rec = rec
        self.sandbox_id = rec["id"]
        self.report_fd = report_fd
        self.log_r, self.log_w = log_r, log_w
        self.launch_options = {"wait": self.wait}
        self.log = RotatingLog(os.path.join(rec["run_dir"], LOG_NAME))

    # the state record -----------------------------------------------------
    def save(self, **kw):
        self.rec.update(kw)
        st.save(self.paths, self.rec)

    def planned(self, plan) -> None:
        box = self.box
        res = {"base": plan.base,
               "cgroups": list(plan.cgroup.dirs) if plan.cgroup else [],
               "label_lease": None, "net": None, "run_dir": self.rec["run_dir"]}
        if plan.label and plan.label.count(":") >= 3:      # user:role:type:level
            res["label_lease"] = os.path.join(str(self.paths.runtime), "labels",
                                              plan.label.split(":", 3)[3])
        if plan.net is not None:
            res["net"] = plan.net.to_dict() if hasattr(plan.net, "to_dict") else str(plan.net)
        st.write_json(st.run_dir(self.paths, self.sandbox_id) / "confine.json",
                      confinement(plan))
        self.save(profile=plan.profile, label=plan.label, network=plan.network,
                  argv=list(plan.argv), resources=res, namespaces=list(plan.namespaces),
                  plan_digest=plan.digest(),
                  image=(box.image_record.name or box.image) if box.image_record else box.image)
        crash_point("recorded")

    def forked(self) -> None:
        # C has inherited the log pipe as its stdout/stderr; the supervisor
        # keeps none of the write end, so EOF comes when the sandbox is gone.
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        if self.log_w >= 0:
            os.close(self.log_w)
            self.log_w = -1

    def started(self, effective, payload_pid) -> None:
        pid1 = _parent_of(payload_pid) if payload_pid else None
        first = _parent_of(pid1) if pid1 else None       # C, between us and PID 1
        self.save(state="running", started_at=time.time(),
                  payload=st.proc_ref(payload_pid), pid1=st.proc_ref(pid1),
                  first_child=st.proc_ref(first) if first != os.getpid() else None,
                  effective=effective)
        crash_point("started")
        self.report({"ok": True, "id": self.sandbox_id})
        crash_point("reported")

    def report(self, msg: dict) -> None:
        _report(msg)

    # the wait: reap C while copying the payload's output ----------------------
    def wait(self, c_pid: int):
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old = signal.signal(signal.SIGCHLD, lambda *_: None)
        old_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        os.set_blocking(self.log_r, False)
        poller = select.poll()
        poller.register(self.log_r, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        first = True
        try:
            while True:
                pid, status = os.waitpid(c_pid, os.WNOHANG)
                if pid:
                    break
                if first:
                    crash_point("running")
                for fd, _ev in poller.poll():
                    if fd == wake_r:
                        _drain(wake_r)
                    elif self._copy() is None:
                        poller.unregister(self.log_r)
                if first and self.log.size:
                    first = False
                    crash_point("logged")
            while self._copy():          # what is left in the pipe
                pass
        finally:
            signal.set_wakeup_fd(old_fd)
            signal.signal(signal.SIGCHLD, old)
            os.close(wake_r)
            os.close(wake_w)
        return pid, status

    def _copy(self):
        """Copy what is readable now: bytes copied (0: nothing yet), None at EOF."""
        try:
            data = os.read(self.log_r, 65536)
        except BlockingIOError:
            return 0
        if not data:
            return None
        try:
            self.log.write(data)
        except OSError:
            pass            # a full disk must not stop the supervisor
        return len(data)


_REPORT = {"fd": -1}       # the pipe to the caller, until the one message is sent


def _report(msg: dict) -> None:
    fd, _REPORT["fd"] = _REPORT["fd"], -1
    if fd >= 0:
        try:
            os.write(fd, json.dumps(msg).encode() + b"\n")
        except OSError:
            pass
        os.close(fd)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


# ------------------------------------------------------------------- start

def start_detached(box, argv) -> str:
    """Start ``argv`` under a daemon supervisor; the sandbox id once the
    payload runs. Raises the setup error otherwise."""
    from ..errors import SandboxError, UsageError
    if box.name is not None:
        _check_name(box.name)
    sid = os.urandom(6).hex()
    r, w = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:                                   # the middle process
        try:
            os.close(r)
            os.setsid()
            if os.fork() == 0:
                _daemon(box, list(argv), sid, w)   # never returns
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    # One line, or EOF when the supervisor died: not EOF after the line, as
    # the sandbox's first child keeps a copy of the pipe until it ends.
    chunks = []
    while not chunks or not chunks[-1].endswith(b"\n"):
        c = os.read(r, 65536)
        if not c:
            break
        chunks.append(c)
    os.close(r)
    try:
        msg = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        msg = {}
    if msg.get("ok"):
        return msg["id"]
    err = msg.get("error")
    if err:
        from .. import errors
        cls = getattr(errors, err.get("class", ""), None)
        if not (isinstance(cls, type) and issubclass(cls, SandboxError)):
            cls = errors.SetupError
        if issubclass(cls, UsageError) or cls in (errors.CommandNotFound,
                                                  errors.CommandNotExecutable,
                                                  errors.HostSupportError,
                                                  errors.CheckFailed, errors.NotFound,
                                                  errors.ArtifactError):
            e = cls(err["message"], hint=err.get("hint"))
        elif cls is errors.VerificationError:
            e = cls(err["message"], reason=err.get("reason") or "unknown", hint=err.get("hint"))
        elif cls is errors.SetupError:
            e = cls(err["message"], step=err.get("step"), hint=err.get("hint"))
        else:
            e = errors.SetupError(err["message"], hint=err.get("hint"))
        raise e
    from ..errors import SetupError
    raise SetupError(f"the supervisor of sandbox {sid} died during setup",
                     step="supervisor", hint="run `sandbox gc` to clean up what it left")


def _check_name(name: str) -> None:
    from ..errors import UsageError
    if not name or len(name) > 128 or not all(c.isalnum() or c in "-_." for c in name) \
            or (len(name) == 12 and st.ID_RE.match(name)):
        raise UsageError(f"bad sandbox name {name!r}",
                         hint="use letters, digits, '-', '_' and '.'; not a 12-hex-digit id")


def _daemon(box, argv: list, sid: str, report_fd: int) -> None:
    """The supervisor. Never returns."""
    import gc
    gc.freeze()          # the caller's objects are never finalised here
    try:
        from ..audit import log as _auditlog
        _auditlog._open.clear()      # never reuse the caller's SQLite connection
    except Exception:  # noqa: BLE001
        pass
    status = 125
    try:
        import fcntl
        report_fd = fcntl.fcntl(report_fd, fcntl.F_DUPFD_CLOEXEC, 3)   # above 0-2
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        # nothing of the caller's crosses: every other fd closes
        from . import _kernel as k
        if report_fd > 3:
            k.close_range(3, report_fd - 1)
        k.close_range(report_fd + 1)
        from .child import FORWARDED_SIGNALS
        for s in FORWARDED_SIGNALS:
            signal.signal(s, signal.SIG_IGN)   # launch forwards them while it runs
        _REPORT["fd"] = report_fd
        crash_point("daemon")
        status = _supervise(box, argv, sid, report_fd)
    except BaseException as e:  # noqa: BLE001 - reported to the caller if not yet
        _report({"error": _err_dict(e)})
    finally:
        os._exit(status & 0xFF)


def _err_dict(e: BaseException) -> dict:
    return {"class": type(e).__name__, "message": getattr(e, "message", None) or str(e),
            "hint": getattr(e, "hint", None), "step": getattr(e, "step", None),
            "reason": getattr(e, "reason", None)}


def _supervise(box, argv: list, sid: str, report_fd: int) -> int:
    from ..errors import SandboxError, UsageError
    paths = box.paths
    rd = st.ensure_dirs(paths, sid)
    lock_fd = st.hold_lock(rd / "supervisor.lock")     # held until this process ends
    rec = {"version": st.VERSION, "id": sid, "name": box.name, "profile": box.profile_ref,
           "image": box.image, "rootfs": box.rootfs, "argv": list(argv), "state": "created",
           "created_at": time.time(), "started_at": None, "finished_at": None,
           "status": None, "signal": None, "error": None, "label": None, "network": None,
           "supervisor": st.proc_ref(os.getpid()), "pid1": None, "payload": None,
           "run_dir": str(rd), "log": str(rd / LOG_NAME),
           "resources": {"base": os.path.join(str(paths.runtime), sid), "cgroups": [],
                         "label_lease": None, "net": None, "run_dir": str(rd)}}
    with st.records_lock(paths):
        if box.name is not None:
            for other in st.load_all(paths):
                if other.get("name") == box.name and st.effective_state(paths, other) in st.LIVE:
                    os.close(lock_fd)
                    import shutil
                    shutil.rmtree(rd, ignore_errors=True)
                    raise UsageError(f"the name {box.name!r} is in use by running sandbox "
                                     f"{other['id']}", hint="choose another --name")
        st.save(paths, rec)
    crash_point("state-created")
    log_r, log_w = os.pipe2(os.O_CLOEXEC)
    hooks = _Detached(box, rec, report_fd, log_r, log_w)
    # the payload's stdio: /dev/null in, the log pipe out (C inherits 0-2)
    os.dup2(log_w, 1, inheritable=True)
    os.dup2(log_w, 2, inheritable=True)
    try:
        result = box.run(argv, _detached=hooks)
    except SandboxError as e:
        hooks.save(state="refused", finished_at=time.time(), error=e.message,
                   status=e.run_status)
        hooks.report({"error": _err_dict(e)})
        return e.run_status
    finally:
        hooks.forked()       # idempotent: no copy of the pipe's write end stays
    crash_point("exit-recorded")
    hooks.save(state="exited", finished_at=time.time(), status=result.status,
               signal=result.signal, duration_ms=round(result.duration_ms, 3),
               leftovers=None)
    hooks.log.close()
    return result.status
