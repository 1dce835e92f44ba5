"""``sandbox enter``: run a command inside a running sandbox, confined as
its payload is.

Three processes, as nsenter(1) does it, plus the payload's confinement:

  E0  the caller: forks E1 and waits (stays a plain host process, so the
      library call works from any program).
  E1  makes itself non-dumpable FIRST (its /proc/<pid>/{exe,fd,mem,environ}
      then need CAP_SYS_PTRACE over the host's user namespace), joins the
      sandbox's cgroups, opens /proc/<pid1>/ns/* and /proc/<pid1>/root while
      it still is host root, then joins the namespaces (user first, then
      mnt, pid, net, uts, ipc, cgroup), fchdir(root fd) + chroot("."), and
      forks E2 (a pid namespace applies to children only). E1 is not in the
      sandbox's pid namespace: nothing inside can even name it.
  E2  closes every fd above 2, then the payload's steps 13-20: setsid, workdir,
      capabilities and ids (`child._drop_capabilities`), no_new_privs, the same
      Landlock rules, the same seccomp BPF (from ``confine.json``, written by
      the supervisor, mode 0600), execve with the payload's environment.

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
    import prctl  # noqa: F401
    from ..runtime import _kernel as k
    from ..runtime import _landlock  # noqa: F401
    from ..runtime.child import _drop_capabilities  # noqa: F401
    from ..capabilities import last_cap
    last_cap()
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            _e1(rec, conf, argv, w, k)
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
            raise CommandNotFound(f"{info.get('message')}: command not found in sandbox "
                                  f"{rec['id']}")
        if info.get("status") == 126:
            raise CommandNotExecutable(f"cannot execute {info.get('message')} in sandbox "
                                       f"{rec['id']}")
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


def _e1(rec: dict, conf: dict, argv: list[str], err_w: int, k) -> None:
    """E1: never returns."""
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
        for ns, fd in fds:
            step = f"setns {ns}"
            k.setns(fd, k.NAMESPACE_FLAGS[ns])
            os.close(fd)
        step = "chroot"
        os.fchdir(root_fd)
        os.chroot(".")
        os.close(root_fd)
        os.chdir("/")
        step = "fork"
        pid = os.fork()
    except BaseException as e:  # noqa: BLE001
        raise _Step(step, e) from None
    if pid == 0:
        try:
            _e2(conf, argv, err_w, k)
        except BaseException as e:  # noqa: BLE001
            try:
                os.write(err_w, json.dumps({"message": str(e),
                                            "step": getattr(e, "step", None)}).encode())
            except OSError:
                pass
        finally:
            os._exit(125)
    os.close(err_w)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, lambda n, _f: _fwd(pid, n))
    from ..runtime.child import exit_like
    exit_like(pid)


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


def _e2(conf: dict, argv: list[str], err_w: int, k) -> None:
    """E2, inside every namespace: the payload's confinement, then execve."""
    from ..runtime.child import FORWARDED_SIGNALS, _drop_capabilities
    step = "close fds"
    try:
        k.close_range(3, err_w - 1)
        k.close_range(err_w + 1)
        for s in FORWARDED_SIGNALS + (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(s, signal.SIG_DFL)
        step = "setsid"
        os.setsid()
        step = f"chdir {conf['workdir']}"
        os.chdir(conf["workdir"])
        step = "drop capabilities"
        _drop_capabilities(frozenset(conf["capabilities"]), conf["uid"], conf["gid"],
                           conf["may_setgroups"])
        if conf["no_new_privs"]:
            step = "no_new_privs"
            k.prctl(k.PR_SET_NO_NEW_PRIVS, 1)
        if conf.get("landlock_abi") and conf.get("landlock"):
            step = "landlock"
            from ..runtime._landlock import LandlockRule, apply_landlock
            apply_landlock([LandlockRule(r["path"], r["access"], tuple(r.get("excludes") or ()))
                            for r in conf["landlock"]])
        step = "non-dumpable"
        k.prctl(k.PR_SET_DUMPABLE, 0)       # again: the id change may have reset it
        if conf.get("seccomp"):
            step = "seccomp"
            k.seccomp_set_filter(base64.b64decode(conf["seccomp"]))
    except BaseException as e:  # noqa: BLE001
        raise _Step(step, e) from None
    env = {kk: v for kk, v in conf["env"]}
    pause = os.environ.get("SANDBOX_TEST_ENTER_PAUSE")
    if pause:           # TEST HOOK: hold, confined, just before execve (tests probe it)
        import time
        time.sleep(float(pause))
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        status = 127 if isinstance(e, (FileNotFoundError, NotADirectoryError)) else 126
        msg = json.dumps({"message": f"{argv[0]}: {e.strerror}", "step": "execve",
                          "status": status}).encode()
        try:
            os.write(err_w, msg)
        except OSError:
            pass
        os._exit(status)
