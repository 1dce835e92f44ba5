"""The supervisor side of a launch (DESIGN §2 steps 8 and 10).

`launch` forks C (see `child`), writes the id maps while C waits, says
"go", forwards INT, TERM, HUP, QUIT, USR1 and USR2 to the sandbox's PID 1,
reads back the payload's effective state once it has started, waits, and
tears down: cgroups and the runtime folder. Mounts need no teardown: they
live only in the sandbox's mount namespace and vanish with it.

The supervisor holds no threads (a user namespace needs a single-threaded
caller) and imports nothing heavy.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import NamedTuple

from ..errors import (CommandNotExecutable, CommandNotFound, HostSupportError,
                      SetupError)
from . import _kernel as k, cgroups
from .child import FORWARDED_SIGNALS, first_child
from .plan import LaunchPlan


class LaunchResult(NamedTuple):
    """How a sandbox ended.

    ``status``: the payload's exit status, or 128+N after signal N.
    ``effective``: the payload's state read back from /proc after it
    started (see `read_effective`), or None when it exited first.
    """

    sandbox_id: str
    status: int
    signal: int | None
    duration_ms: float
    effective: dict | None = None
    missing: tuple[str, ...] = ()
    leftovers: tuple[str, ...] = ()


def _pipe():
    return os.pipe2(os.O_CLOEXEC)


def _read_line(fd: int) -> bytes:
    out = b""
    while not out.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        out += chunk
    return out


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        c = os.read(fd, 65536)
        if not c:
            return b"".join(chunks)
        chunks.append(c)


def _ensure_stdio() -> None:
    """Open /dev/null on any of fds 0, 1, 2 the caller closed, so that no
    pipe of ours lands there and becomes the payload's stdin/out/err."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            nfd = os.open("/dev/null", os.O_RDWR)
            if nfd != fd:
                os.dup2(nfd, fd, inheritable=True)
                os.close(nfd)


def prepare_base(plan: LaunchPlan) -> None:
    """Create the runtime folder and the mount points the child needs,
    owned by the sandbox's root so it can use them after setresuid."""
    os.makedirs(os.path.dirname(plan.base), mode=0o711, exist_ok=True)
    os.mkdir(plan.base, 0o700)
    for sub in ("root", "scratch"):
        os.mkdir(os.path.join(plan.base, sub), 0o700)
    if plan.idmap is not None and os.geteuid() == 0:
        for p in (plan.base, os.path.join(plan.base, "root"), os.path.join(plan.base, "scratch")):
            os.chown(p, plan.idmap.host_uid, plan.idmap.host_gid)


def remove_base(base: str) -> list[str]:
    """Remove the runtime folder; returns what could not be removed."""
    try:
        # The usual case: only the empty mount points `prepare_base` made (the
        # tmpfs was in the sandbox's mount namespace). rmdir removes them
        # without importing shutil (and its compression modules, ~1.5 ms).
        for sub in ("root", "scratch"):
            os.rmdir(os.path.join(base, sub))
        os.rmdir(base)
        return []
    except OSError:
        pass                # anything else: remove the whole tree
    import shutil
    try:
        shutil.rmtree(base)
    except FileNotFoundError:
        pass
    except OSError as e:
        return [f"{base}: {e.strerror}"]
    return []


def _write_maps(pid: int, plan: LaunchPlan) -> None:
    m = plan.idmap
    if m.deny_setgroups:
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(m.uid_map)
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(m.gid_map)


def _idmapped_layers(pid: int, plan: LaunchPlan) -> list[int]:
    """Detached, read-only copies of the image's layer folders, id-mapped
    through the sandbox's user namespace, so that files the store owns as
    host uid/gid 0 belong to the sandbox's root (copy-up into the upper
    layer works; the layers themselves stay read-only). Empty when the
    kernel or the file system cannot id-map: the layers are then used as
    they are (owned by an unmapped id inside)."""
    layers = [p for op in plan.mounts if op.op == "overlay" for p in op.source.split(":")]
    fds: list[int] = []
    userns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for p in layers:
            fd = k.open_tree(p)
            fds.append(fd)
            k.mount_setattr_idmap(fd, userns, k.MOUNT_ATTR_RDONLY | k.MOUNT_ATTR_NOSUID
                                  | k.MOUNT_ATTR_NODEV)
    except OSError:
        for fd in fds:
            os.close(fd)
        return []
    finally:
        os.close(userns)
    return fds


def _error_from_child(raw: bytes, plan: LaunchPlan) -> Exception:
    try:
        info = json.loads(raw.decode().splitlines()[0])
    except (ValueError, IndexError):
        return SetupError("the sandbox failed during setup without saying why", step="unknown")
    step, msg, status = info.get("step"), info.get("message"), info.get("status", 125)
    if status == 127:
        return CommandNotFound(f"{plan.argv[0]}: command not found in the sandbox",
                               hint="check the path, or the PATH in the profile's process.env")
    if status == 126:
        return CommandNotExecutable(f"{plan.argv[0]}: cannot execute in the sandbox: {msg}",
                                    hint="check it is an executable file for this machine")
    hint = _HINTS.get(step.split(" ")[0] if step else "", None)
    return SetupError(f"sandbox setup failed at step '{step}': {msg}", step=step,
                      errno=info.get("errno"), hint=hint)


_HINTS = {
    "unshare": "user namespaces may be disabled: sysctl kernel.unprivileged_userns_clone=1 "
               "(or user.max_user_namespaces > 0)",
    "overlay": "the root folder must be readable by the sandbox's root user; "
               "make it and its parents world-searchable (chmod o+rx)",
    "bind": "the source must be reachable by the sandbox's root user (chmod o+rx its parents)",
    "seccomp": "the kernel refused the seccomp filter; see 'sandbox run --dry-run'",
    "landlock": "mark landlock optional in the profile if this kernel cannot apply it",
}


def read_effective(pid: int) -> dict | None:
    """The payload's kernel state as the kernel reports it (proc(5)):
    CapInh/CapPrm/CapEff/CapBnd/CapAmb (hex), NoNewPrivs, Seccomp,
    Seccomp_filters, uid_map, gid_map and the namespaces that differ from
    the supervisor's.

    All or nothing: None when the process has exited or is exiting before
    every value could be read (a dying task loses its namespace links
    first, and a partial read would claim namespaces are shared).
    """
    try:
        differ = []
        for ns in ("user", "mnt", "pid", "net", "uts", "ipc", "cgroup"):
            if os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"):
                differ.append(ns)
        with open(f"/proc/{pid}/uid_map") as f:
            uid_map = " ".join(f.read().split())
        with open(f"/proc/{pid}/gid_map") as f:
            gid_map = " ".join(f.read().split())
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
    except OSError:
        return None
    out: dict = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            out[key] = value.strip()
        elif key in ("NoNewPrivs", "Seccomp", "Seccomp_filters"):
            out[key] = int(value.strip())
        elif key == "State" and value.split()[:1] in (["Z"], ["X"]):
            return None                     # exiting: the links above may be stale
    out["uid_map"], out["gid_map"] = uid_map, gid_map
    out["namespaces_differ"] = differ
    return out


def _payload_pid(pid1: int) -> int | None:
    try:
        with open(f"/proc/{pid1}/task/{pid1}/children") as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None
    except (OSError, ValueError):
        return None


def _crash_point(name: str) -> None:
    """TEST HOOK (issue 6): with ``SANDBOX_TEST_CRASH_AT=<name>`` in its
    environment the supervisor SIGKILLs itself at the named point, so tests
    can check that `sandbox gc` undoes a crash at every stage. Inert otherwise."""
    if os.environ.get("SANDBOX_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def launch(plan: LaunchPlan, *, readback: bool = True, on_started=None,
           on_forked=None, wait=None, on_confined=None) -> LaunchResult:
    """Run the plan to completion and return how it ended.

    ``on_forked()`` runs in the supervisor while the child sets up (the
    audit log opens then); ``on_started(effective: dict | None,
    payload_pid: int | None)`` once the payload has been exec'd (the audit
    launch record). ``wait(c_pid) -> (pid, status)`` replaces the final
    ``os.waitpid`` (the detached supervisor copies the payload's output to
    its log meanwhile). ``on_confined(effective, payload_pid)`` runs while
    the fully confined payload waits just before execve (the OCI runtime's
    create/start); execve follows when it returns, and if it raises, the
    sandbox is killed and the error re-raised.
    Raises `SetupError`, `CommandNotFound`, `CommandNotExecutable` or
    `HostSupportError`; in every case nothing of the sandbox is left.
    """
    t0 = time.monotonic()
    missing = list(plan.missing)
    cg = plan.cgroup
    leftovers: list[str] = []
    if cg is not None:
        try:
            cgroups.apply_create(cg)
        except OSError as e:
            raise HostSupportError(f"cannot create the sandbox's cgroup: {e.strerror}",
                                   hint="mark cgroups optional in the profile, or run as root "
                                        "on a host with the memory and pids controllers") from None
        _crash_point("cgroup-created")
    try:
        prepare_base(plan)
    except OSError as e:
        if cg is not None:
            cgroups.remove(cg)
        raise SetupError(f"cannot create the runtime folder {plan.base}: {e.strerror}",
                         step="runtime folder") from None
    _crash_point("base-created")

    _ensure_stdio()
    ready_r, ready_w = _pipe()
    go_r, go_w = _pipe()
    err_r, err_w = _pipe()
    resume_r, resume_w = _pipe()     # read-back handshake before execve
    # image layers and --rootfs folders: P hands C id-mapped copies of them
    # (see _idmapped_layers), so the sandbox's root owns what host root owns
    idm_p = idm_c = None
    if plan.root_kind in ("layers", "dir") and plan.idmap is not None and os.geteuid() == 0:
        import socket
        idm_p, idm_c = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pending: list[int] = []
    effective = None
    net_handle = None
    target = {"pid": None, "stops": 0}

    def forward(signum, _frame):
        if signum in (signal.SIGINT, signal.SIGTERM):
            target["stops"] += 1
        if target["pid"] is None:
            pending.append(signum)
            return
        # a payload that ignores two requests to stop is killed at the
        # third: SIGKILL to PID 1 ends the whole pid namespace
        sig = signal.SIGKILL if target["stops"] >= 3 else signum
        try:
            os.kill(target["pid"], sig)
        except ProcessLookupError:
            pass

    old_handlers = {s: signal.signal(s, forward) for s in FORWARDED_SIGNALS}
    parent = os.getpid()
    c_pid = None
    try:
        c_pid = os.fork()
        if c_pid == 0:
            try:
                for fd in (ready_r, go_w, err_r, resume_w):
                    os.close(fd)
                if idm_p is not None:
                    idm_p.close()
                first_child(plan, parent, ready_w, go_r, err_w, cgroups.join, layers_sock=idm_c,
                            resume_r=resume_r)
            finally:
                os._exit(125)   # a forked child never returns into the caller
        for fd in (ready_w, go_r, err_w, resume_r):
            os.close(fd)
        if idm_c is not None:
            idm_c.close()
        _crash_point("forked")
        if on_forked is not None:
            on_forked()
        error = None
        if os.read(ready_r, 1) != b"U":
            error = _error_from_child(_read_all(err_r), plan)
        else:
            _crash_point("unshared")
            try:
                if plan.idmap is not None:
                    _write_maps(c_pid, plan)
                _crash_point("maps-written")
            except OSError as e:
                error = SetupError(f"cannot write the sandbox's id maps: {e.strerror}",
                                   step="uid_map", errno=e.errno,
                                   hint="check /etc/subuid and /etc/subgid")
                os.kill(c_pid, signal.SIGKILL)
            else:
                if plan.net is not None:
                    # bridge networking: veth into the child's network
                    # namespace, addresses, routes, port forwards (sandbox.net)
                    try:
                        from ..net import attach
                        net_handle = attach(plan.net, c_pid)
                    except Exception as e:  # noqa: BLE001 - reported, child killed
                        error = e
                        os.kill(c_pid, signal.SIGKILL)
                if error is None and idm_p is not None:
                    import socket
                    fds = _idmapped_layers(c_pid, plan)
                    try:
                        socket.send_fds(idm_p, [b"L"], fds)
                    finally:
                        for fd in fds:
                            os.close(fd)
                if error is None:
                    os.write(go_w, b"G")
                    _crash_point("go-sent")
        os.close(go_w)
        if error is None:
            line = _read_line(ready_r)
            if line.startswith(b"P"):
                target["pid"] = int(line[1:])
                _crash_point("pid1-known")
                for s in pending:
                    forward(s, None)
            ppid = eff = None
            first = _read_line(err_r)
            if first == b"S\n":
                # the payload is fully confined and waits before execve:
                # read its state now, so even /bin/true cannot race us
                ppid = _payload_pid(target["pid"]) if target["pid"] else None
                eff = read_effective(ppid) if (readback and ppid) else None
                if on_confined is not None:
                    try:
                        on_confined(eff, ppid)
                    except BaseException:
                        os.kill(c_pid, signal.SIGKILL)
                        raise
                os.write(resume_w, b"X")
                first = b""
            os.close(resume_w)
            resume_w = None
            raw = first + _read_all(err_r)  # EOF: the payload was exec'd, or failed
            if raw:
                error = _error_from_child(raw, plan)
            elif on_started is not None or readback:
                _crash_point("exec-done")
                effective = eff
                if on_started is not None:
                    on_started(eff, ppid)
        if resume_w is not None:
            os.close(resume_w)
            resume_w = None
        os.close(ready_r)
        os.close(err_r)
        _, status = os.waitpid(c_pid, 0) if wait is None else wait(c_pid)
        c_pid = None
        _crash_point("reaped")
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        if error is not None:
            raise error
        sig = code - 128 if code > 128 else None
        return LaunchResult(plan.sandbox_id, code, sig, (time.monotonic() - t0) * 1000,
                            effective, tuple(missing), tuple(leftovers))
    finally:
        if resume_w is not None:
            os.close(resume_w)
        if c_pid is not None:       # interrupted: make sure nothing survives
            try:
                os.kill(c_pid, signal.SIGKILL)
                os.waitpid(c_pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        for s, h in old_handlers.items():
            signal.signal(s, h)
        if idm_p is not None:
            idm_p.close()
        _crash_point("teardown")
        if net_handle is not None:
            from ..net import detach
            leftovers += detach(net_handle)
        if cg is not None:
            leftovers += cgroups.remove(cg)
        leftovers += remove_base(plan.base)
        _crash_point("base-removed")
