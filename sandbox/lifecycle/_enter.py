"""``sandbox enter``: run a command inside a running sandbox, confined as
its payload is.

Three processes, as nsenter(1) does it, plus the payload's confinement:

  E0  the caller: builds the confinement steps (`build_enter_steps`, pure),
      forks E1 and waits (stays a plain host process, so the library call
      works from any program).
  E1  makes itself non-dumpable FIRST (its /proc/<pid>/{exe,fd,mem,environ}
      then need CAP_SYS_PTRACE over the host's user namespace), joins the
      sandbox's cgroups, opens /proc/<pid1>/ns/* and /proc/<pid1>/root while
      it still is host root, then execs the compiled executor
      (``sandbox-exec``, the one `run`'s payload uses) with the steps
      setns (user first, then mnt, pid, net, uts, ipc, cgroup), chroot
      (fchdir(root fd) + chroot(".")), fork (a pid namespace applies to
      children only) and the confinement steps. Executed on the host side,
      its memory belongs to the host's user namespace, and it is not
      dumpable: nothing in the sandbox can read or trace it. The parent
      stays outside the sandbox's pid namespace, forwards signals and
      exits with E2's status.
  E2  the executor's child, inside every namespace: the payload's own
      confinement steps (setsid, workdir, capabilities, ids, no_new_privs,
      the same Landlock rules, the exec label where SELinux is active, the
      same seccomp BPF from ``confine.json``, written by the supervisor,
      mode 0600), then execve of the command with the payload's environment.

After execve E2 is an ordinary process of the sandbox in a Landlock domain
of its own: the payload (in another domain) cannot ptrace it nor read its
/proc/<pid>/exe or fd (Landlock's ptrace restriction), and before execve
it is not dumpable.
"""

from __future__ import annotations

import base64
import json
import os
import signal
from types import SimpleNamespace

from ..errors import CommandNotExecutable, CommandNotFound, SandboxError, SetupError
from ..runtime import state as st

_NS_ORDER = ("user", "mount", "pid", "net", "uts", "ipc", "cgroup")


def enter(paths, rec: dict, argv: list[str]) -> int:
    """Run ``argv`` in the running sandbox ``rec``; its exit status (128+N
    after signal N). `SandboxError` when it is not running."""
    if st.effective_state(paths, rec) != "running" or not st.same_process(rec.get("pid1")):
        raise SandboxError(f"sandbox {rec['id']} is not running")
    conf = st.read_json(st.run_dir(paths, rec["id"]) / "confine.json")
    if conf is None:
        raise SetupError(f"sandbox {rec['id']}: its confinement record is missing",
                         step="enter")
    argv = list(argv) or ["/bin/sh"]
    # Everything E1/E2 will need after chroot is imported now: the sandbox's
    # root does not hold this interpreter's libraries.
    from ..runtime import _kernel as k
    from ..runtime import child  # noqa: F401
    steps = build_enter_steps(conf, argv)   # pure, before any fork
    from ..runtime import spawn, steps as _steps, wire  # noqa: F401 - used in E1
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            _e1(rec, conf, steps, w, k)
        except BaseException as e:  # noqa: BLE001
            try:
                os.write(w, json.dumps({"message": getattr(e, "message", None) or str(e),
                                        "step": getattr(e, "step", None)}).encode())
            except OSError:
                pass
            os._exit(125)
        os._exit(125)
    os.close(w)
    old = {s: signal.signal(s, lambda n, _f: _fwd(pid, n))
           for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)}
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    raw = b""
    while True:
        c = os.read(r, 65536)
        if not c:
            break
        raw += c
    os.close(r)
    if raw:
        try:
            info = json.loads(raw)
        except ValueError:
            info = {"message": raw.decode(errors="replace")}
        if info.get("status") == 127:
            raise CommandNotFound(f"{argv[0]}: command not found in sandbox "
                                  f"{rec['id']}")
        if info.get("status") == 126:
            raise CommandNotExecutable(f"cannot execute {argv[0]} in sandbox "
                                       f"{rec['id']}: {info.get('message')}")
        raise SetupError(f"cannot enter sandbox {rec['id']}: {info.get('message')}",
                         step=info.get("step") or "enter")
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _fwd(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class _Step(Exception):
    def __init__(self, step, err):
        super().__init__(f"{step}: {getattr(err, 'strerror', None) or err}")
        self.step = step
        self.message = str(self)


def _e1(rec: dict, conf: dict, steps: tuple, err_w: int, k) -> None:
    """E1: opens what the sandbox's processes cannot give it, then becomes
    the executor, which joins and confines. Never returns."""
    step = "non-dumpable"
    try:
        k.prctl(k.PR_SET_DUMPABLE, 0)                # before anything of the sandbox
        pid1 = rec["pid1"]["pid"]
        step = "join cgroups"
        for procs in conf.get("cgroup_procs") or ():
            with open(procs, "w") as f:
                f.write("0")
        step = "open namespaces"
        try:
            target = rec["pid1"]
            fds, root_fd = _open_ns(pid1, conf, k)
        except PermissionError:
            # Rootless: PID 1 is not dumpable and its memory belongs to the
            # host's user namespace, where this user has no CAP_SYS_PTRACE.
            # The payload's namespaces and root are the same ones; the
            # command gets the same confinement either way.
            target = rec.get("payload")
            if not st.same_process(target):
                raise
            fds, root_fd = _open_ns(target["pid"], conf, k)
        if not st.same_process(target):             # pid reuse between check and open
            raise OSError(3, "the sandbox's PID 1 has exited")
        step = "start executor"
        from ..runtime.child import FORWARDED_SIGNALS, close_fds_but, exec_executor
        from ..runtime.spawn import open_executor_for
        from ..runtime.steps import ChrootFd, ForkWait, JoinNamespaces
        # executed here, on the host side, so its memory belongs to the
        # host's user namespace: nothing in the sandbox can read it
        executor = open_executor_for(
            (JoinNamespaces(tuple((fd, k.NAMESPACE_FLAGS[ns]) for ns, fd in fds)),
             ChrootFd(root_fd), ForkWait()) + tuple(steps))
        keep = (err_w, root_fd, *executor, *(fd for _, fd in fds))
        close_fds_but(*keep)
        for fd in (root_fd, *(fd for _, fd in fds)):
            os.set_inheritable(fd, True)
        for s in FORWARDED_SIGNALS + (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(s, signal.SIG_DFL)
    except BaseException as e:  # noqa: BLE001
        raise _Step(step, e) from None
    pause = os.environ.get("SANDBOX_TEST_ENTER_PAUSE")
    # TEST HOOK: the executor holds, confined, just before execve (tests probe it)
    extra = ("--test-pause-ms", str(int(float(pause) * 1000))) if pause else ()
    exec_executor(executor, err_w, None, extra)


def _open_ns(pid: int, conf: dict, k):
    fds = []
    try:
        for ns in _NS_ORDER:
            if ns in conf["namespaces"]:
                fds.append((ns, os.open(f"/proc/{pid}/ns/{k.NAMESPACE_FILES[ns]}",
                                        os.O_RDONLY | os.O_CLOEXEC)))
        return fds, os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except BaseException:
        for _, fd in fds:
            os.close(fd)
        raise


def build_enter_steps(conf: dict, argv: list[str]) -> tuple:
    """The payload's confinement steps (`runtime.steps`) for ``argv``, from
    the supervisor's confinement record: the same values, so the same
    functions perform them (confinement exists once). Pure."""
    from ..runtime._landlock import LandlockRule
    from ..runtime.plan import SeccompPlan
    from ..runtime.steps import build_confinement
    bpf = base64.b64decode(conf["seccomp"]) if conf.get("seccomp") else None
    fields = {
        "workdir": conf["workdir"], "capabilities": tuple(conf["capabilities"]),
        "uid": conf["uid"], "gid": conf["gid"], "no_new_privs": conf["no_new_privs"],
        "landlock_abi": conf.get("landlock_abi") or 0,
        "landlock": tuple(LandlockRule(r["path"], r["access"], tuple(r.get("excludes") or ()))
                          for r in conf.get("landlock") or ()),
        "exec_label": conf.get("exec_label"),
        "seccomp": SeccompPlan(bpf, "", "confine.json", "", (), len(bpf) // 8)
        if bpf is not None else None,
        "argv": tuple(argv), "env": tuple((kk, v) for kk, v in conf["env"]),
        # only whether setgroups is allowed matters to the ids step
        "idmap": None if conf["may_setgroups"] else _DENY_SETGROUPS,
    }
    return build_confinement(SimpleNamespace(**fields))


_DENY_SETGROUPS = SimpleNamespace(deny_setgroups=True)
