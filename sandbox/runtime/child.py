"""The sandbox side of a launch: what the forked children do, in order.

Three processes run here (P is the supervisor, `spawn`):

  C   the first child. (1) joins the cgroups, (2) changes into the runtime
      folder, (3) unshares every new namespace at once, (4) tells P, waits
      for P to write the id maps, (5) becomes the sandbox's root (setresuid
      inside the namespace), (6) forks C2, reports C2's host pid and waits
      for it, exiting with its status.
  C2  PID 1 of the new pid namespace, later the reaper. (7) brings up
      loopback, (8) private propagation, (9) builds the root file system
      from the plan's mount steps, (10) pivot_root, (11) hostname, rlimits,
      (12) closes every fd above 2 but the error pipe and the executor's,
      then spawns C3 (posix_spawn of the executor, no interpreter copy)
      and reaps until C3 exits, forwarding signals to it.
  C3  the payload: the compiled executor (``csrc/sandbox-exec.c``)
      with the plan's confinement steps (`steps`, `CONFINEMENT_KINDS`, on
      a memfd in the `wire` format), which performs them in order: (13)
      new session (TIOCSTI cannot reach the caller's terminal), (14)
      workdir, (15) capabilities: bounding, ambient, (16) uid/gid, then
      inheritable, permitted, effective, (17) no_new_privs, (18) Landlock,
      the SELinux exec label where active, (19) the seccomp filter, last,
      then (20) execve. `enter` runs the same executor.

Any failure before execve is written to the error pipe as one JSON line
naming the step, and the process exits 125 (126/127 for execve); the
executor writes the same line. The error
pipe is close-on-exec: P reads EOF exactly when the payload has started.

Setup runs as the sandbox's mapped root: it can only reach host paths that
id can reach; the runtime folder is entered (chdir) before unshare so its
parents need not be searchable.
"""

from __future__ import annotations

import errno as _errno
import fcntl
import json
import os
import resource
import signal
import socket
import stat
import struct

# Imported here, not where used: after pivot_root the payload's root file
# system no longer holds this interpreter's libraries.
import prctl

from . import _kernel as k
from ..capabilities import CAPABILITIES, last_cap
from .plan import LaunchPlan, MountOp

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)


class StepError(Exception):
    def __init__(self, step: str, err: BaseException):
        super().__init__(step)
        self.step = step
        self.err = err


def _report(errfd: int, step: str, err: BaseException, status: int = 125) -> None:
    """Write one JSON line describing the failure to P and exit."""
    msg = {"step": step, "errno": getattr(err, "errno", None),
           "message": getattr(err, "strerror", None) or str(err), "status": status}
    try:
        os.write(errfd, (json.dumps(msg) + "\n").encode())
    except OSError:
        pass
    os._exit(status)


# ---------------------------------------------------------------- C: step 1-6

def first_child(plan: LaunchPlan, parent_pid: int, ready_w: int, go_r: int, err_w: int,
                join_cgroups, layers_sock=None, resume_r: int | None = None,
                executor: tuple[int, int] | None = None) -> None:
    """Body of C. Never returns."""
    step = "start"
    try:
        for s in FORWARDED_SIGNALS:                  # P forwards these to C2
            signal.signal(s, signal.SIG_IGN)
        step = "parent-death signal"
        k.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:
            os._exit(125)
        if plan.cgroup is not None:                  # 1
            step = "join cgroups"
            join_cgroups(plan.cgroup)
        step = f"chdir {plan.base}"                  # 2
        os.chdir(plan.base)
        if plan.oom_score_adj is not None:
            step = "oom_score_adj"
            apply_oom_score_adj(plan.oom_score_adj)
        if plan.join_namespaces:
            step = "join namespaces"
            apply_join_namespaces(plan.join_namespaces)
        step = "unshare " + ",".join(plan.namespaces)  # 3
        flags = 0
        for ns in plan.namespaces:
            flags |= k.NAMESPACE_FLAGS[ns]
        k.unshare(flags)
        os.write(ready_w, b"U")                      # 4
        if os.read(go_r, 1) != b"G":
            os._exit(125)                             # P gave up
        os.close(go_r)
        step = "open mount sources"
        sources = _open_sources(plan)
        idmapped: set[str] = set()     # lower folders received as id-mapped detached mounts
        if layers_sock is not None:
            step = "receive id-mapped layers"
            import socket
            _msg, fds, _f, _a = socket.recv_fds(layers_sock, 1, 512)
            layers_sock.close()
            if fds:
                # detached mounts, attached under scratch/ by _build_root
                lowers = [p for op in plan.mounts if op.op == "overlay"
                          for p in op.source.split(":")]
                for p, fd in zip(lowers, fds):
                    os.close(sources[p])
                    sources[p] = fd
                idmapped.update(lowers)
        if plan.idmap is not None and not plan.idmap.deny_setgroups:  # 5 (subordinate ids)
            step = "become the sandbox's root"
            if not plan.idmap.deny_setgroups:
                os.setgroups([])
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            # the id change cleared the parent-death signal: re-arm it, or a
            # SIGKILLed supervisor leaves the sandbox running (issue 6)
            k.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent_pid:
                os._exit(125)
        step = "fork PID 1"                          # 6
        pid = os.fork()
    except BaseException as e:  # noqa: BLE001 - everything goes to P as data
        _report(err_w, step, e)
    if pid == 0:
        try:
            os.close(ready_w)
            pid1(plan, err_w, sources, idmapped, resume_r, executor)
        finally:
            os._exit(125)       # a forked child never returns into the caller
    os.close(err_w)
    os.write(ready_w, f"P{pid}\n".encode())
    os.close(ready_w)
    exit_like(pid)


def exit_like(pid: int) -> None:
    """Wait for child ``pid`` and exit with its status (128+N after signal
    N), the container convention. Never returns."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            os._exit(125)
    code = os.waitstatus_to_exitcode(status)
    os._exit(128 - code if code < 0 else code)


# --------------------------------------------------------------- C2: step 7-12

def _reopen_checked(path: str, fd: int) -> int:
    """``path`` opened in this mount namespace, as the fd the launch stage
    opened it (``fd``, inherited through fork; issue 13 item 9): no
    symbolic link followed, and the very inode of ``fd`` or an error.

    Why not ``fd`` itself: it holds a mount of the caller's namespace, and
    a bind mount takes its source only from the caller's own namespace
    (EINVAL). The new lookup cannot be redirected: a link is refused, and
    a name swapped for another folder fails the device and inode check.
    """
    import errno
    new = k.openat2(path, os.O_PATH | os.O_CLOEXEC,
                    k.RESOLVE_NO_SYMLINKS | k.RESOLVE_NO_MAGICLINKS)
    a, b = os.fstat(new), os.fstat(fd)
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
        os.close(new)
        raise OSError(errno.ESTALE, f"{path} was replaced after it was checked")
    return new


def _open_sources(plan: LaunchPlan) -> dict[str, int]:
    """O_PATH fds of every host path the mounts read, opened while this
    process still has the caller's host identity.

    After step 5 the sandbox's root (a subordinate host id) could not
    search, say, a 0700 state folder; an fd taken now, in the new mount
    namespace, is reached through /proc/self/fd without any path search.
    """
    fds: dict[str, int] = {}
    for op in plan.mounts:
        paths = op.source.split(":") if op.op == "overlay" else \
            [op.source] if op.op in ("bind", "root-bind") else []
        fd = getattr(op, "fd", None)
        for p in paths:
            if p not in fds:
                fds[p] = _reopen_checked(p, fd) if fd is not None and len(paths) == 1 else \
                    os.open(p, os.O_PATH | os.O_CLOEXEC)
    return fds


def pid1(plan: LaunchPlan, err_w: int, sources: dict[str, int],
         idmapped: frozenset[str] | set[str] = frozenset(),
         resume_r: int | None = None, executor: tuple[int, int] | None = None) -> None:
    """Body of C2: PID 1 of the sandbox. Never returns."""
    step = "start"
    try:
        step = "parent-death signal"
        k.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)
        os.setsid()          # out of the caller's process group: ^C reaches P only
        k.set_cmdline("sandbox-init")   # the host's command line stays outside
        if "net" in plan.namespaces:
            step = "bring up lo"                     # 7
            _loopback_up()
        if plan.sysctls:
            # before the root is built: /proc/sys here is the host's /proc
            # mount, but namespaced sysctls resolve to this process's
            # (new) ipc, net and uts namespaces
            step = "sysctl"
            apply_sysctls(plan.sysctls)
        step = "private mount propagation"           # 8
        k.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
        _build_root(plan, sources, idmapped)         # 9
        step = "pivot_root"                          # 10
        os.chdir("root")
        k.pivot_root(".", ".")
        k.umount2(".", k.MNT_DETACH)
        os.chdir("/")
        if plan.root_propagation:
            step = f"root propagation {plan.root_propagation}"
            apply_root_propagation(plan.root_propagation)
        if "uts" in plan.namespaces or (plan.hostname and any(
                ns == "uts" for ns, _ in plan.join_namespaces)):   # 11
            step = "sethostname"
            k.sethostname(plan.hostname)
        for name, soft, hard in plan.rlimits:
            step = f"setrlimit {name}"
            resource.setrlimit(getattr(resource, name), (soft, hard))
        step = "close fds"                           # 12
        close_fds_but(err_w, resume_r, *(executor or ()))
        step = "start executor"
        if executor is None:
            raise OSError(_errno.ENOENT, "no executor given")
        pid = spawn_executor(executor, err_w, resume_r)
    except StepError as e:
        _report(err_w, e.step, e.err)
    except BaseException as e:  # noqa: BLE001
        _report(err_w, step, e)
    os.close(err_w)
    try:
        _reap(plan, pid)
    finally:
        os._exit(125)


def _reap(plan: LaunchPlan, payload_pid: int) -> None:
    def forward(signum, _frame):
        # to the payload's whole process group (it is a session leader), so
        # a shell's children get ^C too; the leader alone if it moved them
        try:
            os.killpg(payload_pid, signum)
        except ProcessLookupError:
            try:
                os.kill(payload_pid, signum)
            except ProcessLookupError:
                pass
    for s in FORWARDED_SIGNALS:
        signal.signal(s, forward)
    # PID 1 keeps nothing the payload could use: no capabilities, not
    # dumpable (so /proc/1/mem, /proc/1/fd stay closed to the payload).
    try:
        k.prctl(k.PR_SET_DUMPABLE, 0)
        _drop_capabilities(frozenset())
        k.prctl(k.PR_SET_NO_NEW_PRIVS, 1)
        k.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)   # cleared by the drop (issue 6)
    except Exception:  # noqa: BLE001 - the payload runs already; keep reaping
        pass
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == payload_pid:
            code = os.waitstatus_to_exitcode(status)
            os._exit(128 - code if code < 0 else code)


# -------------------------------------------------------------- C3: step 13-20

def spawn_executor(executor: tuple[int, ...], err_w: int, resume_r: int | None) -> int:
    """Start C3, the payload: ``sandbox-exec`` with the plan's confinement
    steps (13-20, on the memfd), which performs them in order and execs
    the payload. Returns its pid.

    posix_spawn (glibc: clone with CLONE_VM|CLONE_VFORK), not fork: no copy
    of this interpreter's address space, about 1-3.5 ms a launch. The path
    is the executor's own O_PATH fd under the sandbox's fresh /proc: the
    host path is out of reach after pivot_root. Signals Python or C
    ignore are reset (execve keeps SIG_IGN).

    With ``resume_r``, the fully confined executor says "S" on the error
    pipe and waits for the supervisor to read its state from /proc before
    execve: the state it reads is exactly the one execve carries over
    (no_new_privs keeps execve from adding anything), and a payload that
    exits at once cannot race the read-back.
    """
    exe_fd, plan_fd, *trace = executor         # trace: the test hook's fd, if any
    argv = _executor_argv(plan_fd, err_w, resume_r, trace)
    for fd in (plan_fd, err_w, resume_r, *trace):
        if fd is not None:
            os.set_inheritable(fd, True)
    return os.posix_spawn(f"/proc/self/fd/{exe_fd}", argv, {},
                          setsigdef=FORWARDED_SIGNALS + (signal.SIGPIPE, signal.SIGXFSZ))


def _executor_argv(plan_fd: int, err_w: int, resume_r: int | None, trace) -> list[str]:
    argv = ["sandbox-exec", "--plan-fd", str(plan_fd), "--error-fd", str(err_w)]
    if resume_r is not None:
        argv += ["--sync", str(resume_r)]
    if trace:
        argv += ["--trace", str(trace[0])]
    return argv


def exec_executor(executor: tuple[int, ...], err_w: int, resume_r: int | None,
                  extra: tuple[str, ...] = ()) -> None:
    """Replace this process by ``sandbox-exec`` reading the plan from the
    memfd; it makes ``err_w`` and ``resume_r`` close-on-exec again before
    the payload's execve. Never returns."""
    exe_fd, plan_fd, *trace = executor         # trace: the test hook's fd, if any
    argv = _executor_argv(plan_fd, err_w, resume_r, trace) + list(extra)
    try:
        for fd in (plan_fd, err_w, resume_r, *trace):
            if fd is not None:
                os.set_inheritable(fd, True)
        k.execveat(exe_fd, argv, {})
    except OSError as e:
        _report(err_w, "start executor", e)
    os._exit(125)


# ------------------------------------------------ PID 1's own drop

def _drop_capabilities(keep: frozenset[str], uid: int = 0, gid: int = 0,
                       may_setgroups: bool = True) -> None:
    """PID 1 keeps nothing: the bounding set first (dropping needs
    CAP_SETPCAP), ambient cleared, then the ids, then permitted,
    effective and inheritable. The payload's own drop is the executor's
    capabilities and ids steps (``csrc/sandbox-exec.c``)."""
    keep_nums = {CAPABILITIES[c] for c in keep}
    everything = list(range(last_cap() + 1))
    for n in everything:
        if n not in keep_nums:
            prctl.capbset_drop(n)
    k.clear_ambient_caps()
    if may_setgroups:
        os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if uid == 0:
        prctl.set_caps((sorted(keep_nums), [prctl.CAP_EFFECTIVE, prctl.CAP_PERMITTED], True),
                       ([n for n in everything if n not in keep_nums],
                        [prctl.CAP_EFFECTIVE, prctl.CAP_PERMITTED], False),
                       (everything, [prctl.CAP_INHERITABLE], False))
    else:
        prctl.set_caps((everything, [prctl.CAP_EFFECTIVE, prctl.CAP_PERMITTED,
                                     prctl.CAP_INHERITABLE], False))


def close_fds_but(*keep: int | None) -> None:
    """Close every fd above 2 except ``keep`` (close-on-exec pipes to P)."""
    first = 3
    for fd in sorted(f for f in keep if f is not None and f >= 3):
        if fd > first:          # neighbours leave nothing between them to close
            k.close_range(first, fd - 1)
        first = fd + 1
    k.close_range(first)


def apply_oom_score_adj(value: int) -> None:
    """OCI process.oomScoreAdj; before unshare, while this process still
    holds the caller's privilege to lower it."""
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(value))


def apply_join_namespaces(join: tuple[tuple[str, str], ...]) -> None:
    """OCI linux.namespaces[].path: setns into each, the user namespace
    first (it grants the capabilities the other joins need). Every file is
    opened before the first join, while the host's paths are still seen."""
    fds = [(ns, os.open(path, os.O_RDONLY | os.O_CLOEXEC)) for ns, path in join]
    try:
        for ns, fd in sorted(fds, key=lambda x: x[0] != "user"):
            k.setns(fd, k.NAMESPACE_FLAGS[ns])
    finally:
        for _, fd in fds:
            os.close(fd)


def apply_sysctls(sysctls: tuple[tuple[str, str], ...]) -> None:
    """OCI linux.sysctl (namespaced keys only, checked by the translator)."""
    for name, value in sysctls:
        path = "/proc/sys/" + name.replace(".", "/")
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)


_PROPAGATION = {"private": k.MS_PRIVATE, "slave": k.MS_SLAVE, "shared": 1 << 20,
                "unbindable": 1 << 17}


def apply_root_propagation(kind: str) -> None:
    """OCI linux.rootfsPropagation on the new root (after pivot_root)."""
    # recursive either way, as runc does: the root's submounts follow it
    k.mount(None, "/", None, _PROPAGATION[kind.lstrip("r")] | k.MS_REC)


def _loopback_up() -> None:
    """ifconfig lo up with SIOCGIFFLAGS/SIOCSIFFLAGS: no netlink library needed."""
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


# ---------------------------------------------------------- the mount steps

_FLAG_OPTS = {"ro": k.MS_RDONLY, "nosuid": k.MS_NOSUID, "nodev": k.MS_NODEV,
              "noexec": k.MS_NOEXEC}
_O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _split_options(options: str, default_flags: int) -> tuple[int, str]:
    flags, data = default_flags, []
    for opt in filter(None, options.split(",")):
        if opt in _FLAG_OPTS:
            flags |= _FLAG_OPTS[opt]
        elif opt in ("exec", "dev", "suid"):
            flags &= ~{"exec": k.MS_NOEXEC, "dev": k.MS_NODEV, "suid": k.MS_NOSUID}[opt]
        else:
            data.append(opt)
    return flags, ",".join(data)


def _open_inside(root_fd: int, path: str, create: str | None = None) -> int:
    """O_PATH fd of ``path`` inside the root, never following a symlink.

    ``create``: None, ``dir`` or ``file`` (mode 0755/0644) for a missing
    last component; missing parents are created as folders when ``create``
    is set. A symlink anywhere on the way is refused (ELOOP), so an image
    cannot redirect a mount onto a host path.
    """
    parts = [p for p in path.split("/") if p]
    fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            want_dir = not last or create == "dir"
            try:
                flags = _O_PATH_DIR if want_dir else (os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
                nfd = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                if create is None:
                    raise
                if want_dir:
                    os.mkdir(part, 0o755, dir_fd=fd)
                else:
                    os.close(os.open(part, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                                     | os.O_CLOEXEC, 0o644, dir_fd=fd))
                nfd = os.open(part, flags, dir_fd=fd)
            except NotADirectoryError:
                raise OSError(_errno.ELOOP, f"{path}: '{part}' is a symlink or not a folder") \
                    from None
            if not want_dir and stat.S_ISLNK(os.fstat(nfd).st_mode):
                os.close(nfd)
                raise OSError(_errno.ELOOP, f"{path} is a symlink")
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _locked_flags(path: str) -> int:
    """Flags a bind remount must keep: the kernel refuses to clear nosuid,
    nodev, noexec or atime flags locked by a more privileged namespace."""
    f = os.statvfs(path).f_flag
    out = 0
    for st, ms in ((os.ST_NOSUID, k.MS_NOSUID), (os.ST_NODEV, k.MS_NODEV),
                   (os.ST_NOEXEC, k.MS_NOEXEC), (os.ST_NOATIME, k.MS_NOATIME),
                   (os.ST_NODIRATIME, k.MS_NODIRATIME), (os.ST_RELATIME, k.MS_RELATIME)):
        if f & st:
            out |= ms
    return out


def _remount(root_fd: int, path: str, flags: int) -> None:
    """Bind-remount the mount now at ``path`` with ``flags`` added.

    The path is opened afresh: an fd taken before the mount names the
    covered folder, not the new mount's root, and the kernel would refuse.
    """
    fd = _open_inside(root_fd, path) if path != "/" else os.open("root", _O_PATH_DIR)
    try:
        target = _fdpath(fd)
        k.mount(None, target, None, k.MS_REMOUNT | k.MS_BIND | flags | _locked_flags(target))
    finally:
        os.close(fd)


def _build_root(plan: LaunchPlan, sources: dict[str, int],
                idmapped: frozenset[str] | set[str] = frozenset()) -> None:
    """Execute the plan's mount steps under ``./root`` (cwd is the runtime folder)."""
    root_fd = None
    for op in plan.mounts:
        step = op.describe().split("  #")[0].strip()
        try:
            if op.op == "root":
                k.mount("tmpfs", "root", "tmpfs", k.MS_NOSUID | k.MS_NODEV, "mode=755")
                root_fd = os.open("root", _O_PATH_DIR)
                continue
            if op.op == "root-bind":
                # the OCI bundle's root: used as it is, writes land in it
                k.mount(_fdpath(sources[op.source]), "root", None, k.MS_BIND | k.MS_REC)
                root_fd = os.open("root", _O_PATH_DIR)
                continue
            if op.op == "overlay":
                k.mount("tmpfs", "scratch", "tmpfs", k.MS_NOSUID | k.MS_NODEV, "mode=700")
                os.mkdir("scratch/upper", 0o755)
                os.mkdir("scratch/work", 0o700)
                if idmapped:
                    for i, p in enumerate(op.source.split(":")):
                        os.mkdir(f"scratch/l{i}", 0o700)
                        k.move_mount(sources[p], f"scratch/l{i}")
                        os.close(sources[p])
                        sources[p] = os.open(f"scratch/l{i}", _O_PATH_DIR)
                lowers = ":".join(_fdpath(sources[p]) for p in op.source.split(":"))
                data = f"lowerdir={lowers},upperdir=scratch/upper,workdir=scratch/work"
                try:
                    k.mount("overlay", "root", "overlay", k.MS_NOSUID | k.MS_NODEV,
                            data + ",userxattr")
                except OSError as e:
                    if e.errno != _errno.EINVAL:
                        raise
                    k.mount("overlay", "root", "overlay", k.MS_NOSUID | k.MS_NODEV, data)
                root_fd = os.open("root", _O_PATH_DIR)
                continue
            _apply_op(root_fd, op, sources)
        except OSError as e:
            raise StepError(step, e) from None


def _apply_op(root_fd: int, op: MountOp, sources: dict[str, int]) -> None:
    t = op.target
    if op.op == "mkdir":
        parent = _open_inside(root_fd, os.path.dirname(t), create="dir")
        try:
            os.mkdir(os.path.basename(t), int(op.options or "0755", 8), dir_fd=parent)
        except FileExistsError:
            pass                # an image's own folder is left as it is
        finally:
            os.close(parent)
    elif op.op == "symlink":
        parent = _open_inside(root_fd, os.path.dirname(t), create="dir")
        try:
            os.symlink(op.source, os.path.basename(t), dir_fd=parent)
        except FileExistsError:
            pass
        finally:
            os.close(parent)
    elif op.op == "file":
        parent = _open_inside(root_fd, os.path.dirname(t), create="dir")
        try:
            fd = os.open(os.path.basename(t), os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                         | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=parent)
            os.write(fd, op.source.encode())
            os.close(fd)
        finally:
            os.close(parent)
    elif op.op == "bind":
        src = _fdpath(sources[op.source])
        isdir = os.path.isdir(src)
        fd = _open_inside(root_fd, t, create="dir" if isdir else "file")
        try:
            opts = set(op.options.split(","))
            flags = k.MS_BIND | (k.MS_REC if "rec" in opts or isdir else 0)
            k.mount(src, _fdpath(fd), None, flags)
        finally:
            os.close(fd)
        if "dev" not in opts:
            _remount(root_fd, t, k.MS_NOSUID | k.MS_NODEV | (k.MS_RDONLY if "ro" in opts else 0))
    elif op.op == "tmpfs":
        fd = _open_inside(root_fd, t, create="dir")
        try:
            flags, data = _split_options(op.options, k.MS_NOSUID | k.MS_NODEV)
            k.mount(op.source or "tmpfs", _fdpath(fd), "tmpfs", flags, data)
        finally:
            os.close(fd)
    elif op.op == "proc":
        fd = _open_inside(root_fd, t, create="dir")
        try:
            try:
                k.mount("proc", _fdpath(fd), "proc", k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC)
            except PermissionError:
                # the host's pid namespace is shared: bind the host's /proc
                k.mount("/proc", _fdpath(fd), None, k.MS_BIND | k.MS_REC)
        finally:
            os.close(fd)
    elif op.op == "sysfs":
        fd = _open_inside(root_fd, t, create="dir")
        try:
            try:
                k.mount("sysfs", _fdpath(fd), "sysfs",
                        k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC)
            except PermissionError:
                # the host's network namespace is shared: sysfs cannot be
                # mounted anew, so bind the host's read-only
                k.mount("/sys", _fdpath(fd), None, k.MS_BIND | k.MS_REC)
                os.close(fd)
                fd = None
                _remount(root_fd, t, k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC)
        finally:
            if fd is not None:
                os.close(fd)
    elif op.op == "mknod":
        # OCI linux.devices outside a user namespace: "TYPE MAJOR MINOR MODE UID GID"
        typ, major, minor, mode, uid, gid = op.options.split()
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK,
                "p": stat.S_IFIFO}[typ]
        parent = _open_inside(root_fd, os.path.dirname(t), create="dir")
        try:
            name = os.path.basename(t)
            try:
                os.unlink(name, dir_fd=parent)
            except FileNotFoundError:
                pass
            os.mknod(name, kind | int(mode, 8), os.makedev(int(major), int(minor)),
                     dir_fd=parent)
            os.chown(name, int(uid), int(gid), dir_fd=parent, follow_symlinks=False)
            os.chmod(_fdpath(parent) + "/" + name, int(mode, 8))
        finally:
            os.close(parent)
    elif op.op == "mqueue":
        fd = _open_inside(root_fd, t, create="dir")
        try:
            flags, data = _split_options(op.options, k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC)
            k.mount("mqueue", _fdpath(fd), "mqueue", flags, data)
        finally:
            os.close(fd)
    elif op.op == "devpts":
        fd = _open_inside(root_fd, t, create="dir")
        try:
            k.mount("devpts", _fdpath(fd), "devpts", k.MS_NOSUID | k.MS_NOEXEC, op.options)
        finally:
            os.close(fd)
    elif op.op == "mask":
        try:
            fd = _open_inside(root_fd, t)
        except FileNotFoundError:
            return                       # nothing to mask
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                k.mount("tmpfs", _fdpath(fd), "tmpfs",
                        k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC, "size=0,mode=000")
            else:
                k.mount("/dev/null", _fdpath(fd), None, k.MS_BIND)
        finally:
            os.close(fd)
    elif op.op == "readonly":
        try:
            fd = _open_inside(root_fd, t)
        except FileNotFoundError:
            return
        try:
            k.mount(_fdpath(fd), _fdpath(fd), None, k.MS_BIND | k.MS_REC)
        finally:
            os.close(fd)
        _remount(root_fd, t, k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV)
    elif op.op == "remount-ro":
        _remount(root_fd, t, k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV)
    else:
        raise OSError(_errno.EINVAL, f"unknown mount step {op.op!r}")
